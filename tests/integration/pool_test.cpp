// The worker pool with real worker processes (this test binary, re-run in
// worker mode), real shared memory and real signals.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::Pipe;
using test::SegmentGuard;

// ---- functions the workers run (registered in every process of this binary)

int add(int a, int b) { return a + b; }
SEALSTORE_REGISTER("add", add);

std::string echo(const std::string& s) { return s; }
SEALSTORE_REGISTER("echo", echo);

std::size_t length_of(std::string_view s) { return s.size(); }
SEALSTORE_REGISTER("length_of", length_of);

WorkerId whoami(Context& cx) { return cx.myid(); }
SEALSTORE_REGISTER("whoami", whoami);

std::int32_t pid_of_me() { return static_cast<std::int32_t>(::getpid()); }
SEALSTORE_REGISTER("pid_of_me", pid_of_me);

std::vector<WorkerId> workers_seen(Context& cx) { return cx.workers(); }
SEALSTORE_REGISTER("workers_seen", workers_seen);

void boom(const std::string& message) { throw std::runtime_error(message); }
SEALSTORE_REGISTER("boom", boom);

void boom_error() { throw Error(Errc::NotFound, "the thing was not there"); }
SEALSTORE_REGISTER("boom_error", boom_error);

// Seals `started`, then waits until `release` is sealed and returns it.
int hold(Context& cx, RemoteRef started, RemoteRef release) {
  cx.store().put(started, 1);
  return cx.store().fetch(release).as<int>();
}
SEALSTORE_REGISTER("hold", hold);

double sum_ref(Context& cx, RemoteRef r) {
  View v = cx.store().fetch(r);
  auto xs = v.as_span<double>();
  return std::accumulate(xs.begin(), xs.end(), 0.0);
}
SEALSTORE_REGISTER("sum_ref", sum_ref);

// Builds its result in place: no copy of the result anywhere.
Writer iota(Context& cx, std::uint64_t n) {
  Writer w = cx.result_writer(n * sizeof(double), element_type<double>(ValueKind::Array));
  auto xs = w.as_span<double>();
  for (std::uint64_t i = 0; i < n; ++i) xs[i] = static_cast<double>(i);
  return w;
}
SEALSTORE_REGISTER("iota", iota);

Writer wrong_writer(Context& cx) { return cx.store().create_writer(8); }
SEALSTORE_REGISTER("wrong_writer", wrong_writer);

int g_config = 0;
int g_other = 0;
void set_config(int v) { g_config = v; }
int get_config() { return g_config; }
void set_other(int v) { g_other = v; }
int get_other() { return g_other; }
SEALSTORE_REGISTER("set_config", set_config);
SEALSTORE_REGISTER("get_config", get_config);
SEALSTORE_REGISTER("set_other", set_other);
SEALSTORE_REGISTER("get_other", get_other);

void fail_above(Context& cx, WorkerId highest) {
  if (cx.myid() > highest) throw std::runtime_error("set-up refused on a new worker");
}
SEALSTORE_REGISTER("fail_above", fail_above);

void exit_now(int code) { std::_Exit(code); }
SEALSTORE_REGISTER("exit_now", exit_now);

auto lambda_twice = [](double x) { return 2 * x; };
SEALSTORE_REGISTER("twice", lambda_twice);

// ---- helpers

// The message of the Error that stmt throws, or "" (a failure) if none.
template <class F>
std::string error_of(F&& stmt, Errc want) {
  try {
    stmt();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), want) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

PoolOptions small_pool() {
  PoolOptions o;
  o.store = test::small_options();
  o.stop_timeout = 20s;
  return o;
}

// A pidfd for a process; it becomes readable when the process has ended.
class ProcessWatch {
 public:
  explicit ProcessWatch(pid_t pid) : fd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {}
  ~ProcessWatch() {
    if (fd_ >= 0) ::close(fd_);
  }
  ProcessWatch(const ProcessWatch&) = delete;
  ProcessWatch& operator=(const ProcessWatch&) = delete;
  bool valid() const { return fd_ >= 0; }
  bool ended(std::chrono::milliseconds wait = 0ms) const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(wait.count())) == 1;
  }

 private:
  int fd_;
};

