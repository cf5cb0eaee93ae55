// Spilling and seal events with real processes: fetches in several
// processes sharing one restore, restorers and spillers killed by SIGKILL
// at any moment, subscribers and sealers that die. Children reach into the
// segment's internals only to stop where a kill would leave them.
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "segment/layout.hpp"
#include "store/session.hpp"
#include "support/test_support.hpp"
#include "sync/atomics.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::Pipe;
using test::SegmentGuard;
using test::TempDir;

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20U;

CreateOptions spilling(const TempDir& dir, std::uint64_t capacity) {
  CreateOptions o = test::small_options(capacity);
  o.spill_directory = dir.path();
  return o;
}

std::vector<std::uint64_t> pattern(std::uint64_t seed, std::size_t n) {
  std::vector<std::uint64_t> v(n);
  std::iota(v.begin(), v.end(), seed << 40U);
  return v;
}

detail::Entry& entry_of(const Store& s, const RemoteRef& r) {
  auto* entries = reinterpret_cast<detail::Entry*>(s.session()->mapping().base() +  // NOLINT
                                                   s.session()->geo().entries_offset);
  return entries[r.id() & 0xffffffffU];  // NOLINT
}

std::uint32_t slot_of(const Store& s) {
  for (const ProcessInfo& p : s.processes()) {
    if (p.pid == ::getpid()) return p.slot;
  }
  return detail::kNoSlot;
}

TEST(SpillProcesses, fetches_of_one_spilled_ref_in_many_processes_share_one_restore) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir, 64 * kMiB));
  RemoteRef r = s.put(pattern(9, 4 * kMiB));  // 32 MiB
  ASSERT_TRUE(s.spill(r));
  // Hold it as a restorer would, so every fetcher queues up behind it.
  detail::Entry& e = entry_of(s, r);
  std::uint64_t spilled = detail::load(e.word);
  ASSERT_EQ(detail::word_state(spilled), detail::EntryState::Spilled);
  detail::store(e.word, detail::make_word(detail::EntryState::Restoring, slot_of(s), detail::word_gen(spilled)));
  constexpr int kChildren = 4;
  std::vector<std::unique_ptr<Child>> children;
  children.reserve(kChildren);
  for (int k = 0; k < kChildren; ++k) {
    children.push_back(std::make_unique<Child>([&] {
      Store t = Store::attach(g.name());
      View v = t.fetch(r, 60s);
      auto got = v.as_span<std::uint64_t>();
      return got.size() == 4 * kMiB && got[0] == (std::uint64_t{9} << 40U) && got.back() == pattern(9, 4 * kMiB).back()
                 ? 0
                 : 1;
    }));
  }
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (detail::load(e.waiters) < kChildren && std::chrono::steady_clock::now() < deadline) sched_yield();
  ASSERT_EQ(detail::load(e.waiters), std::uint32_t{kChildren});
  // Let go all at once: one of them wins the restore, the rest wait for it.
  detail::store(e.word, spilled);
  detail::futex_wake_all(reinterpret_cast<std::uint32_t*>(&e.word));  // NOLINT
  for (auto& c : children) {
    Child::Status st = c->wait(60s);
    EXPECT_TRUE(st.exited && st.code == 0) << st.code << " " << st.signal;
  }
  EXPECT_EQ(s.info().restores, 1U);
  EXPECT_EQ(s.info().spilled_objects, 0U);
}

TEST(SpillProcesses, a_restorer_that_dies_leaves_the_object_whole_in_its_file) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir, 16 * kMiB));
  RemoteRef r = s.put(pattern(3, kMiB / 8));
  ASSERT_TRUE(s.spill(r));
  std::uint64_t used = s.info().used;
  Pipe ready;
  Child c([&] {
    Store t = Store::attach(g.name());
    detail::Entry& e = entry_of(t, r);
    std::uint64_t w = detail::load(e.word);
    // Claimed, as restore() claims it, then killed before the read.
    detail::store(e.word, detail::make_word(detail::EntryState::Restoring, slot_of(t), detail::word_gen(w)));
    ready.send();
    for (;;) pause();
    return 0;
  });
  ASSERT_EQ(ready.receive(), 'x');
  c.kill(SIGKILL);
  c.wait();
  EXPECT_EQ(s.objects().at(0).place, Place::Restoring);
  // The fetch waits, finds the restorer dead, puts it back and restores.
  View v = s.fetch(r, 30s);
  EXPECT_EQ(v.as_span<std::uint64_t>()[77], pattern(3, 78)[77]);
  EXPECT_EQ(s.info().restores, 1U);
  EXPECT_EQ(s.info().used, used + kMiB);
}

