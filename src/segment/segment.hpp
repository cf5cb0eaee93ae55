// The backing file of a segment and its two mappings in this process: the
// whole file read-write (tables, and writers' data), and the data region
// again read-only (what Views point into, so a cast-away write faults).
// Mapped once per attachment, never per object.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "segment/layout.hpp"

namespace sealstore::detail {

// Throws Error(InvalidArgument) naming the name when it is not
// 1..200 of [A-Za-z0-9._-], not starting with '.'.
void validate_segment_name(std::string_view name);
std::string segment_path(std::string_view name, std::string_view directory);
inline constexpr std::string_view kDefaultDirectory = "/dev/shm";
inline constexpr std::string_view kFilePrefix = "sealstore.";

// Where and when a segment spills, as its creator set it. `dir` is the
// segment's own folder of spill files (DIRECTORY/sealstore.NAME.TAG),
// empty when it does not spill.
struct SpillConfig {
  std::string root;  // the directory the creator named
  std::string dir;
  std::uint64_t high = 0;  // bytes
  std::uint64_t low = 0;
  bool enabled() const noexcept { return !dir.empty(); }
};
// The segment's folder of spill files under root.
std::string spill_folder(std::string_view root, std::string_view name, std::uint32_t tag);
// The spill folder of the segment open at fd (read from its header), or
// empty: it does not spill, or is no segment of this layout.
std::string spill_folder_of(int fd, std::string_view name);

class Mapping {
 public:
  Mapping() = default;
  Mapping(Mapping&& o) noexcept;
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  struct CreateParams {
    std::string path;
    std::string name;
    std::uint64_t capacity;
    std::uint32_t max_objects;
    std::uint32_t max_names;
    std::uint32_t mode;
    bool prefault;
    bool huge_pages;
    std::string spill_dir;  // absolute; empty: no spilling
    std::uint64_t spill_high = 0;
    std::uint64_t spill_low = 0;
    std::uint32_t first_worker_id = 1;
  };
  // Creates, reserves (posix_fallocate), maps and initialises the file; the
  // header's magic is stored last. On failure nothing is left behind.
  static Mapping create(const CreateParams& p);
  struct OpenParams {
    std::string path;
    std::string name;
    bool observer;
    bool prefault;
    bool huge_pages;
    std::vector<std::uint32_t> trusted_owners;  // uids besides ours and root's
  };
  // Opens and maps an existing file after validating its owner and its
  // header. Waits (in flock, not spinning) while its creator is still
  // initialising it.
  static Mapping open(const OpenParams& p);

  Header& header() const noexcept { return *reinterpret_cast<Header*>(base_); }  // NOLINT
  std::byte* base() const noexcept { return base_; }
  const std::byte* data_ro() const noexcept { return data_ro_; }
  std::byte* data_rw() const noexcept { return base_ + geo_.data_offset; }
  // This process's copy of the geometry, validated once: never re-read
  // from the header, which any peer can rewrite.
  const Geometry& geometry() const noexcept { return geo_; }
  // This process's copy of the spill configuration, read once at attach.
  const SpillConfig& spill() const noexcept { return spill_; }
  int fd() const noexcept { return fd_; }
  std::uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

 private:
  void reset() noexcept;
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
  const std::byte* data_ro_ = nullptr;
  std::uint64_t data_ro_size_ = 0;
  std::string path_;
  Geometry geo_{};
  SpillConfig spill_{};
};

// Recomputes the geometry from the header's parameters and checks every
// field against it and against the file's size; returns it. Throws
// Error(IncompatibleSegment) or Error(Corrupt) naming the segment.
Geometry validate_header(const Header& h, std::uint64_t file_size, std::string_view name);

}  // namespace sealstore::detail
