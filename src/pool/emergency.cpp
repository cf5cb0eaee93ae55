#include "pool/emergency.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "pool/control.hpp"

namespace sealstore::detail::emergency {

namespace {

constexpr std::size_t kEntries = 16;
constexpr std::size_t kPathBytes = 512;
constexpr std::array<int, 4> kSignals = {SIGINT, SIGTERM, SIGHUP, SIGABRT};

// Entry states: 0 free, 1 being filled, 2 live (the handler acts on it).
struct Entry {
  std::atomic<int> state{0};
  std::atomic<pid_t> owner{0};  // a forked child must not clean up its parent's pools
  std::array<char, kPathBytes> path{};
  std::array<std::atomic<int>, kMaxPoolWorkers> pidfds{};
};

std::array<Entry, kEntries> g_entries;
std::once_flag g_atexit_once;
std::once_flag g_signals_once;

void cleanup_all() noexcept {
  pid_t self = ::getpid();
  for (Entry& e : g_entries) {
    if (e.state.load() != 2 || e.owner.load() != self) continue;
    for (auto& fd : e.pidfds) {
      int f = fd.load();
      if (f >= 0) ::syscall(SYS_pidfd_send_signal, f, SIGKILL, nullptr, 0);
    }
    ::unlink(e.path.data());
  }
}

void on_signal(int sig) {
  int saved = errno;
  cleanup_all();
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);  // delivered with the default action once this handler returns
  errno = saved;
}

void install_handlers() {
  for (int sig : kSignals) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) continue;
    if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) continue;  // the program's own: keep it
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

}  // namespace

int enroll(const std::string& segment_path, bool handle_signals) {
  std::call_once(g_atexit_once, [] { std::atexit(cleanup_all); });
  if (handle_signals) std::call_once(g_signals_once, install_handlers);
  if (segment_path.size() >= kPathBytes) return kNone;
  for (std::size_t i = 0; i < kEntries; ++i) {
    Entry& e = g_entries[i];  // NOLINT
    int expected = 0;
    if (!e.state.compare_exchange_strong(expected, 1)) continue;
    for (auto& fd : e.pidfds) fd.store(-1);
    e.path.fill('\0');
    std::memcpy(e.path.data(), segment_path.data(), segment_path.size());
    e.owner.store(::getpid());
    e.state.store(2);
    return static_cast<int>(i);
  }
  return kNone;
}

void set_worker(int entry, std::uint32_t slot, int pidfd) noexcept {
  if (entry < 0 || slot >= kMaxPoolWorkers) return;
  g_entries[static_cast<std::size_t>(entry)].pidfds[slot].store(pidfd);  // NOLINT
}

void withdraw(int entry) noexcept {
  if (entry < 0) return;
  Entry& e = g_entries[static_cast<std::size_t>(entry)];  // NOLINT
  e.state.store(1);
  for (auto& fd : e.pidfds) fd.store(-1);
  e.state.store(0);
}

}  // namespace sealstore::detail::emergency