// A watch on every pool worker attached to segment, seen from outside the
// pool's process (an observer attach).
std::vector<std::unique_ptr<ProcessWatch>> watch_workers(const std::string& segment) {
  AttachOptions observe;
  observe.observer = true;
  Store s = Store::attach(segment, observe);
  std::vector<std::unique_ptr<ProcessWatch>> watches;
  for (const ProcessInfo& p : s.processes()) {
    if (p.role == Role::Worker) watches.push_back(std::make_unique<ProcessWatch>(p.pid));
  }
  return watches;
}

// No child process of this one is left, running or unreaped.
bool no_children() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1 && errno == ECHILD;
}

bool has_pool_memfd() {
  DIR* d = ::opendir("/proc/self/fd");
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    std::array<char, 256> target{};
    std::string link = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
    if (n > 0 && contains(std::string(target.data(), static_cast<std::size_t>(n)), "sealstore-pool")) found = true;
  }
  ::closedir(d);
  return found;
}

// ---- spawning and removing

TEST(Pool, add_and_remove_workers) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  EXPECT_EQ(pool.myid(), 1U);
  EXPECT_TRUE(pool.workers().empty()) << "the pool's own process is not a worker";
  EXPECT_EQ(pool.add(2), (std::vector<WorkerId>{2, 3}));
  EXPECT_EQ(pool.workers(), (std::vector<WorkerId>{2, 3}));
  auto procs = pool.store().processes();
  ASSERT_EQ(procs.size(), 3U);
  EXPECT_EQ(procs[0].role, Role::Owner);
  EXPECT_EQ(procs[1].role, Role::Worker);
  EXPECT_EQ(procs[1].pid, pool.pid(2));
  EXPECT_EQ(procs[2].pid, pool.pid(3));
  EXPECT_EQ(pool.call<std::int32_t>(2, "pid_of_me"), pool.pid(2));

  ProcessWatch two(pool.pid(2));
  ASSERT_TRUE(two.valid());
  EXPECT_FALSE(two.ended());
  pool.remove(2);
  EXPECT_TRUE(two.ended()) << "remove() returns once the process is gone";
  EXPECT_EQ(pool.workers(), (std::vector<WorkerId>{3}));
  EXPECT_EQ(pool.store().processes().size(), 2U);
  EXPECT_TRUE(contains(error_of([&] { pool.run_at(2, "add", 1, 2); }, Errc::InvalidArgument), "was removed"));
  EXPECT_ERRC(pool.pid(2), Errc::InvalidArgument);
  EXPECT_ERRC(pool.remove(2), Errc::InvalidArgument);
  EXPECT_ERRC(pool.remove(1), Errc::InvalidArgument);
  EXPECT_TRUE(contains(error_of([&] { pool.remove(99); }, Errc::InvalidArgument), "not a worker"));
  EXPECT_EQ(pool.add(1), (std::vector<WorkerId>{4})) << "ids are never reused";
  EXPECT_EQ(pool.call<int>(4, "add", 20, 22), 42);
}

TEST(Pool, every_process_sees_the_same_ascending_workers) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(3);
  pool.remove(3);
  pool.add(2);
  std::vector<WorkerId> expected{2, 4, 5, 6};
  ASSERT_EQ(pool.workers(), expected);
  std::vector<RemoteRef> refs = pool.everywhere(EverywhereOptions{.include_self = true}, "workers_seen");
  ASSERT_EQ(refs.size(), 5U);
  std::vector<WorkerId> where;
  for (const RemoteRef& r : refs) {
    where.push_back(r.where());
    EXPECT_EQ(r.whence(), 1U);
    EXPECT_EQ(pool.store().materialize<std::vector<WorkerId>>(r), expected) << "as seen by worker " << r.where();
    pool.store().erase(r);
  }
  EXPECT_EQ(where, (std::vector<WorkerId>{1, 2, 4, 5, 6}));
}

// ---- running functions

