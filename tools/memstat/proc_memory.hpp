// Per-process memory and CPU from /proc, split by mapping: the pages a
// process maps from one shared file (a segment's backing file) versus all
// its other memory. Reads /proc/PID/smaps, /proc/PID/pagemap and
// /proc/PID/stat only; never writes or signals. Not thread-safe per object.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sealstore::memstat {

// A file by identity (device and inode): survives renames and unlinks,
// which a path does not.
struct FileId {
  std::uint32_t dev_major = 0;
  std::uint32_t dev_minor = 0;
  std::uint64_t inode = 0;
  friend bool operator==(const FileId&, const FileId&) = default;
};
// The identity of the file at path (following no symlink); nullopt if none.
std::optional<FileId> file_id(const std::string& path);

// The system's page size in bytes.
std::uint64_t page_size();

// Sums of smaps fields over a set of mappings, in bytes.
struct MemoryUse {
  std::uint64_t rss = 0;
  std::uint64_t pss = 0;
  std::uint64_t private_bytes = 0;  // Private_Clean + Private_Dirty
  std::uint64_t shared_bytes = 0;   // Shared_Clean + Shared_Dirty
  std::uint64_t swap = 0;
};

// Which pages of one file are resident in some process(es): a bit per page
// (of the system's page size).
class ResidentPages {
 public:
  explicit ResidentPages(std::uint64_t file_size = 0);
  void set(std::uint64_t page) noexcept;
  void merge(const ResidentPages& other) noexcept;
  std::uint64_t pages() const noexcept;
  std::uint64_t bytes() const noexcept;

 private:
  std::uint64_t page_size_ = 4096;
  std::uint64_t npages_ = 0;
  std::vector<std::uint64_t> bits_;
};

struct ProcessMemory {
  MemoryUse segment;  // every mapping of the file
  MemoryUse other;    // every other mapping
  std::uint32_t segment_mappings = 0;
  // Distinct pages of the file mapped and resident in this process. A page
  // mapped twice (the library maps the data region twice) counts once here
  // and twice in segment.rss. Exact when pagemap was readable; otherwise
  // the sum of Rss over the file's mappings, capped at the file's size.
  std::uint64_t segment_resident = 0;
  bool segment_resident_exact = false;
  ResidentPages segment_pages;  // which pages, when exact
};

// Reads /proc/PID/smaps (and pagemap) of pid, attributing every mapping of
// the file `file` (of file_size bytes) to `segment`. nullopt when the
// process is gone; throws std::system_error when /proc cannot be read for
// another reason (EACCES: another user's process).
std::optional<ProcessMemory> read_process_memory(pid_t pid, const FileId& file, std::uint64_t file_size);

// True if pid maps the file at all (/proc/PID/maps). False when the process
// is gone or its maps cannot be read.
bool process_maps_file(pid_t pid, const FileId& file);

struct ProcStat {
  char state = '?';              // R, S, D, T, Z (zombie), ...
  std::uint64_t utime = 0;       // clock ticks in user mode
  std::uint64_t stime = 0;       // clock ticks in kernel mode
  std::uint64_t start_time = 0;  // clock ticks after boot
};
// /proc/PID/stat; nullopt when the process does not exist.
std::optional<ProcStat> read_proc_stat(pid_t pid);

// Seconds since boot (/proc/uptime) and clock ticks per second.
double uptime_seconds();
double clock_ticks_per_second();

// Average CPU use since the process started, percent of one CPU (as ps).
double cpu_percent_since_start(const ProcStat& st);

// The processes holding a flock on the file, from /proc/locks.
struct FlockHolder {
  pid_t pid = 0;
  bool exclusive = false;
};
std::vector<FlockHolder> flock_holders(const FileId& file);

}  // namespace sealstore::memstat
