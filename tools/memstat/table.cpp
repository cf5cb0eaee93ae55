#include "table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace sealstore::memstat {

namespace {

// Display width: UTF-8 continuation bytes take no column.
std::size_t width(const std::string& s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0U) != 0x80U; }));
}

}  // namespace

std::string human_size(std::uint64_t bytes) {
  static constexpr std::array<const char*, 6> kUnits = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes) / 1024.0;
  std::size_t u = 0;
  while (v >= 1024.0 && u + 1 < kUnits.size()) {
    v /= 1024.0;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

std::string human_delta(std::int64_t bytes) {
  if (bytes == 0) return "0";
  std::uint64_t magnitude =
      bytes < 0 ? static_cast<std::uint64_t>(-(bytes + 1)) + 1 : static_cast<std::uint64_t>(bytes);
  return (bytes < 0 ? "-" : "+") + human_size(magnitude);
}

std::string human_age(double seconds) {
  if (!(seconds > 0)) return "0s";
  auto s = static_cast<std::uint64_t>(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string mode_text(std::uint32_t mode) {
  std::string out = "---------";
  static constexpr std::array<char, 3> kRwx = {'r', 'w', 'x'};
  for (std::size_t i = 0; i < 9; ++i) {
    if ((mode & (1U << (8 - i))) != 0) out[i] = kRwx[i % 3];
  }
  return out;
}

std::string Table::render() const {
  std::vector<std::size_t> widths(columns_.size(), 0);
  auto measure = [&](const std::vector<std::string>& cells) {
    for (std::size_t c = 0; c < cells.size() && c < widths.size(); ++c)
      widths[c] = std::max(widths[c], width(cells[c]));
  };
  std::vector<std::string> titles;
  for (const auto& col : columns_) titles.push_back(col.title);
  measure(titles);
  for (const auto& r : rows_) measure(r);
  measure(totals_);

  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (std::size_t c = 0; c < columns_.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : std::string();
      std::size_t pad = widths[c] - std::min(widths[c], width(cell));
      if (c > 0) text += "  ";
      if (columns_[c].align == Align::Right) {
        text.append(pad, ' ');
        text += cell;
      } else {
        text += cell;
        if (c + 1 < columns_.size()) text.append(pad, ' ');
      }
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text;
    out += '\n';
  };
  line(titles);
  for (const auto& r : rows_) line(r);
  if (!totals_.empty()) {
    std::size_t total = 0;
    for (std::size_t c = 0; c < widths.size(); ++c) total += widths[c] + (c > 0 ? 2 : 0);
    out.append(total, '-');
    out += '\n';
    line(totals_);
  }
  return out;
}

}  // namespace sealstore::memstat