TEST(Pool, run_at_returns_a_ref_the_worker_seals) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(2);
  RemoteRef r = pool.run_at(3, "add", 2, 3);
  EXPECT_EQ(r.where(), 3U);
  EXPECT_EQ(r.whence(), 1U);
  EXPECT_EQ(pool.store().fetch(r, 30s).as<int>(), 5);
  auto objects = pool.store().objects();
  ASSERT_EQ(objects.size(), 1U);
  EXPECT_EQ(objects[0].creator, 1U) << "the pool's process made the ref";
  EXPECT_EQ(objects[0].creator_pid, ::getpid());
  EXPECT_EQ(objects[0].sealed_by, 3U) << "the worker sealed it";
  EXPECT_EQ(objects[0].sealed_by_pid, pool.pid(3));
  pool.store().erase(r);

  EXPECT_EQ(pool.call<int>(2, "add", -4, 1), -3);
  EXPECT_EQ(pool.call<std::string>(2, "echo", std::string("aardvark")), "aardvark");
  EXPECT_EQ(pool.call<std::string>(2, "echo", "a literal"), "a literal");
  EXPECT_EQ(pool.call<std::size_t>(2, "length_of", std::string_view("four")), 4U);
  EXPECT_EQ(pool.call<double>(3, "twice", 1.25), 2.5);
  EXPECT_EQ(pool.call<WorkerId>(3, "whoami"), 3U);
  pool.call(2, "set_other", 1);  // void: waits, then erases the empty result
  EXPECT_EQ(pool.store().info().objects, 0U) << "call() erases its result";
}

TEST(Pool, run_at_the_pools_own_id_runs_here) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  RemoteRef r = pool.run_at(1, "whoami");
  EXPECT_EQ(r.where(), 1U);
  EXPECT_EQ(pool.store().fetch(r).as<WorkerId>(), 1U);
  EXPECT_EQ(pool.call<std::int32_t>(1, "pid_of_me"), static_cast<std::int32_t>(::getpid()));
  RemoteRef bad = pool.run_at(1, "boom", std::string("local trouble"));
  EXPECT_TRUE(contains(error_of([&] { pool.store().fetch(bad); }, Errc::WorkerFailed), "local trouble"));
}

TEST(Pool, large_values_travel_as_refs_and_results_are_built_in_place) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(1);
  std::vector<double> xs(1 << 20);
  std::iota(xs.begin(), xs.end(), 0.0);
  RemoteRef big = pool.store().put(xs);
  EXPECT_EQ(pool.call<double>(2, "sum_ref", big), std::accumulate(xs.begin(), xs.end(), 0.0));

  RemoteRef r = pool.run_at(2, "iota", std::uint64_t{1000});
  View v = pool.store().fetch(r, 30s);
  auto ys = v.as_span<double>();
  ASSERT_EQ(ys.size(), 1000U);
  EXPECT_EQ(ys[999], 999.0);

  std::string too_long(2000, 'x');
  EXPECT_TRUE(contains(error_of([&] { pool.run_at(2, "echo", too_long); }, Errc::InvalidArgument), "RemoteRef"));
}

TEST(Pool, everywhere_runs_on_every_worker_and_waits_for_all) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(3);
  std::vector<RemoteRef> done = pool.everywhere("set_config", 5);
  ASSERT_EQ(done.size(), 3U);
  for (const RemoteRef& r : done) {
    auto v = pool.store().try_fetch(r);
    EXPECT_TRUE(v.has_value()) << "everywhere returned before worker " << r.where() << " finished";
    pool.store().erase(r);
  }
  for (WorkerId w : pool.workers()) EXPECT_EQ(pool.call<int>(w, "get_config"), 5) << "worker " << w;
  EXPECT_EQ(get_config(), 0) << "not on the caller unless asked";
  pool.everywhere(EverywhereOptions{.include_self = true}, "set_other", 9);
  EXPECT_EQ(get_other(), 9);
  set_other(0);
}

