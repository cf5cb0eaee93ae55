#include "registry/fork_guard.hpp"

#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <mutex>
#include <new>

namespace sealstore::detail {

std::atomic<std::atomic<std::uint64_t>*> g_epoch_word{nullptr};

namespace {

std::once_flag g_epoch_once;
bool g_no_wipe = false;  // set once, before g_epoch_once completes

void map_epoch_page() noexcept {
  auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* p = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    g_no_wipe = true;
    return;
  }
  if (::madvise(p, page, MADV_WIPEONFORK) != 0) {
    ::munmap(p, page);
    g_no_wipe = true;
    return;
  }
  g_epoch_word.store(new (p) std::atomic<std::uint64_t>(0), std::memory_order_release);
}

// A number unlike any other process's: its pid (unique among the living)
// beside random bits (unlike the pid's earlier owners).
std::uint64_t fresh_epoch() noexcept {
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) r = 0x9E3779B97F4A7C15ULL;
  return ((static_cast<std::uint64_t>(::getpid()) << 32U) ^ r) | 1U;
}

}  // namespace

std::uint64_t make_process_epoch() noexcept {
  std::call_once(g_epoch_once, map_epoch_page);  // once per program: the mapping is inherited
  std::atomic<std::uint64_t>* w = g_epoch_word.load(std::memory_order_acquire);
  if (w == nullptr || g_no_wipe) return static_cast<std::uint64_t>(::getpid());
  std::uint64_t e = w->load(std::memory_order_acquire);
  if (e != 0) return e;
  // A new process (or a child whose page was just wiped): make its epoch.
  std::uint64_t mine = fresh_epoch();
  if (w->compare_exchange_strong(e, mine, std::memory_order_acq_rel)) return mine;
  return e;  // another thread made it first
}

}  // namespace sealstore::detail
