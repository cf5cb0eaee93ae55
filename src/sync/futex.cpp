#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "sync/atomics.hpp"

namespace sealstore::detail {

bool futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
  using namespace std::chrono;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(duration_cast<seconds>(timeout).count());
  ts.tv_nsec = static_cast<long>((timeout - duration_cast<seconds>(timeout)).count());
  // FUTEX_WAIT without FUTEX_PRIVATE_FLAG: the word is in shared memory and
  // the waker is another process.
  long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
  return !(rc == -1 && errno == ETIMEDOUT);
}

void futex_wake_all(std::uint32_t* word) noexcept {
  syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void futex_wake_one(std::uint32_t* word) noexcept { syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0); }

}  // namespace sealstore::detail
