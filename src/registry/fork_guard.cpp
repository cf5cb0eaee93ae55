#include "registry/fork_guard.hpp"

#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <new>

namespace sealstore::detail {

namespace {

// The page's one word, or nullptr where the kernel cannot wipe it on fork.
std::atomic<std::uint64_t>* g_epoch = nullptr;
std::once_flag g_epoch_once;

void map_epoch_page() noexcept {
  void* p = ::mmap(nullptr, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  if (::madvise(p, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), MADV_WIPEONFORK) != 0) {
    ::munmap(p, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)));
    return;
  }
  g_epoch = new (p) std::atomic<std::uint64_t>(0);
}

// A number unlike any other process's: its pid (unique among the living)
// beside random bits (unlike the pid's earlier owners).
std::uint64_t fresh_epoch() noexcept {
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) r = 0x9E3779B97F4A7C15ULL;
  return ((static_cast<std::uint64_t>(::getpid()) << 32U) ^ r) | 1U;
}

}  // namespace

std::uint64_t process_epoch() noexcept {
  std::call_once(g_epoch_once, map_epoch_page);  // once per program: the mapping is inherited
  if (g_epoch == nullptr) return static_cast<std::uint64_t>(::getpid());
  std::uint64_t e = g_epoch->load(std::memory_order_acquire);
  if (e != 0) return e;
  // A new process (or a child whose page was just wiped): make its epoch.
  std::uint64_t mine = fresh_epoch();
  if (g_epoch->compare_exchange_strong(e, mine, std::memory_order_acq_rel)) return mine;
  return e;  // another thread made it first
}

}  // namespace sealstore::detail
