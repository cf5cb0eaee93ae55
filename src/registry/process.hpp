// Identifying processes beyond their pid: pid plus start time (field 22 of
// /proc/PID/stat), so a reused pid is never taken for the process that died.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace sealstore::detail {

struct ProcStat {
  char state = '?';              // field 3: R, S, D, Z (zombie), X (dead), ...
  std::uint64_t start_time = 0;  // field 22, clock ticks after boot
  std::uint64_t utime = 0;       // field 14, clock ticks
  std::uint64_t stime = 0;       // field 15, clock ticks
};

// Parses /proc/PID/stat; nullopt when the process does not exist.
std::optional<ProcStat> read_proc_stat(pid_t pid);

// True while pid runs and is the process that started at start_time. A
// zombie (killed, not yet reaped) counts as dead.
bool process_alive(pid_t pid, std::uint64_t start_time);

// CLOCK_REALTIME in nanoseconds.
std::uint64_t unix_now_ns();

}  // namespace sealstore::detail
