// Real processes sharing real segments: fork, pipes, signals, /proc.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>

#include "sealstore/sealstore.hpp"
#include "store/session.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::Pipe;
using test::SegmentGuard;
using test::small_options;

std::uint64_t checksum(std::span<const std::byte> b) {
  std::uint64_t h = 1469598103934665603ULL;
  const auto* w = reinterpret_cast<const std::uint64_t*>(b.data());
  std::size_t n = b.size() / 8;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ w[i]) * 1099511628211ULL;
  for (std::size_t i = n * 8; i < b.size(); ++i) h = (h ^ static_cast<std::uint8_t>(b[i])) * 1099511628211ULL;
  return h;
}

void fill_pattern(std::span<std::byte> b, std::uint64_t seed) {
  auto* w = reinterpret_cast<std::uint64_t*>(b.data());
  for (std::size_t i = 0; i < b.size() / 8; ++i) w[i] = seed * 0x9E3779B97F4A7C15ULL + i;
}

TEST(MultiProcess, child_fetches_what_the_parent_sealed) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  Writer w = s.create_writer(1 << 20);
  fill_pattern(w.bytes(), 7);
  std::uint64_t sum = checksum(w.bytes());
  RemoteRef r = std::move(w).seal();
  std::string text = r.to_string();
  Child c([&] {
    Store t = Store::attach(g.name());
    View v = t.fetch(RemoteRef::parse(text), 10s);
    return checksum(v.bytes()) == sum ? 0 : 1;
  });
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << "code " << st.code << " signal " << st.signal;
}

TEST(MultiProcess, child_blocked_in_fetch_wakes_after_the_seal) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref(2);
  Pipe attached;
  Child c([&] {
    Store t = Store::attach(g.name());
    attached.send();
    View v = t.fetch(r, 30s);  // blocks: the ref is unfilled
    return v.as<std::uint64_t>() == 0xfeedULL ? 0 : 1;
  });
  ASSERT_EQ(attached.receive(), 'x');
  // Seal only once the child sleeps in fetch: the store counts its waiters.
  while (s.objects().at(0).waiters == 0) std::this_thread::yield();
  s.put(r, std::uint64_t{0xfeed});
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << "code " << st.code << " signal " << st.signal;
}

TEST(MultiProcess, two_processes_race_to_seal_one_ref_and_exactly_one_wins) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  for (int round = 0; round < 20; ++round) {
    RemoteRef r = s.make_ref();
    Pipe go;
    auto racer = [&](int value) {
      return [&, value] {
        Store t = Store::attach(g.name());
        if (go.receive() != 'x') return 3;
        try {
          t.put(r, value);
          return 0;  // won
        } catch (const Error& e) {
          return e.code() == Errc::AlreadySealed ? 1 : 2;
        }
      };
    };
    Child a(racer(1));
    Child b(racer(2));
    go.send();
    go.send();
    auto sa = a.wait();
    auto sb = b.wait();
    ASSERT_TRUE(sa.exited && sb.exited);
    ASSERT_EQ(sa.code + sb.code, 1) << "one winner, one AlreadySealed (codes " << sa.code << ", " << sb.code << ")";
    int stored = s.fetch(r).as<int>();
    EXPECT_EQ(stored, sa.code == 0 ? 1 : 2) << "the winner's value is what is sealed";
  }
}

TEST(MultiProcess, erase_while_another_process_holds_a_view_defers_the_free) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::string(100000, 'q'));
  Pipe pinned;
  Pipe erased;
  Pipe done;
  Child c([&] {
    Store t = Store::attach(g.name());
    View v = t.fetch(r);
    pinned.send();
    if (erased.receive() != 'x') return 3;
    // Still valid and unchanged after the erase.
    bool ok = v.as_string() == std::string(100000, 'q');
    v.reset();
    done.send();
    return ok ? 0 : 1;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  s.erase(r);
  EXPECT_FALSE(s.contains(r));
  EXPECT_EQ(s.info().objects, 1U) << "the free waits for the child's pin";
  EXPECT_EQ(s.info().used, 100032U);
  erased.send();
  ASSERT_EQ(done.receive(), 'x');
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0);
  EXPECT_EQ(s.info().objects, 0U);
  EXPECT_EQ(s.info().used, 0U);
}

