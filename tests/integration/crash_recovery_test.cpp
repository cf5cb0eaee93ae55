// Processes that die at the worst moments, by real SIGKILL: what recovery
// finds and what it must leave behind. Children reach into the segment's
// internals only to stop at a precise instruction (holding the lock, a
// name half written), as a kill there would leave it.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "segment/layout.hpp"
#include "store/session.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"
#include "sync/atomics.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::Pipe;
using test::SegmentGuard;
using test::small_options;

detail::Header& header_of(const Store& s) { return s.session()->header(); }

template <class T>
T* table(const Store& s, std::uint64_t offset) {
  return reinterpret_cast<T*>(s.session()->mapping().base() + offset);  // NOLINT
}

// Polls the store (no sleeping) until pred holds; false after the deadline.
template <class Pred>
bool eventually(Pred pred, std::chrono::seconds limit = 20s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    sched_yield();
  }
  return true;
}

TEST(CrashRecovery, a_process_killed_between_its_unpin_and_the_free_leaves_no_erased_object_behind) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<char>(100000, 'e'));
  Pipe pinned;
  Pipe erased;
  Child c([&] {
    Store t = Store::attach(g.name());
    View v = t.fetch(r);
    pinned.send();
    if (erased.receive() != 'x') return 3;
    // Hold the lock, so the unpin below clears this process's pin bit and
    // then blocks before it can free the erased object: killed there.
    t.session()->lock_for_test();
    std::thread release([&] { v.reset(); });
    release.detach();
    ::pause();
    return 0;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  s.erase(r);
  ASSERT_EQ(s.objects().size(), 1U);
  EXPECT_EQ(s.objects().at(0).state, ObjectState::ErasePending);
  erased.send();
  ASSERT_TRUE(eventually([&] {
    auto ps = s.processes();
    return ps.size() == 2 && ps[1].pinned_objects == 0;
  })) << "the child never dropped its pin bit";
  c.kill(SIGKILL);
  EXPECT_EQ(c.wait().signal, SIGKILL);

  EXPECT_EQ(s.recover(), 1U) << "the repair after the dead lock holder reaped it";
  SegmentInfo i = s.info();
  EXPECT_EQ(i.objects, 0U) << "the deferred erase was completed";
  EXPECT_EQ(i.used, 0U);
  EXPECT_EQ(i.largest_free, i.capacity);
  EXPECT_EQ(i.free_extents, 1U);
  EXPECT_EQ(i.lock_repairs, 1U);
  EXPECT_EQ(i.recoveries, 1U);
}

// A repair rebuilds the allocator's books and renumbers their blocks. A
// process's cache, filled before, must still give its space back after:
// once it held stale block numbers, and leaving failed with Corrupt, left
// its slot to be reaped as if it had died, and set off another repair.
TEST(CrashRecovery, a_cache_filled_before_a_repair_gives_its_space_back_after_it) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::optional<Store> t(Store::attach(g.name()));
  // Fill t's caches in several size classes, interleaved, so that its
  // blocks are numbered in another order than their offsets.
  std::vector<RemoteRef> refs;
  for (int round = 0; round < 8; ++round) {
    for (std::size_t size : {40U, 3000U, 200U, 9000U, 700U}) refs.push_back(t->put(std::vector<char>(size, 'c')));
  }
  for (std::size_t k = 0; k < refs.size(); k += 2) t->erase(refs[k]);
  ASSERT_GT(t->info().cached, 0U) << "the test needs entries cached by t";

  Pipe locked;
  Child c([&] {
    Store u = Store::attach(g.name());
    u.session()->lock_for_test();
    locked.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(locked.receive(), 'x');
  c.kill(SIGKILL);
  EXPECT_EQ(c.wait().signal, SIGKILL);
  EXPECT_EQ(s.recover(), 1U) << "the dead lock holder, reaped by the repair";
  ASSERT_EQ(s.info().lock_repairs, 1U);

  // t uses its cache, then leaves: everything it held goes back.
  for (std::size_t k = 1; k < refs.size(); k += 2) t->erase(refs[k]);
  for (int k = 0; k < 20; ++k) t->erase(t->put(std::vector<char>(40, 'd')));
  t.reset();
  EXPECT_EQ(s.recover(), 0U) << "t left cleanly: there is nobody to reap";
  SegmentInfo i = s.info();
  EXPECT_EQ(i.recoveries, 1U) << "only the killed child died";
  EXPECT_EQ(i.lock_repairs, 1U) << "no repair after the first";
  EXPECT_EQ(i.cached, 0U);
  EXPECT_EQ(i.objects, 0U);
  EXPECT_EQ(i.used, 0U);
  EXPECT_EQ(i.largest_free, i.capacity);
  EXPECT_EQ(i.free_extents, 1U);
}

// Every process slot held by the dead: attaching once failed with "all
// process slots are in use", and only an attached process could reap them.
TEST(CrashRecovery, a_process_can_attach_when_the_dead_hold_every_slot) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::vector<std::unique_ptr<Child>> dead;
  for (std::uint32_t k = 1; k < detail::kMaxProcesses; ++k) {
    Pipe attached;
    dead.push_back(std::make_unique<Child>([&] {
      Store t = Store::attach(g.name());
      t.put(std::vector<char>(100, 'w'));  // something cached, to be taken back
      attached.send();
      ::pause();
      return 0;
    }));
    ASSERT_EQ(attached.receive(), 'x') << "child " << k;
  }
  for (auto& c : dead) {
    c->kill(SIGKILL);
    EXPECT_EQ(c->wait().signal, SIGKILL);
  }
  ASSERT_EQ(s.processes().size(), detail::kMaxProcesses) << "every slot still says live";

  Store late = Store::attach(g.name());
  RemoteRef r = late.put(7);
  EXPECT_EQ(late.fetch(r).as<int>(), 7);
  EXPECT_EQ(s.processes().size(), 2U) << "the attach reaped every dead process on its way in";
  EXPECT_EQ(s.recover(), 0U);
  EXPECT_EQ(s.info().recoveries, detail::kMaxProcesses - 1);
  EXPECT_EQ(s.objects().size(), detail::kMaxProcesses) << "what the dead sealed stays";
}

TEST(CrashRecovery, a_lookup_does_not_wait_for_ever_on_a_name_its_writer_died_changing) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(42);
  s.bind("answer", r);
  Pipe stopped;
  Child c([&] {
    Store t = Store::attach(g.name());
    detail::Header& h = header_of(t);
    t.session()->lock_for_test();
    auto* names = table<detail::NameSlot>(t, h.names_offset);
    for (std::uint32_t i = 0; i < h.name_slots; ++i) {
      if (names[i].state == 1) detail::atomic(names[i].seq).fetch_add(1);  // NOLINT: now mid-change
    }
    stopped.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(stopped.receive(), 'x');
  c.kill(SIGKILL);
  c.wait();

  // An observer cannot lock: it gives up on the slot and answers.
  Child observer([&] {
    AttachOptions o;
    o.observer = true;
    Store t = Store::attach(g.name(), o);
    return t.lookup("answer").has_value() ? 1 : 0;
  });
  auto st = observer.wait(20s);
  EXPECT_FALSE(st.timed_out) << "an observer's lookup hung on the half-written name";
  EXPECT_EQ(st.code, 0);
  // An attached process takes the lock, which repairs the table: the name,
  // caught half-changed, is dropped (rolled back to no binding).
  std::atomic<bool> finished{false};
  std::optional<RemoteRef> found = r;
  std::thread lookup([&] {
    found = s.lookup("answer");
    finished = true;
  });
  bool answered = eventually([&] { return finished.load(); }, 20s);
  if (!answered) s.recover();  // unstick it, to fail cleanly
  lookup.join();
  EXPECT_TRUE(answered) << "lookup waited for a name slot whose writer was dead";
  EXPECT_FALSE(found.has_value());
  EXPECT_FALSE(s.lookup("answer").has_value());
  s.bind("answer", r);
  EXPECT_EQ(s.lookup("answer"), r) << "the name table works again";
  EXPECT_EQ(s.fetch(r).as<int>(), 42);
}

TEST(CrashRecovery, a_holder_that_died_leaving_a_damaged_entry_does_not_stop_the_store) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef keep = s.put(std::string("kept"));
  Pipe stopped;
  Child c([&] {
    Store t = Store::attach(g.name());
    detail::Header& h = header_of(t);
    t.session()->lock_for_test();
    // Dies holding the lock, entry 100's head word garbage.
    detail::store(table<detail::Entry>(t, h.entries_offset)[100].word, std::uint64_t{77});  // NOLINT
    stopped.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(stopped.receive(), 'x');
  c.kill(SIGKILL);
  c.wait();
  // The next locker (a make_ref) takes the lock over and repairs: the
  // damaged entry is set aside (neither free nor an object), and
  // everything else works.
  RemoteRef made = s.make_ref();
  s.put(made, 1);
  RemoteRef r = s.put(3);
  EXPECT_EQ(s.fetch(r).as<int>(), 3);
  EXPECT_EQ(s.fetch(keep).as_string(), "kept");
  EXPECT_EQ(s.processes().size(), 1U);
  EXPECT_EQ(s.info().lock_repairs, 1U);
  RemoteRef damaged(s.info().segment_tag, (std::uint64_t{1} << 32U) | 100U, 1, 1);
  EXPECT_ERRC(s.fetch(damaged), Errc::Corrupt);
  EXPECT_EQ(s.objects().size(), 3U);
}

TEST(CrashRecovery, a_live_process_is_not_reaped_when_proc_cannot_be_read) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<int>(1000, 7));
  Pipe pinned;
  Pipe done;
  Child holder([&] {
    Store t = Store::attach(g.name());
    View v = t.fetch(r);
    pinned.send();
    if (done.receive() != 'x') return 3;
    return v.as_span<int>()[999] == 7 ? 0 : 1;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  Child starved([&] {
    Store t = Store::attach(g.name());
    // Out of file descriptors: /proc/PID/stat of the others cannot be opened.
    rlimit lim{64, 64};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) return 4;
    std::vector<int> fds;
    for (int fd = ::dup(0); fd >= 0; fd = ::dup(0)) fds.push_back(fd);
    auto reaped = static_cast<int>(t.recover());
    for (int fd : fds) ::close(fd);  // then detach as usual (sanitizers need descriptors too)
    return reaped;
  });
  auto st = starved.wait();
  EXPECT_TRUE(st.exited);
  EXPECT_EQ(st.code, 0) << "recover() reaped processes it could not see were dead";
  auto ps = s.processes();
  ASSERT_EQ(ps.size(), 2U) << "the owner and the holder are still attached";
  EXPECT_TRUE(ps[1].alive);
  EXPECT_EQ(ps[1].pinned_objects, 1U);
  done.send();
  st = holder.wait();
  EXPECT_TRUE(st.exited && st.code == 0);
}

TEST(CrashRecovery, attach_reaps_dead_processes_and_completes_their_deferred_erases) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::string(5000, 'p'));
  Pipe pinned;
  Child c([&] {
    Store t = Store::attach(g.name());
    View v = t.fetch(r);
    Writer w = t.create_writer(4096);  // half-written when it dies
    pinned.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  s.erase(r);
  c.kill(SIGKILL);
  c.wait();
  ASSERT_EQ(s.processes().size(), 2U) << "nobody has looked yet";
  Child late([&] {
    Store t = Store::attach(g.name());
    return 0;
  });
  EXPECT_EQ(late.wait().code, 0);
  EXPECT_EQ(s.processes().size(), 1U);
  SegmentInfo i = s.info();
  EXPECT_EQ(i.recoveries, 1U);
  EXPECT_EQ(i.used, 0U) << "the erased object and the half-written one were freed";
  ASSERT_EQ(s.objects().size(), 1U);
  EXPECT_EQ(s.objects().at(0).state, ObjectState::Abandoned);
}

TEST(CrashRecovery, killing_processes_in_every_phase_of_put_and_erase_loses_no_sealed_object) {
  // A shorter, in-suite cousin of sealstore-torture: a child puts and
  // erases in a loop and is killed at an arbitrary point, many times.
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options(std::uint64_t{8} << 20U));
  std::vector<RemoteRef> kept;
  kept.reserve(20);
  for (int i = 0; i < 20; ++i) kept.push_back(s.put(std::vector<int>(1000, i)));
  for (int round = 0; round < 30; ++round) {
    Pipe running;
    Child c([&] {
      Store t = Store::attach(g.name());
      running.send();
      RemoteRef prev;
      for (std::uint64_t n = 0;; ++n) {
        RemoteRef r = t.put(std::vector<std::uint64_t>(1 + n % 3000, n));
        View v = t.fetch(kept[n % kept.size()]);
        t.bind("last", r);
        if (!prev.is_null()) t.erase(prev);
        prev = r;
      }
      return 0;
    });
    ASSERT_EQ(running.receive(), 'x');
    // Let it run for a while measured in its own progress, different each round.
    std::uint64_t target = s.info().recoveries + 1;
    std::uint64_t progress = 20 + static_cast<std::uint64_t>(round) * 37 % 200;
    ASSERT_TRUE(eventually([&] {
      auto ps = s.processes();
      return ps.size() == 2 && ps[1].objects_created >= progress;
    }));
    c.kill(SIGKILL);
    EXPECT_EQ(c.wait().signal, SIGKILL);
    s.recover();
    EXPECT_EQ(s.info().recoveries, target);
  }
  for (std::size_t i = 0; i < kept.size(); ++i) {
    auto v = s.materialize<std::vector<int>>(kept[i]);
    ASSERT_EQ(v.size(), 1000U);
    EXPECT_EQ(v[0], static_cast<int>(i));
    EXPECT_EQ(v[999], static_cast<int>(i));
  }
  for (const auto& o : s.objects()) {
    EXPECT_TRUE(o.pinned_by.empty()) << o.ref.to_string();
    s.erase(o.ref);
  }
  SegmentInfo i = s.info();
  EXPECT_EQ(i.objects, 0U);
  EXPECT_EQ(i.used, 0U);
  // Once the last process detaches (and its cache goes back), the free
  // space is one block again: nothing leaked.
  AttachOptions o;
  o.observer = true;
  Store observer = Store::attach(g.name(), o);
  s = Store::attach(g.name(), o);  // the creator detaches
  i = observer.info();
  EXPECT_EQ(i.cached, 0U);
  EXPECT_EQ(i.largest_free, i.capacity);
  EXPECT_EQ(i.free_extents, 1U);
}

}  // namespace
}  // namespace sealstore
