// Plain-text output for people: aligned tables and human-readable sizes,
// ages and permission bits. Pure functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sealstore::memstat {

// 0 B, 512 B, 1.5 KiB, 64.0 MiB, 1.2 GiB (binary units).
std::string human_size(std::uint64_t bytes);
// A change: "+64.0 MiB", "-4.0 KiB", or "0".
std::string human_delta(std::int64_t bytes);
// 42s, 5m07s, 3h02m, 4d05h.
std::string human_age(double seconds);
// "rw-r-----" for 0640.
std::string mode_text(std::uint32_t mode);

enum class Align { Left, Right };

class Table {
 public:
  struct Column {
    std::string title;
    Align align;
  };
  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  // A last row set apart by a rule, for totals.
  void set_totals(std::vector<std::string> cells) { totals_ = std::move(cells); }
  std::size_t rows() const { return rows_.size(); }
  // Columns separated by two spaces, no trailing blanks; each line ends in
  // '\n'.
  std::string render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::string> totals_;
};

}  // namespace sealstore::memstat