TEST(MultiProcess, fetch_copies_nothing_and_materialize_copies_once) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer's shadow memory grows with every byte read: private memory says nothing here";
#endif
  constexpr std::uint64_t kSize = std::uint64_t{256} << 20U;
  SegmentGuard g;
  CreateOptions o = small_options(kSize + (std::uint64_t{16} << 20U));
  Store s = Store::create(g.name(), o);
  Writer w = s.create_writer(kSize);
  fill_pattern(w.bytes(), 11);
  std::uint64_t sum = checksum(w.bytes());
  RemoteRef r = std::move(w).seal();
  Pipe report;
  Child c([&] {
    Store t = Store::attach(g.name());
    std::uint64_t before = test::private_bytes();
    View v = t.fetch(r);
    bool same = checksum(v.bytes()) == sum;  // reads every byte
    std::uint64_t after_fetch = test::private_bytes();
    auto copy = t.materialize<std::vector<std::byte>>(r);
    std::uint64_t after_copy = test::private_bytes();
    std::fprintf(stderr, "private before %llu KiB, after fetch+read %llu KiB, after materialize %llu KiB\n",
                 static_cast<unsigned long long>(before >> 10U), static_cast<unsigned long long>(after_fetch >> 10U),
                 static_cast<unsigned long long>(after_copy >> 10U));
    if (!same || checksum(copy) != sum) return 1;
    if (after_fetch - before >= (std::uint64_t{4} << 20U)) return 2;  // fetch: < 4 MiB private
    if (after_copy - after_fetch < kSize) return 3;                   // materialize: >= the object
    return 0;
  });
  auto st = c.wait(120s);
  EXPECT_TRUE(st.exited) << "signal " << st.signal;
  EXPECT_EQ(st.code, 0) << "1: checksum, 2: fetch grew private memory, 3: materialize did not copy";
}

// A large object table read in no particular order takes a TLB miss per
// entry on 4 KiB pages: the creator puts the tables on huge pages, and a
// process attaching later maps them so too, whatever the mount's setting.
TEST(MultiProcess, large_tables_are_on_huge_pages_in_every_process_that_maps_them) {
  if (!test::tmpfs_collapses()) GTEST_SKIP() << "this kernel does not put /dev/shm pages on huge pages (Linux 6.1+)";
  SegmentGuard g;
  CreateOptions o = small_options(std::uint64_t{1} << 20U);
  o.max_objects = 1U << 17U;  // 16 MiB of entries, 2 MiB of pin masks
  Store s = Store::create(g.name(), o);
  std::string path = Store::path_of(g.name());
  EXPECT_GE(test::pmd_mapped_bytes(path), std::uint64_t{18} << 20U);
  std::vector<RemoteRef> refs(64);
  for (std::size_t i = 0; i < refs.size(); ++i) refs[i] = s.put(std::uint64_t{i});
  Child c([&] {
    std::uint64_t before = test::pmd_mapped_bytes(path);
    Store t = Store::attach(g.name());
    std::uint64_t sum = 0;
    for (const RemoteRef& r : refs) sum += t.fetch(r).as<std::uint64_t>();
    std::uint64_t after = test::pmd_mapped_bytes(path);
    std::fprintf(stderr, "huge-page mapped: %llu KiB before attach, %llu KiB after the fetches\n",
                 static_cast<unsigned long long>(before >> 10U), static_cast<unsigned long long>(after >> 10U));
    if (sum != 64 * 63 / 2) return 1;
    return after - before >= (std::uint64_t{2} << 20U) ? 0 : 2;
  });
  auto st = c.wait();
  EXPECT_TRUE(st.exited) << "signal " << st.signal;
  EXPECT_EQ(st.code, 0) << "1: wrong values, 2: the attacher mapped the tables with 4 KiB pages";
}

