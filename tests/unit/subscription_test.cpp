// Seal notifications: Store::subscribe() and Subscription::next().
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::SegmentGuard;
using test::small_options;

TEST(Subscription, events_arrive_in_seal_order_with_ref_type_size_and_sealer) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef before = s.put(1);
  Subscription sub = s.subscribe();
  RemoteRef a = s.put(std::vector<float>(10, 1.0F));
  RemoteRef made = s.make_ref();
  Writer w = s.create_writer(made, 6, Codec<std::string>::wanted());
  RemoteRef b = s.put(NdArray<std::int16_t>({3, 4}));
  std::memcpy(w.bytes().data(), "abcdef", 6);
  std::move(w).seal();
  std::vector<SealEvent> got;
  for (int k = 0; k < 3; ++k) {
    auto ev = sub.next(10s);
    ASSERT_TRUE(ev.has_value());
    got.push_back(*ev);
  }
  EXPECT_EQ(got[0].ref, a);
  EXPECT_EQ(got[0].type, Codec<std::vector<float>>::wanted());
  EXPECT_EQ(got[0].size, 40U);
  EXPECT_EQ(got[0].sealed_by, s.myid());
  EXPECT_EQ(got[0].sealed_by_pid, ::getpid());
  EXPECT_EQ(got[0].missed, 0U);
  EXPECT_EQ(got[1].ref, b);
  EXPECT_EQ(got[1].type.rank, 2U);
  EXPECT_EQ(got[1].type.shape[1], 4U);
  EXPECT_EQ(got[1].size, 24U);
  EXPECT_EQ(got[2].ref, made);
  EXPECT_EQ(got[2].ref.where(), made.where());
  EXPECT_EQ(got[2].size, 6U);
  EXPECT_EQ(got[1].sequence, got[0].sequence + 1);
  EXPECT_EQ(got[2].sequence, got[1].sequence + 1);
  EXPECT_NE(got[0].ref, before) << "seals before subscribe() are not reported";
  EXPECT_FALSE(sub.try_next().has_value());
  EXPECT_EQ(sub.position(), got[2].sequence + 1);
}

TEST(Subscription, next_times_out_empty_and_rejects_bad_arguments) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  Subscription sub = s.subscribe();
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(sub.next(50ms).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  EXPECT_THROW(sub.next(-1ms), Error);
  Subscription empty;
  EXPECT_THROW(empty.next(1ms), Error);
  Subscription moved = std::move(sub);
  EXPECT_TRUE(sub.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  s.put(5);
  EXPECT_TRUE(moved.next(10s).has_value());
}

TEST(Subscription, a_sleeping_subscriber_wakes_for_a_seal_in_another_thread) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  Subscription sub = s.subscribe();
  RemoteRef r;
  std::thread sealer([&] {
    std::this_thread::sleep_for(50ms);
    r = s.put(7);
  });
  auto ev = sub.next(30s);
  sealer.join();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->ref, r);
}

TEST(Subscription, a_subscriber_that_falls_a_ring_behind_is_told_how_many_it_missed) {
  SegmentGuard g;
  CreateOptions o = small_options();
  o.max_objects = 8192;
  Store s = Store::create(g.name(), o);
  Subscription sub = s.subscribe();
  constexpr std::uint64_t kRing = 4096;
  constexpr std::uint64_t kSeals = kRing + 500;
  std::vector<RemoteRef> refs;
  for (std::uint64_t k = 0; k < kSeals; ++k) refs.push_back(s.put(k));
  auto first = sub.next(10s);
  ASSERT_TRUE(first.has_value());
  EXPECT_GE(first->missed, 500U);
  EXPECT_EQ(first->sequence, first->missed);
  EXPECT_EQ(first->ref, refs[first->sequence]);
  std::uint64_t seen = 1;
  while (auto ev = sub.try_next()) {
    EXPECT_EQ(ev->missed, 0U);
    EXPECT_EQ(ev->ref, refs[ev->sequence]);
    ++seen;
  }
  EXPECT_EQ(seen + sub.missed(), kSeals);
}

TEST(Subscription, events_of_many_threads_are_each_reported_once_in_one_order) {
  SegmentGuard g;
  CreateOptions o = small_options();
  o.max_objects = 8192;
  Store s = Store::create(g.name(), o);
  Subscription sub = s.subscribe();
  constexpr int kThreads = 4;
  constexpr int kEach = 500;
  std::vector<std::thread> threads;
  std::unordered_set<RemoteRef> made;
  std::mutex mu;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kEach; ++k) {
        RemoteRef r = s.put(t * kEach + k);
        std::lock_guard lock(mu);
        made.insert(r);
      }
    });
  }
  std::unordered_set<RemoteRef> seen;
  std::uint64_t next_seq = sub.position();
  while (seen.size() < std::size_t{kThreads} * kEach) {
    auto ev = sub.next(30s);
    ASSERT_TRUE(ev.has_value());
    EXPECT_EQ(ev->missed, 0U);
    EXPECT_EQ(ev->sequence, next_seq++);
    EXPECT_TRUE(seen.insert(ev->ref).second) << "reported twice: " << ev->ref.to_string();
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen, made);
}

TEST(Subscription, an_observer_cannot_subscribe) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  AttachOptions o;
  o.observer = true;
  Store watcher = Store::attach(g.name(), o);
  EXPECT_THROW(watcher.subscribe(), Error);
}

}  // namespace
}  // namespace sealstore
