// Helpers for sealstore's tests: a unique segment per test that is removed
// even when the test fails, real child processes reaped by handle with a
// watchdog, pipes to synchronise with them, and /proc memory readings.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "sealstore/sealstore.hpp"

namespace sealstore::test {

// A segment name unique to this test and process; the segment (if any) is
// removed when the guard goes, whatever happened.
class SegmentGuard {
 public:
  SegmentGuard();
  explicit SegmentGuard(const std::string& suffix);
  ~SegmentGuard();
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

// A fresh directory for spill files (under $TMPDIR or /tmp), removed with
// everything in it when the guard goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Regular files anywhere below it.
  std::size_t files() const;

 private:
  std::string path_;
};

// A small store for one test.
sealstore::CreateOptions small_options(std::uint64_t capacity = std::uint64_t{16} << 20U);

// One byte at a time between parent and child, so neither ever sleeps to wait.
class Pipe {
 public:
  Pipe();
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void send(char c = 'x') const;
  // Waits for one byte; returns it, or '\0' on EOF or after the timeout.
  char receive(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

 private:
  int fds_[2] = {-1, -1};
};

// A forked child running fn; its exit code is fn's return value (an escaped
// exception or a failed expectation exits 99). Reaped by handle (pidfd).
class Child {
 public:
  explicit Child(const std::function<int()>& fn);
  ~Child();  // kills and reaps a child still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  struct Status {
    bool exited = false;
    int code = -1;   // when exited
    int signal = 0;  // when killed by a signal
    bool timed_out = false;
  };
  // Waits up to timeout; on timeout kills the child and reports timed_out.
  Status wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  void kill(int sig) const;

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
};

// Private_Clean + Private_Dirty of this process, bytes, from smaps_rollup.
std::uint64_t private_bytes();
// A field (e.g. "Pss") of /proc/self/smaps_rollup, bytes.
std::uint64_t smaps_rollup_field(const char* field);
// Bytes of the file at path that this process maps with huge (PMD) pages,
// over all its mappings of that file, from /proc/self/smaps.
std::uint64_t pmd_mapped_bytes(const std::string& path);
// Whether this kernel puts the pages of a file in directory (a tmpfs) on
// huge pages when asked (MADV_COLLAPSE, Linux 6.1), found by trying it on a
// 2 MiB scratch file there.
bool tmpfs_collapses(const std::string& directory = "/dev/shm");

}  // namespace sealstore::test