TEST(MultiProcessDeathTest, writing_through_a_view_faults) {
  // "fast": the child is forked at the statement, so it does not re-run the
  // test's set-up and leave a segment of its own behind when it dies.
  GTEST_FLAG_SET(death_test_style, "fast");
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<int>(1000, 1));
  View v = s.fetch(r);
  auto* p = const_cast<std::byte*>(v.bytes().data());  // NOLINT: the point of the test
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer catches the SIGSEGV itself, reports it and exits non-zero.
  EXPECT_EXIT({ *reinterpret_cast<volatile int*>(p) = 2; }, [](int st) { return st != 0; }, "SEGV");
#else
  EXPECT_EXIT({ *reinterpret_cast<volatile int*>(p) = 2; }, ::testing::KilledBySignal(SIGSEGV), "");
#endif
  EXPECT_EQ(v.as_span<int>()[0], 1);
}

TEST(MultiProcess, a_process_killed_holding_the_lock_does_not_wedge_the_store) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef keep = s.put(std::string("kept"));
  Pipe locked;
  Child c([&] {
    Store t = Store::attach(g.name());
    t.session()->lock_for_test();
    locked.send();
    ::pause();  // killed here, holding the lock
    return 0;
  });
  ASSERT_EQ(locked.receive(), 'x');
  c.kill(SIGKILL);
  auto st = c.wait();
  EXPECT_EQ(st.signal, SIGKILL);
  // Small puts take no lock and go on regardless; the next locker (a
  // large put here) takes the lock over, repairs and carries on; sealed
  // objects are intact.
  RemoteRef small = s.put(7);
  RemoteRef r = s.put(std::vector<int>(100000, 123));
  EXPECT_EQ(s.fetch(small).as<int>(), 7);
  EXPECT_EQ(s.fetch(r).as_span<int>()[99999], 123);
  EXPECT_EQ(s.info().lock_repairs, 1U);
  EXPECT_EQ(s.fetch(keep).as_string(), "kept");
  EXPECT_EQ(s.processes().size(), 1U) << "the dead process's slot was reaped";
  EXPECT_GE(s.info().recoveries, 1U);
}

TEST(MultiProcess, pins_of_a_killed_process_are_released_by_recover) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<char>(10000));
  Pipe pinned;
  Child c([&] {
    Store t = Store::attach(g.name());
    View v = t.fetch(r);
    pinned.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  s.erase(r);
  EXPECT_EQ(s.info().objects, 1U);
  c.kill(SIGKILL);
  c.wait();
  auto ps = s.processes();
  ASSERT_EQ(ps.size(), 2U);
  EXPECT_FALSE(ps[1].alive) << "the killed process shows as dead until reaped";
  EXPECT_EQ(ps[1].pinned_objects, 1U);
  EXPECT_EQ(s.recover(), 1U);
  EXPECT_EQ(s.info().objects, 0U) << "the deferred erase completed";
  EXPECT_EQ(s.info().used, 0U);
  EXPECT_EQ(s.processes().size(), 1U);
}

TEST(MultiProcess, a_writer_killed_before_sealing_fails_its_waiters_with_worker_failed) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref(2);
  Pipe writing;
  Child c([&] {
    Store t = Store::attach(g.name());
    Writer w = t.create_writer(r, 4096);
    writing.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(writing.receive(), 'x');
  EXPECT_EQ(s.info().used, 4096U);
  std::thread killer([&] {
    std::this_thread::sleep_for(50ms);
    c.kill(SIGKILL);
  });
  try {
    s.fetch(r, 30s);
    ADD_FAILURE() << "fetch succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::WorkerFailed) << e.what();
  }
  killer.join();
  c.wait();
  EXPECT_EQ(s.info().used, 0U) << "its half-written space was reclaimed";
  EXPECT_EQ(s.objects().at(0).state, ObjectState::Abandoned);
  s.erase(r);
  EXPECT_EQ(s.info().objects, 0U);
}

TEST(MultiProcess, a_store_handle_inherited_across_fork_refuses_to_work) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(1);
  Child c([&] {
    try {
      s.fetch(r);
      return 1;
    } catch (const Error& e) {
      return e.code() == Errc::InvalidArgument ? 0 : 2;
    }
  });
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0);
  EXPECT_EQ(s.processes().size(), 1U) << "the child's exit did not detach the parent";
  EXPECT_EQ(s.fetch(r).as<int>(), 1);
}

}  // namespace
}  // namespace sealstore
