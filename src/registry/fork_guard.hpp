// Telling a fork()ed child from its parent, however it was made. A child
// made by fork(), _Fork(), clone() or a raw fork system call inherits the
// parent's memory, and with it every Store, View and Writer; only the
// parent's attachment may use them. pthread_atfork handlers do not run for
// the last three, so the test is a page the kernel zeroes in every child
// (MADV_WIPEONFORK): it holds this process's epoch, a number no other
// process has, made afresh the first time a process asks.
#pragma once

#include <cstdint>

namespace sealstore::detail {

// This process's epoch: nonzero, the same for every call in one process,
// and different in every child made by any kind of fork. Cheap: one load
// once the page exists. (Where the kernel lacks MADV_WIPEONFORK, it is
// derived from getpid(), a system call each time.)
std::uint64_t process_epoch() noexcept;

}  // namespace sealstore::detail