TEST(Pool, tasks_queue_beyond_the_ring_and_from_many_threads) {
  SegmentGuard g;
  PoolOptions o = small_pool();
  o.queue_depth = 2;
  Pool pool = Pool::create(g.name(), o);
  pool.add(2);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::pair<RemoteRef, int>> refs;
      refs.reserve(50);
      for (int i = 0; i < 50; ++i) refs.emplace_back(pool.run_at(2 + static_cast<WorkerId>(t % 2), "add", t, i), t + i);
      for (auto& [r, want] : refs) {
        if (pool.store().fetch(r, 60s).as<int>() != want) ++wrong;
        pool.store().erase(r);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// ---- failures

TEST(Pool, a_remote_exception_is_worker_failed_with_its_message) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(2);
  RemoteRef r = pool.run_at(2, "boom", std::string("the llama ate it"));
  std::string msg = error_of([&] { pool.store().fetch(r, 30s); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "the llama ate it")) << msg;
  EXPECT_TRUE(contains(msg, "worker 2")) << msg;
  EXPECT_TRUE(contains(msg, "'boom'")) << msg;
  msg = error_of([&] { pool.call(3, "boom_error"); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "NotFound: the thing was not there")) << msg;
  msg = error_of([&] { pool.call(3, "wrong_writer"); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "result_writer")) << msg;
  EXPECT_EQ(pool.call<int>(2, "add", 1, 1), 2) << "the worker lives on";

  std::uint32_t before = pool.store().info().objects;
  msg = error_of([&] { pool.everywhere("boom", std::string("everyone fails")); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "worker 2") && contains(msg, "worker 3")) << msg;
  EXPECT_EQ(pool.store().info().objects, before) << "a failed broadcast erases its results";
}

TEST(Pool, sigkill_during_a_task_fails_it_and_the_tasks_queued_behind_it) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(2);
  RemoteRef started = pool.store().make_ref();
  RemoteRef release = pool.store().make_ref();
  RemoteRef running = pool.run_at(2, "hold", started, release);
  RemoteRef queued = pool.run_at(2, "add", 1, 1);
  pool.store().fetch(started, 30s);  // worker 2 is inside hold()
  ProcessWatch two(pool.pid(2));
  ASSERT_EQ(::kill(pool.pid(2), SIGKILL), 0);

  std::string msg = error_of([&] { pool.store().fetch(running, 30s); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "worker 2")) << msg;
  EXPECT_TRUE(contains(msg, "SIGKILL")) << msg;
  EXPECT_TRUE(contains(msg, "while running 'hold'")) << msg;
  msg = error_of([&] { pool.store().fetch(queued, 30s); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "before it ran 'add'")) << msg;
  EXPECT_TRUE(two.ended());
  EXPECT_EQ(pool.workers(), (std::vector<WorkerId>{3}));
  EXPECT_ERRC(pool.run_at(2, "add", 1, 2), Errc::InvalidArgument);
  EXPECT_EQ(pool.call<int>(3, "add", 2, 2), 4) << "the other worker is untouched";
}

TEST(Pool, a_worker_that_exits_fails_its_task_with_the_exit_code) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(1);
  std::string msg = error_of([&] { pool.call(2, "exit_now", 3); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "exited with code 3, while running 'exit_now'")) << msg;
  EXPECT_TRUE(pool.workers().empty());
}

TEST(Pool, bad_calls_fail_at_once_and_queue_nothing) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(1);
  std::string msg = error_of([&] { pool.run_at(2, "no_such_function"); }, Errc::NotFound);
  EXPECT_TRUE(contains(msg, "'no_such_function'")) << msg;
  EXPECT_ERRC(pool.everywhere("no_such_function"), Errc::NotFound);
  msg = error_of([&] { pool.run_at(2, "add", 1.5, 2); }, Errc::TypeMismatch);
  EXPECT_TRUE(contains(msg, "argument 1 of 'add' is f64, but 'add' takes i32")) << msg;
  EXPECT_ERRC(pool.run_at(2, "add", 1), Errc::InvalidArgument);
  EXPECT_ERRC(pool.run_at(2, "sum_ref", 7), Errc::TypeMismatch);
  EXPECT_TRUE(contains(error_of([&] { pool.run_at(42, "add", 1, 2); }, Errc::InvalidArgument), "not a worker"));
  EXPECT_EQ(pool.store().info().objects, 0U) << "no result ref was made";
}

TEST(Pool, remove_lets_the_queue_finish) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(1);
  std::vector<RemoteRef> refs;
  refs.reserve(10);
  for (int i = 0; i < 10; ++i) refs.push_back(pool.run_at(2, "add", i, 100));
  pool.remove(2);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(pool.store().fetch(refs[static_cast<std::size_t>(i)]).as<int>(), i + 100);
}

// An idle worker asleep on its queue stops when removed, however the stop
// request and its sleep interleave: never killed for missing the wake-up.
TEST(Pool, an_idle_worker_always_stops_cleanly_when_removed) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  for (int round = 0; round < 40; ++round) {
    WorkerId id = pool.add(1).at(0);
    EXPECT_EQ(pool.call<int>(id, "add", round, 1), round + 1);  // it is up, and goes back to sleep
    pool.remove(id, 500ms);
    std::string msg = error_of([&] { pool.run_at(id, "add", 1, 2); }, Errc::InvalidArgument);
    EXPECT_TRUE(contains(msg, "was removed") && !contains(msg, "killed")) << "round " << round << ": " << msg;
  }
}

