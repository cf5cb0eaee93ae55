// One reading of a segment: its header, its attached processes with their
// memory and CPU from /proc, and its objects. Taken through an observer
// attachment, which maps the segment read-only and takes no slot, pin or
// lock. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proc_memory.hpp"
#include "sealstore/store.hpp"

namespace sealstore::memstat {

// CLOCK_REALTIME in nanoseconds.
std::uint64_t unix_now_ns();

struct FileFacts {
  FileId id;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t mode = 0;            // permission bits
  std::uint64_t size = 0;            // bytes
  std::uint64_t allocated = 0;       // bytes of tmpfs memory reserved (st_blocks)
  std::uint64_t change_unix_ns = 0;  // ctime: set by creation, not by use
  std::string owner;                 // user name, or the uid in decimal
  std::string group;
};
// lstat of path; nullopt if there is no such file.
std::optional<FileFacts> file_facts(const std::string& path);

struct ProcessRow {
  ProcessInfo info;  // from the segment's slot
  // The slot's process is running (pid and start time match, not a zombie),
  // checked again after /proc was read.
  bool alive = false;
  std::optional<ProcessMemory> memory;  // alive and /proc readable
  std::string memory_error;             // why memory is missing, when alive
  std::optional<ProcStat> stat;
  double cpu_percent_since_start = 0;
};

struct Snapshot {
  std::uint64_t time_unix_ns = 0;
  std::chrono::steady_clock::time_point taken;
  SegmentInfo segment;
  FileFacts file;        // of the file that was attached
  bool removed = false;  // the name no longer leads to that file
  std::vector<ProcessRow> processes;
  std::vector<ObjectInfo> objects;
  bool with_memory = false;  // processes carry memory readings
  // Distinct segment pages resident in any attached process, when every
  // process's reading was exact.
  std::optional<std::uint64_t> segment_resident_total;

  const ProcessRow* process_by_id(WorkerId id) const;
};

class Inspector {
 public:
  // Attaches to the segment as an observer. Throws sealstore::Error.
  Inspector(const std::string& name, const std::string& directory);
  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  // with_memory: read every live process's smaps and pagemap too.
  Snapshot take(bool with_memory) const;

 private:
  std::string name_;
  std::string directory_;
  std::string path_;
  Store store_;
  FileFacts file_;
};

}  // namespace sealstore::memstat
