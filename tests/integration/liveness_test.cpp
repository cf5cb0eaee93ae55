// Who counts as alive: a process is cleaned up after (its pins dropped, its
// writes rolled back) only when it can no longer use the segment. A live
// process must never be reaped, whatever /proc says about its main thread
// or whatever pid namespace it lives in; a process that exec'd another
// program no longer uses the segment and is reaped.
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "sealstore/sealstore.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::Pipe;
using test::SegmentGuard;
using test::small_options;

// Field 3 of /proc/PID/stat: R, S, Z, ...
char proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() ? '?' : text[close + 2];
}

std::string proc_comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string s;
  std::getline(in, s);
  return s;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::seconds limit = 20s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

bool all_equal(std::span<const std::int32_t> v, std::int32_t x) {
  for (auto e : v) {
    if (e != x) return false;
  }
  return true;
}

std::optional<ObjectState> state_of(const Store& s, const RemoteRef& r) {
  for (const ObjectInfo& o : s.objects()) {
    if (o.ref == r) return o.state;
  }
  return std::nullopt;
}

// Erases ref while the child pins it, then fills the freed space with other
// bytes if the erase (wrongly) freed it: a child whose view changes under
// it has been reaped alive.
void erase_and_reuse(Store& s, const RemoteRef& ref) {
  s.erase(ref);
  for (int i = 0; i < 8; ++i) s.put(std::vector<std::int32_t>(1000, -1));
}

TEST(Liveness, a_process_whose_main_thread_exited_is_alive_while_its_other_threads_run) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<std::int32_t>(1000, 7));
  Pipe pinned;
  Pipe reused;
  Child c([&] {
    static std::optional<Store> t;
    t.emplace(Store::attach(g.name()));
    std::thread([&] {
      View v = t->fetch(r);
      pinned.send();
      if (reused.receive() != 'x') ::_exit(3);
      ::_exit(all_equal(v.as_span<std::int32_t>(), 7) ? 0 : 1);
    }).detach();
    // The main thread exits alone, as pthread_exit() would make it (which
    // would also unwind through the test framework's frames): the process
    // lives on in the thread above.
    ::syscall(SYS_exit, 0);
    return 4;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  ASSERT_TRUE(eventually([&] { return proc_state(c.pid()) == 'Z'; })) << "the main thread did not exit";
  EXPECT_EQ(s.recover(), 0U) << "a process with a running thread was reaped";
  EXPECT_EQ(s.processes().size(), 2U);
  erase_and_reuse(s, r);
  ASSERT_EQ(state_of(s, r), ObjectState::ErasePending) << "the erase did not wait for the child's pin";
  reused.send();
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << "code " << st.code << " signal " << st.signal
                                         << " (1: the view's bytes changed under it)";
  EXPECT_EQ(s.recover(), 1U) << "once every thread is gone, the process is reaped";
  EXPECT_EQ(s.info().objects, 8U) << "the deferred erase completed";
}

TEST(Liveness, a_process_that_execs_another_program_is_reaped) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<std::int32_t>(1000, 7));
  Pipe pinned;
  Child c([&] {
    Store t = Store::attach(g.name());
    View v = t.fetch(r);
    pinned.send();
    ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
    return 5;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  ASSERT_TRUE(eventually([&] { return proc_comm(c.pid()) == "sleep"; })) << "the child did not exec";
  // The kernel drops the old image's descriptors (and so its lock byte)
  // during the exec, around the time the new name shows: reaped soon after.
  std::size_t reaped = 0;
  EXPECT_TRUE(eventually([&] {
    reaped += s.recover();
    return reaped > 0;
  })) << "the exec'd program cannot use the segment: its slot and pins are stale";
  EXPECT_EQ(reaped, 1U);
  EXPECT_EQ(s.processes().size(), 1U);
  s.erase(r);
  EXPECT_EQ(s.info().objects, 0U) << "no pin is left to defer the erase";
  c.kill(SIGKILL);
  c.wait();
}

// A process attached from another pid namespace (a container sharing
// /dev/shm) has a pid that means nothing, or another process, here.
TEST(Liveness, a_process_of_another_pid_namespace_is_not_reaped_while_alive) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a pid namespace";
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<std::int32_t>(1000, 7));
  Pipe pinned;
  Pipe reused;
  Pipe no_namespace;
  Child c([&] {
    if (::unshare(CLONE_NEWPID) != 0) {
      no_namespace.send();
      return 0;
    }
    Child inner([&] {  // pid 1 of the new namespace
      Store t = Store::attach(g.name());
      View v = t.fetch(r);
      pinned.send();
      if (reused.receive() != 'x') return 3;
      return all_equal(v.as_span<std::int32_t>(), 7) ? 0 : 1;
    });
    auto st = inner.wait();
    return st.exited ? st.code : 100 + st.signal;
  });
  Pipe* first = nullptr;
  for (auto deadline = std::chrono::steady_clock::now() + 30s; first == nullptr;) {
    if (std::chrono::steady_clock::now() > deadline) FAIL() << "the child never attached";
    if (no_namespace.receive(10ms) == 'x') first = &no_namespace;
    if (first == nullptr && pinned.receive(10ms) == 'x') first = &pinned;
  }
  if (first == &no_namespace) {
    c.wait();
    GTEST_SKIP() << "this system does not allow a new pid namespace";
  }
  EXPECT_EQ(s.recover(), 0U) << "a live process of another pid namespace was reaped";
  erase_and_reuse(s, r);
  ASSERT_EQ(state_of(s, r), ObjectState::ErasePending) << "the erase did not wait for the child's pin";
  reused.send();
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << "code " << st.code << " signal " << st.signal;
  s.recover();
  EXPECT_EQ(s.processes().size(), 1U) << "it detached, or was reaped once gone";
  EXPECT_EQ(s.info().objects, 8U) << "the deferred erase completed";
}

}  // namespace
}  // namespace sealstore