TEST(Pool, remove_kills_a_worker_that_does_not_stop_in_time) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(1);
  RemoteRef started = pool.store().make_ref();
  RemoteRef release = pool.store().make_ref();  // never sealed
  RemoteRef r = pool.run_at(2, "hold", started, release);
  pool.store().fetch(started, 30s);
  ProcessWatch two(pool.pid(2));
  pool.remove(2, 200ms);
  EXPECT_TRUE(two.ended());
  std::string msg = error_of([&] { pool.store().fetch(r, 30s); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "did not stop within 200 ms of its removal")) << msg;
  EXPECT_TRUE(pool.workers().empty());
}

TEST(Pool, a_submitter_waiting_on_a_full_queue_is_released_when_the_worker_is_killed) {
  SegmentGuard g;
  PoolOptions o = small_pool();
  o.queue_depth = 1;
  Pool pool = Pool::create(g.name(), o);
  pool.add(1);
  RemoteRef started = pool.store().make_ref();
  RemoteRef release = pool.store().make_ref();  // never sealed: worker 2 hangs in hold()
  RemoteRef running = pool.run_at(2, "hold", started, release);
  pool.store().fetch(started, 30s);
  RemoteRef queued = pool.run_at(2, "add", 1, 1);  // fills the one-slot queue
  Errc third = Errc::NotFound;
  std::thread submitter([&] {
    try {
      pool.run_at(2, "add", 2, 2);  // waits for room that never comes
    } catch (const Error& e) {
      third = e.code();
    }
  });
  pool.remove(2, 200ms);
  submitter.join();
  EXPECT_TRUE(third == Errc::WorkerFailed || third == Errc::InvalidArgument) << to_string(third);
  EXPECT_ERRC(pool.store().fetch(running, 30s), Errc::WorkerFailed);
  EXPECT_ERRC(pool.store().fetch(queued, 30s), Errc::WorkerFailed);
}

// ---- sticky broadcasts

TEST(Pool, a_sticky_broadcast_runs_on_workers_added_later) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(1);
  for (const RemoteRef& r : pool.everywhere(EverywhereOptions{.sticky = true}, "set_config", 42)) {
    pool.store().erase(r);
  }
  for (const RemoteRef& r : pool.everywhere("set_other", 7)) pool.store().erase(r);
  std::vector<WorkerId> added = pool.add(2);
  ASSERT_EQ(added, (std::vector<WorkerId>{3, 4}));
  for (WorkerId w : added) {
    EXPECT_EQ(pool.call<int>(w, "get_config"), 42) << "worker " << w;
    EXPECT_EQ(pool.call<int>(w, "get_other"), 0) << "a plain broadcast is not replayed";
  }
  EXPECT_EQ(pool.call<int>(2, "get_other"), 7);
  EXPECT_EQ(pool.store().info().objects, 0U) << "the replay's results are erased";
}

TEST(Pool, a_sticky_broadcast_that_fails_on_a_new_worker_fails_the_add) {
  SegmentGuard g;
  Pool pool = Pool::create(g.name(), small_pool());
  pool.add(1);
  pool.everywhere(EverywhereOptions{.sticky = true}, "fail_above", WorkerId{2});
  std::string msg = error_of([&] { pool.add(1); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "set-up refused on a new worker")) << msg;
  EXPECT_EQ(pool.workers(), (std::vector<WorkerId>{2})) << "all or nothing";
}

// ---- starting

TEST(Pool, a_worker_that_never_attaches_fails_the_add) {
  SegmentGuard g;
  PoolOptions o = small_pool();
  o.executable = "/bin/true";
  Pool pool = Pool::create(g.name(), o);
  std::string msg = error_of([&] { pool.add(2); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "exited with code 0 before it attached")) << msg;
  EXPECT_TRUE(pool.workers().empty());
  EXPECT_TRUE(no_children());
}