// Kills a process at random moments of a spill or a restore of a large
// object, then checks the object is whole and nothing leaks.
void kill_at_random(bool restore) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir, 96 * kMiB));
  std::mt19937 rng(12345U + (restore ? 1U : 0U));
  for (int round = 0; round < 8; ++round) {
    RemoteRef r = s.put(pattern(static_cast<std::uint64_t>(round), 6 * kMiB));  // 48 MiB
    if (restore) {
      ASSERT_TRUE(s.spill(r));
    }
    Pipe started;
    Child c([&] {
      Store t = Store::attach(g.name());
      started.send();
      if (restore) {
        View v = t.fetch(r);
      } else {
        t.spill(r);
      }
      return 0;
    });
    ASSERT_EQ(started.receive(), 'x');
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
    c.kill(SIGKILL);
    c.wait();
    s.recover();
    auto back = s.materialize<std::vector<std::uint64_t>>(r, 30s);
    ASSERT_EQ(back.size(), 6 * kMiB);
    EXPECT_EQ(back.front(), pattern(static_cast<std::uint64_t>(round), 1)[0]) << round;
    EXPECT_EQ(back.back(), pattern(static_cast<std::uint64_t>(round), 6 * kMiB).back()) << round;
    s.erase(r);
    SegmentInfo i = s.info();
    EXPECT_EQ(i.used, 0U) << round;
    EXPECT_EQ(i.spilled_objects, 0U) << round;
    EXPECT_EQ(dir.files(), 0U) << "round " << round << ": a spill file outlived its object";
  }
}

TEST(SpillProcesses, a_spiller_killed_at_any_moment_loses_nothing_and_leaks_no_file) { kill_at_random(false); }

TEST(SpillProcesses, a_restorer_killed_at_any_moment_loses_nothing_and_leaks_no_file) { kill_at_random(true); }

// A holder killed inside free_entry_locked, between the word going Free and
// the file's unlink: the entry is free, its flags still say it has a file.
// The repair that follows (the lock taken over) deletes the file.
TEST(SpillProcesses, a_free_entry_left_with_a_spill_file_by_a_killed_holder_has_it_deleted_by_the_repair) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir, 16 * kMiB));
  RemoteRef r = s.put(pattern(5, 1000));
  ASSERT_TRUE(s.spill(r));
  ASSERT_EQ(dir.files(), 1U);
  detail::Entry& e = entry_of(s, r);
  std::uint64_t w = detail::load(e.word);
  ASSERT_NE(detail::load(e.flags) & detail::kSpillFile, 0U);
  detail::store(e.word, detail::make_word(detail::EntryState::Free, detail::kNoOwner, detail::word_gen(w)));
  detail::store(s.session()->header().repair_pending, 1U);  // as a lock taken over from a dead holder
  s.recover();
  EXPECT_EQ(dir.files(), 0U);
  EXPECT_FALSE(s.contains(r));
  SegmentInfo i = s.info();
  EXPECT_EQ(i.spilled_objects, 0U);
  EXPECT_EQ(i.used, 0U);
}

