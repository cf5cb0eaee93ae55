// Identifying processes beyond their pid, and telling whether an attached
// process can still use its segment.
//
// A pid alone names a process only until it is reused, and only in one pid
// namespace; /proc/PID/stat says 'Z' for a process whose main thread exited
// while its other threads run on. So a process is identified by pid, start
// time (field 22 of /proc/PID/stat) and pid namespace, and it is alive while
// its whole thread group is (a pidfd says so exactly). Independently, every
// attached process holds an open-file-description lock on one byte of the
// segment file through a close-on-exec descriptor: the kernel drops it when
// the process dies or execs another program, in any namespace.
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

// True while the process that is pid and started at start_time has a
// thread left (in this pid namespace). A process whose main thread exited
// while others run is alive; a zombie whose threads are all gone is not.
// When /proc cannot tell (no such file for another reason than the process
// being gone), it counts as alive: reaping a live process frees memory it
// still uses, while sparing a dead one only delays the cleanup.
bool process_alive(pid_t pid, std::uint64_t start_time);

// An identifier of this process's pid namespace (the inode of
// /proc/self/ns/pid), or 0 if it cannot be read.
std::uint64_t own_pid_namespace();

// The byte of a segment file that the process in slot `slot` holds locked
// while it is attached.
inline constexpr std::uint64_t kSlotLockBase = 1;
inline std::uint64_t slot_lock_byte(std::uint32_t slot) { return kSlotLockBase + slot; }

// Takes the write lock on `byte` of fd as an open-file-description lock
// (released when the last descriptor of that open file goes: at exit, at
// exec for a close-on-exec descriptor). Returns false if another open file
// holds it; true also when the file system has no such locks (nothing to
// take, nothing to check).
bool lock_byte(int fd, std::uint64_t byte);
void unlock_byte(int fd, std::uint64_t byte) noexcept;

enum class ByteLock { Held, Free, Unknown };
// Whether an open file other than fd's holds a lock on `byte`.
ByteLock byte_lock_state(int fd, std::uint64_t byte);

// CLOCK_REALTIME in nanoseconds.
std::uint64_t unix_now_ns();

}  // namespace sealstore::detail
