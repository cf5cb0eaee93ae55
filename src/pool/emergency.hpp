// Last-resort cleanup for pools whose destructor will not run: on SIGINT,
// SIGTERM, SIGHUP or SIGABRT (where the program left the default action)
// and at exit(), every live pool of this process has its workers killed and
// its segment unlinked, then the signal takes its default course. The table
// is fixed-size and lock-free so the signal handler touches nothing else.
#pragma once

#include <cstdint>
#include <string>

namespace sealstore::detail::emergency {

inline constexpr int kNone = -1;

// Adds a pool (its segment's path) to the table; returns its entry, or
// kNone when the table is full (the pool then goes without this net).
int enroll(const std::string& segment_path, bool handle_signals);
// Records (or clears, with pidfd -1) the pidfd of the worker in slot.
void set_worker(int entry, std::uint32_t slot, int pidfd) noexcept;
void withdraw(int entry) noexcept;

}  // namespace sealstore::detail::emergency