TEST(SealEvents, a_subscriber_hears_the_seals_of_another_process_in_order) {
  SegmentGuard g;
  Store s = Store::create(g.name(), test::small_options());
  Subscription sub = s.subscribe();
  Pipe go;
  Child c([&] {
    Store t = Store::attach(g.name());
    if (go.receive() != 'x') return 1;
    for (int k = 0; k < 200; ++k) t.put(k);
    return 0;
  });
  go.send();
  for (int k = 0; k < 200; ++k) {
    auto ev = sub.next(30s);
    ASSERT_TRUE(ev.has_value()) << k;
    EXPECT_EQ(ev->missed, 0U);
    EXPECT_EQ(ev->sealed_by_pid, c.pid());
    EXPECT_EQ(s.materialize<int>(ev->ref), k);
  }
  EXPECT_TRUE(c.wait().exited);
}

TEST(SealEvents, a_subscriber_that_dies_leaves_nothing_behind) {
  SegmentGuard g;
  Store s = Store::create(g.name(), test::small_options());
  Pipe subscribed;
  Child c([&] {
    Store t = Store::attach(g.name());
    Subscription sub = t.subscribe();
    subscribed.send();
    for (;;) pause();
    return 0;
  });
  ASSERT_EQ(subscribed.receive(), 'x');
  EXPECT_EQ(s.info().subscribers, 1U);
  c.kill(SIGKILL);
  c.wait();
  s.recover();
  EXPECT_EQ(s.info().subscribers, 0U);
  std::uint64_t events = s.info().seal_events;
  s.put(1);
  EXPECT_EQ(s.info().seal_events, events) << "with no subscriber, a seal publishes nothing";
}

TEST(SealEvents, a_sealer_that_dies_while_publishing_costs_one_event_not_a_hang) {
  SegmentGuard g;
  Store s = Store::create(g.name(), test::small_options());
  Subscription sub = s.subscribe();
  Pipe drawn;
  Child c([&] {
    Store t = Store::attach(g.name());
    detail::Header& h = t.session()->header();
    auto* slots = reinterpret_cast<detail::ProcessSlot*>(t.session()->mapping().base() +  // NOLINT
                                                         t.session()->geo().slots_offset);
    // As publish_seal() does, up to the draw: then killed.
    detail::atomic(slots[slot_of(t)].publishing).fetch_add(1);  // NOLINT
    detail::atomic(h.event_head).fetch_add(1);
    drawn.send();
    for (;;) pause();
    return 0;
  });
  ASSERT_EQ(drawn.receive(), 'x');
  c.kill(SIGKILL);
  c.wait();
  // The hole is found while nothing else comes: the loss is carried over
  // the timeout and reported with the next event.
  EXPECT_FALSE(sub.next(100ms).has_value());
  RemoteRef r = s.put(42);
  auto ev = sub.next(30s);
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->ref, r);
  EXPECT_EQ(ev->missed, 1U);
  EXPECT_EQ(sub.missed(), 1U);
}

TEST(SealEvents, a_subscriber_killed_asleep_takes_its_share_of_the_sleepers_along) {
  SegmentGuard g;
  Store s = Store::create(g.name(), test::small_options());
  detail::Header& h = s.session()->header();
  Pipe subscribed;
  Child c([&] {
    Store t = Store::attach(g.name());
    Subscription sub = t.subscribe();
    subscribed.send();
    sub.next(std::chrono::hours(1));
    return 0;
  });
  ASSERT_EQ(subscribed.receive(), 'x');
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (detail::load(h.event_waiters) == 0 && std::chrono::steady_clock::now() < deadline) sched_yield();
  ASSERT_EQ(detail::load(h.event_waiters), 1U);
  c.kill(SIGKILL);
  c.wait();
  s.recover();
  EXPECT_EQ(detail::load(h.event_waiters), 0U) << "every later seal would ring for the dead";
}

TEST(SealEvents, a_subscription_inherited_across_fork_is_refused_in_the_child) {
  SegmentGuard g;
  Store s = Store::create(g.name(), test::small_options());
  Subscription sub = s.subscribe();
  Child c([&] {
    try {
      sub.next(1ms);
    } catch (const Error& e) {
      return e.code() == Errc::InvalidArgument ? 0 : 2;
    }
    return 1;
  });
  Child::Status st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << st.code;
  s.put(1);
  EXPECT_TRUE(sub.next(10s).has_value()) << "the parent's subscription is untouched";
}

}  // namespace
}  // namespace sealstore
