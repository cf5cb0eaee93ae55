// Session::Lock, the segment lock held for a scope by one process's
// session. Taking it over from a dead holder (or finding the repair flag
// set) repairs first: a repair that fails leaves the flag set, so the next
// locker repairs instead, and the lock itself never becomes unusable.
#pragma once

#include <cstddef>
#include <mutex>

#include "store/session.hpp"

namespace sealstore::detail {

class Session::Lock {
 public:
  // Blocks until this session holds the segment lock. Error(InvalidArgument)
  // for an observer (it has no slot to hold it by); Error(Corrupt) if a
  // repair it had to make failed (the lock is released then).
  explicit Lock(const Session& s);
  ~Lock();
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Lets go before the scope ends (once).
  void release() noexcept;

  // Dead processes the repair reaped.
  std::size_t reaped() const noexcept { return reaped_; }

 private:
  void repair();

  Session& s_;
  std::unique_lock<std::mutex> local_;  // this process's threads, one at a time
  std::size_t reaped_ = 0;
  bool released_ = false;
};

}  // namespace sealstore::detail