TEST(Pool, a_missing_executable_fails_the_add) {
  SegmentGuard g;
  PoolOptions o = small_pool();
  o.executable = "/nonexistent/sealstore-worker";
  Pool pool = Pool::create(g.name(), o);
  std::string msg = error_of([&] { pool.add(1); }, Errc::WorkerFailed);
  EXPECT_TRUE(contains(msg, "/nonexistent/sealstore-worker")) << msg;
  EXPECT_TRUE(no_children()) << "the failed child was reaped";
}

TEST(Pool, a_worker_that_attaches_too_late_is_killed) {
  SegmentGuard g;
  std::string script = "/tmp/" + g.name() + ".sh";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\nexec sleep 60\n";
  }
  ::chmod(script.c_str(), 0700);
  PoolOptions o = small_pool();
  o.executable = script;
  o.start_timeout = 300ms;
  Pool pool = Pool::create(g.name(), o);
  std::string msg = error_of([&] { pool.add(1); }, Errc::WorkerFailed);
  ::unlink(script.c_str());
  EXPECT_TRUE(contains(msg, "did not attach")) << msg;
  EXPECT_TRUE(no_children());
}

TEST(Pool, max_workers_is_enforced) {
  SegmentGuard g;
  PoolOptions o = small_pool();
  o.max_workers = 2;
  Pool pool = Pool::create(g.name(), o);
  EXPECT_ERRC(pool.add(3), Errc::OutOfMemory);
  EXPECT_EQ(pool.add(2).size(), 2U);
  EXPECT_ERRC(pool.add(1), Errc::OutOfMemory);
}

TEST(Pool, bad_options_are_rejected_and_leave_no_segment) {
  SegmentGuard g;
  PoolOptions o = small_pool();
  o.queue_depth = 3;
  EXPECT_ERRC(Pool::create(g.name(), o), Errc::InvalidArgument);
  o = small_pool();
  o.max_workers = 0;
  EXPECT_ERRC(Pool::create(g.name(), o), Errc::InvalidArgument);
  EXPECT_FALSE(Store::exists(g.name()));
  Pool first = Pool::create(g.name(), small_pool());
  EXPECT_ERRC(Pool::create(g.name(), small_pool()), Errc::AlreadyExists);
}

TEST(Pool, a_moved_from_pool_is_empty) {
  SegmentGuard g;
  Pool a = Pool::create(g.name(), small_pool());
  Pool b = std::move(a);
  EXPECT_ERRC(a.workers(), Errc::InvalidArgument);  // NOLINT(bugprone-use-after-move): what is tested
  EXPECT_TRUE(b.workers().empty());
}

TEST(Pool, a_worker_whose_main_forgets_the_hook_cannot_make_a_pool) {
  SegmentGuard g;
  Child c([&] {
    // The workers of this child run forgetful_main() (see main() below).
    ::setenv("SEALSTORE_TEST_FORGET_HOOK", "1", 1);
    Pool pool = Pool::create(g.name(), small_pool());
    try {
      pool.add(1);
    } catch (const Error& e) {
      return e.code() == Errc::WorkerFailed && contains(e.what(), "exited with code 42 before it attached") ? 0 : 1;
    }
    return 2;
  });
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << st.code;
  EXPECT_FALSE(Store::exists(g.name()));
}

TEST(Pool, a_function_registered_twice_is_reported) {
  SegmentGuard g;
  Child c([&] {
    if (register_function("add", add)) return 3;
    if (register_function("bad name!", add)) return 4;
    try {
      Pool::create(g.name(), small_pool());
    } catch (const Error& e) {
      bool ok = e.code() == Errc::InvalidArgument && contains(e.what(), "'add' is registered twice") &&
                contains(e.what(), "'bad name!'");
      return ok ? 0 : 1;
    }
    return 2;
  });
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << st.code;
}

// ---- cleanup

TEST(Pool, destroying_the_pool_stops_its_workers_and_removes_everything) {
  SegmentGuard g;
  std::vector<std::unique_ptr<ProcessWatch>> watches;
  std::string path;
  {
    Pool pool = Pool::create(g.name(), small_pool());
    pool.add(2);
    RemoteRef started = pool.store().make_ref();
    RemoteRef release = pool.store().make_ref();
    pool.run_at(2, "hold", started, release);
    pool.store().fetch(started, 30s);
    pool.store().put(release, 5);  // the destructor waits for the queue
    for (WorkerId w : pool.workers()) watches.push_back(std::make_unique<ProcessWatch>(pool.pid(w)));
    path = pool.store().info().path;
    EXPECT_TRUE(has_pool_memfd());
  }
  for (auto& w : watches) EXPECT_TRUE(w->ended());
  EXPECT_TRUE(no_children()) << "every worker was reaped";
  EXPECT_FALSE(Store::exists(g.name()));
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
  EXPECT_FALSE(has_pool_memfd());
}

