#include "sync/segment_lock.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>

#include "segment/layout.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

constexpr std::uint32_t kHolderMask = 0xffU;
constexpr std::uint32_t kWaiters = 1U << 8U;
constexpr std::uint32_t kCountShift = 9;

constexpr std::uint32_t holder_of(std::uint32_t w) { return w & kHolderMask; }  // slot + 1
constexpr std::uint32_t count_of(std::uint32_t w) { return w >> kCountShift; }
constexpr std::uint32_t make_lock_word(std::uint32_t holder_plus_one, std::uint32_t count, bool waiters) {
  return (holder_plus_one & kHolderMask) | (waiters ? kWaiters : 0U) | (count << kCountShift);
}
// The next acquisition count: never 0, which in a slot means "not holding".
constexpr std::uint32_t next_count(std::uint32_t w) {
  std::uint32_t c = (count_of(w) + 1) & ((1U << (32 - kCountShift)) - 1);
  return c == 0 ? 1 : c;
}

// Spinning covers a holder busy on the other core for a few microseconds;
// beyond that, waking a sleeper (about 20 us on this kind of VM) is cheaper
// than burning the core.
constexpr int kSpins = 200;
// How long a sleeper waits before it looks at the holder, doubling each time.
constexpr std::chrono::microseconds kFirstCheck{500};
constexpr std::chrono::milliseconds kLongestCheck{50};

// The claim is made before the word is taken: whoever finds us holding the
// lock finds us claiming it too, however long we are stopped after.
bool try_take(std::uint32_t& word, std::uint32_t seen, std::uint32_t me, bool waiters, std::uint32_t& count,
              LockPeers& peers) {
  count = next_count(seen);
  peers.set_claim(count);
  return atomic(word).compare_exchange_strong(seen, make_lock_word(me + 1, count, waiters), std::memory_order_acq_rel,
                                              std::memory_order_relaxed);
}

}  // namespace

LockResult lock_segment(std::uint32_t& word, std::uint32_t me, LockPeers& peers) {
  std::uint32_t count = 0;
  for (int i = 0; i < kSpins; ++i) {
    std::uint32_t w = load(word, std::memory_order_relaxed);
    if (holder_of(w) == 0 && try_take(word, w, me, (w & kWaiters) != 0, count, peers)) return {};
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    sched_yield();
#endif
  }
  auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(kFirstCheck);
  std::uint32_t suspect = 0;  // a word seen unchanged, held, across a whole slice, by a slot not claiming it
  for (;;) {
    std::uint32_t w = load(word, std::memory_order_relaxed);
    if (holder_of(w) == 0) {
      // Taken with the waiters bit set: others may still sleep, and our
      // release must wake the next of them.
      if (try_take(word, w, me, true, count, peers)) return {};
      continue;
    }
    if ((w & kWaiters) == 0 && !atomic(word).compare_exchange_strong(w, w | kWaiters, std::memory_order_relaxed)) {
      continue;
    }
    w |= kWaiters;
    bool woken = futex_wait(&word, w, slice);
    if (woken) continue;
    // A whole slice with no release: is the holder there at all?
    std::uint32_t now = load(word, std::memory_order_relaxed);
    if (now != w) continue;
    std::uint32_t holder = holder_of(w) - 1;
    // Our own slot: no other thread of ours holds it (the caller locks
    // within the process first), so the word was written by someone else.
    bool dead = holder >= kMaxProcesses || holder == me || !peers.alive(holder);
    // A live holder that does not claim this acquisition (no locker ever
    // takes count 0) across two whole slices: the word was written by
    // someone other than a locker. (A holder releasing has dropped its
    // claim a moment before its word: one slice is not enough.)
    bool unclaimed = !dead && (count_of(w) == 0 || peers.claim(holder) != count_of(w));
    bool bogus = unclaimed && suspect == w;
    suspect = unclaimed ? w : 0;
    if (dead || bogus) {
      if (try_take(word, w, me, true, count, peers)) return {.taken_over = true};
      continue;
    }
    slice = std::min<std::chrono::nanoseconds>(slice * 2, kLongestCheck);
  }
}

void unlock_segment(std::uint32_t& word, std::uint32_t me, LockPeers& peers) noexcept {
  peers.set_claim(0);
  std::uint32_t w = load(word, std::memory_order_relaxed);
  for (;;) {
    // Released only while it is still ours: a holder judged gone (stopped
    // for longer than its claim could be trusted) must not release the
    // lock of whoever took it over.
    if (holder_of(w) != me + 1) return;
    std::uint32_t released = make_lock_word(0, count_of(w), false);
    if (atomic(word).compare_exchange_weak(w, released, std::memory_order_release, std::memory_order_relaxed)) break;
  }
  if ((w & kWaiters) != 0) futex_wake_one(&word);
}

}  // namespace sealstore::detail
