// Telling a fork()ed child from its parent, however it was made. A child
// made by fork(), _Fork(), clone() or a raw fork system call inherits the
// parent's memory, and with it every Store, View and Writer; only the
// parent's attachment may use them. pthread_atfork handlers do not run for
// the last three, so the test is a page the kernel zeroes in every child
// (MADV_WIPEONFORK): it holds this process's epoch, a number no other
// process has, made afresh the first time a process asks.
#pragma once

#include <atomic>
#include <cstdint>

namespace sealstore::detail {

// The page's word once mapped (null before, or where the kernel cannot wipe
// a page on fork).
extern std::atomic<std::atomic<std::uint64_t>*> g_epoch_word;

// The slow path of process_epoch(): maps the page, or makes a new epoch.
std::uint64_t make_process_epoch() noexcept;

// This process's epoch: nonzero, the same for every call in one process,
// and different in every child made by any kind of fork. Two loads once the
// page exists. (Where the kernel lacks MADV_WIPEONFORK, it is derived from
// getpid(), a system call each time.)
inline std::uint64_t process_epoch() noexcept {
  std::atomic<std::uint64_t>* w = g_epoch_word.load(std::memory_order_acquire);
  if (w != nullptr) {
    std::uint64_t e = w->load(std::memory_order_relaxed);
    if (e != 0) return e;
  }
  return make_process_epoch();
}

}  // namespace sealstore::detail
