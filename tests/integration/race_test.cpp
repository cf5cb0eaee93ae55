// Interleavings that once gave wrong answers: a name looked up while it is
// rebound, a fetch asleep on a ref whose table entry is erased and reused.
#include <gtest/gtest.h>
#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

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

TEST(Races, a_name_rebound_between_two_objects_always_resolves_to_one_of_them) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef a = s.put(1);
  RemoteRef b = s.put(2);
  s.bind("n", a);
  Pipe started;
  Child c([&] {
    Store t = Store::attach(g.name());
    started.send();
    auto until = std::chrono::steady_clock::now() + 1s;
    for (int i = 0; std::chrono::steady_clock::now() < until; ++i) t.bind("n", i % 2 == 0 ? b : a);
    return 0;
  });
  ASSERT_EQ(started.receive(), 'x');
  std::uint64_t lookups = 0;
  std::uint64_t empty = 0;
  std::uint64_t wrong = 0;
  std::optional<Child::Status> st;
  while (!st) {
    for (int i = 0; i < 1000; ++i) {
      std::optional<RemoteRef> r = s.lookup("n");
      ++lookups;
      if (!r) {
        ++empty;
      } else if (*r != a && *r != b) {
        ++wrong;
      }
    }
    if (s.processes().size() == 1) st = c.wait();
  }
  EXPECT_TRUE(st->exited && st->code == 0);
  EXPECT_EQ(empty, 0U) << "of " << lookups << " lookups of a name that is always bound";
  EXPECT_EQ(wrong, 0U) << "of " << lookups << " lookups";
}

// FNV-1a, as the name table hashes: two names that start probing at the
// same slot of a table of `slots` slots.
std::uint64_t fnv(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ULL;
  return h == 0 ? 1 : h;
}

TEST(Races, a_lookup_never_returns_the_object_of_another_name_that_took_its_slot) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  // Names whose home slots agree in a table of any size up to 2^12 slots.
  std::string first = "a";
  std::string second;
  for (int i = 0; second.empty(); ++i) {
    std::string n = "b" + std::to_string(i);
    if ((fnv(n) & 0xfffU) == (fnv(first) & 0xfffU)) second = n;
  }
  RemoteRef a = s.put(1);
  RemoteRef b = s.put(2);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop.load()) {
      s.bind(first, a);
      s.unbind(first);
      s.bind(second, b);  // into the slot first had
      s.unbind(second);
    }
  });
  std::uint64_t wrong = 0;
  auto until = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 1000; ++i) {
      if (auto r = s.lookup(first); r && *r != a) ++wrong;
    }
  }
  stop.store(true);
  writer.join();
  EXPECT_EQ(wrong, 0U) << "lookup('" << first << "') returned the object bound to '" << second << "'";
}

// The slot of name "a" in s's name table.
detail::NameSlot& slot_of(const Store& s, const std::string& name) {
  const detail::Header& h = s.session()->header();
  auto* slots = reinterpret_cast<detail::NameSlot*>(s.session()->mapping().base() + h.names_offset);  // NOLINT
  for (std::uint32_t i = 0; i < h.name_slots; ++i) {
    std::string text(reinterpret_cast<const char*>(slots[i].name), name.size());  // NOLINT
    if (detail::load(slots[i].state) == 1 && text == name) return slots[i];       // NOLINT
  }
  throw std::runtime_error("no slot for " + name);
}

std::uint32_t index_of(const RemoteRef& r) { return static_cast<std::uint32_t>(r.id() & 0xffffffffU); }
std::uint32_t gen_of(const RemoteRef& r) { return static_cast<std::uint32_t>(r.id() >> 32U); }

// A writer that follows the seqlock to the letter, changing one slot back
// and forth between two bindings of two names: a lookup of one name must
// return its own object or nothing, whatever instant it reads at.
TEST(Races, a_lookup_reads_the_name_and_its_object_from_one_version_of_the_slot) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef a = s.put(1);
  RemoteRef b = s.put(2);
  s.bind("a", a);
  detail::NameSlot& n = slot_of(s, "a");
  std::uint64_t hash_a = detail::load(n.hash);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    using detail::atomic;
    using detail::store;
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      const RemoteRef& r = i % 2 == 0 ? b : a;
      atomic(n.seq).fetch_add(1);
      store(n.index, index_of(r));
      store(n.gen, gen_of(r));
      store(n.hash, i % 2 == 0 ? hash_a + 1 : hash_a);
      store(n.name[0], static_cast<std::uint64_t>(i % 2 == 0 ? 'b' : 'a'));
      atomic(n.seq).fetch_add(1);
    }
  });
  std::uint64_t wrong = 0;
  std::uint64_t lookups = 0;
  auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 1000; ++i, ++lookups) {
      if (auto r = s.lookup("a"); r && *r != a) ++wrong;
    }
  }
  stop.store(true);
  writer.join();
  EXPECT_EQ(wrong, 0U) << "of " << lookups << " lookups of 'a' returned the object the slot held for 'b'";
}

TEST(Races, a_fetch_asleep_on_a_ref_whose_entry_is_erased_and_reused_fails_with_not_found) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  for (int round = 0; round < 5; ++round) {
    RemoteRef r = s.make_ref();
    std::optional<Errc> code;
    auto start = std::chrono::steady_clock::now();
    std::thread waiter([&] {
      try {
        s.fetch(r, 3s);
      } catch (const Error& e) {
        code = e.code();
      }
    });
    while (s.objects().at(0).waiters == 0) std::this_thread::yield();
    s.erase(r);
    RemoteRef next = s.make_ref();  // the same table entry, its next life
    ASSERT_EQ(next.id() & 0xffffffffU, r.id() & 0xffffffffU);
    waiter.join();
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, Errc::NotFound) << "round " << round;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "the waiter slept on the entry's next object";
    s.erase(next);
  }
}

}  // namespace
}  // namespace sealstore