// A child makes a pool, reports ready, then ends as `end` says. Afterwards
// no worker and no segment may be left.
void expect_cleanup_after(const std::function<void(Pipe&)>& end, int expected_signal) {
  SegmentGuard g;
  Pipe ready;
  Pipe go;
  Child c([&] {
    static Pool* leaked = nullptr;  // never destroyed: only the emergency net can clean up
    leaked = new Pool(Pool::create(g.name(), small_pool()));
    leaked->add(2);
    ready.send();
    end(go);
    return 5;
  });
  ASSERT_EQ(ready.receive(), 'x');
  auto watches = watch_workers(g.name());
  ASSERT_EQ(watches.size(), 2U);
  if (expected_signal == SIGINT || expected_signal == SIGTERM) c.kill(expected_signal);
  go.send();
  auto st = c.wait();
  if (expected_signal != 0) {
    EXPECT_EQ(st.signal, expected_signal);
  } else {
    EXPECT_TRUE(st.exited && st.code == 0) << st.code << " " << st.signal;
  }
  for (auto& w : watches) EXPECT_TRUE(w->ended(10s)) << "a worker outlived its owner";
  EXPECT_FALSE(Store::exists(g.name())) << "the segment was left behind";
}

TEST(PoolCleanup, ctrl_c_of_the_owner_kills_workers_and_removes_the_segment) {
  expect_cleanup_after(
      [](Pipe& go) {
        go.receive(60s);
        for (;;) ::pause();
      },
      SIGINT);
}

TEST(PoolCleanup, sigterm_of_the_owner_kills_workers_and_removes_the_segment) {
  expect_cleanup_after(
      [](Pipe& go) {
        go.receive(60s);
        for (;;) ::pause();
      },
      SIGTERM);
}

TEST(PoolCleanup, exit_without_destroying_the_pool_cleans_up) {
  expect_cleanup_after(
      [](Pipe& go) {
        go.receive(60s);
        std::exit(0);
      },
      0);
}

TEST(PoolCleanup, an_uncaught_exception_cleans_up) {
  expect_cleanup_after(
      [](Pipe& go) {
        go.receive(60s);
        std::terminate();
      },
      SIGABRT);
}

TEST(PoolCleanup, sigkill_of_the_owner_leaves_no_worker_behind) {
  SegmentGuard g;  // a SIGKILLed process removes nothing: the guard removes the segment
  Pipe ready;
  Child c([&] {
    static Pool* leaked = nullptr;
    leaked = new Pool(Pool::create(g.name(), small_pool()));
    leaked->add(2);
    ready.send();
    for (;;) ::pause();
    return 5;
  });
  ASSERT_EQ(ready.receive(), 'x');
  auto watches = watch_workers(g.name());
  ASSERT_EQ(watches.size(), 2U);
  c.kill(SIGKILL);
  EXPECT_EQ(c.wait().signal, SIGKILL);
  for (auto& w : watches) EXPECT_TRUE(w->ended(10s)) << "a worker outlived its SIGKILLed owner";
}

}  // namespace
}  // namespace sealstore

// A worker whose main() "forgot" the hook and goes on to make a pool: that
// must fail, rather than a worker making workers without end.
int forgetful_main() {
  try {
    sealstore::Pool::create("never-made-" + std::to_string(::getpid()));
  } catch (const sealstore::Error& e) {
    bool ok =
        e.code() == sealstore::Errc::InvalidArgument && std::string(e.what()).find("worker_main") != std::string::npos;
    return ok ? 42 : 1;
  }
  return 2;
}

int main(int argc, char** argv) {
  if (std::getenv("SEALSTORE_TEST_FORGET_HOOK") != nullptr && sealstore::Pool::is_worker(argc, argv)) {
    return forgetful_main();
  }
  if (sealstore::Pool::is_worker(argc, argv)) return sealstore::Pool::worker_main(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
