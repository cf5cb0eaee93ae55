// Reading: fetch pins a sealed object (no lock, no system call unless it
// has to wait), fetch_many does it for a batch with the table entries and
// pins brought into the cache ahead of use, and begin_read (with
// Store::still_valid) lets a small object be copied out without a pin.
//
// A pin is this process's bit in the entry's PinMask, counted per entry in
// process memory so that only the first and last View of an object touch
// the bit. Pin and erase meet Dekker-style:
// the pinner sets its bit and then reads the head word, the eraser stores
// ErasePending and then reads every live process's bit; at least one sees
// the other.
#include <sched.h>

#include <fmt/format.h>
#include <atomic>
#include <bit>

#include "sealstore/error.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

constexpr std::uint32_t kPinBusy = 1U << 31U;
// Waiters re-check the writer's liveness this often while it writes.
constexpr std::chrono::milliseconds kLivenessSlice{100};
// How many refs ahead fetch_many brings their table entries and pins in.
constexpr std::size_t kFetchAhead = 16;

// An unpinned read is a seqlock read: ThreadSanitizer cannot see why it is
// safe (nor model the fence it needs), so under it every read pins.
#if defined(__SANITIZE_THREAD__)
#define SEALSTORE_UNPINNED_READS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SEALSTORE_UNPINNED_READS 0
#endif
#endif
#ifndef SEALSTORE_UNPINNED_READS
#define SEALSTORE_UNPINNED_READS 1
#endif
constexpr bool kUnpinnedReads = SEALSTORE_UNPINNED_READS != 0;

}  // namespace

bool Session::fetch(const RemoteRef& ref, Deadline deadline, bool wait, std::chrono::nanoseconds spin, Pinned& out) {
  check_writable();
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  Entry& e = entry(index);
  // The pin's two words are asked for now, so that their misses overlap
  // the entry's instead of following it.
  __builtin_prefetch(&local_pins_[index], 1, 3);  // NOLINT
  __builtin_prefetch(&pins(index), 1, 3);
  for (;;) {
    std::uint64_t w = load(e.word, std::memory_order_acquire);
    if (word_gen(w) != gen || !word_valid(w)) throw_gone(ref, e, w);
    switch (word_state(w)) {
      case EntryState::Sealed:
        pin(index);
        // Pinned: from here the object cannot be freed (nor spilled),
        // unless an erase (or a spill) got in first, which the re-read shows.
        if (load(e.word) == w) {
          if (spills_ && field(e.touched) == 0) store(e.touched, std::uint8_t{1}, std::memory_order_relaxed);
          pinned_view(ref, index, e, out);
          return true;
        }
        unpin(index, gen);
        continue;
      case EntryState::Spilled:
        if (!spills_) corrupt(fmt::format("{} is marked spilled, but the segment does not spill", ref.to_string()));
        if (restore(ref, index, w)) {  // restored, and pinned for us
          pinned_view(ref, index, e, out);
          return true;
        }
        continue;
      case EntryState::Restoring:
      case EntryState::Unfilled:
      case EntryState::Writing: {
        if (!wait) return false;
        bool settled = spin > std::chrono::nanoseconds::zero() && spin_until_settled(e, spin, deadline);
        spin = {};  // one bounded spin per fetch; after it, sleep
        if (!settled) wait_for_change(e, w, ref, deadline);
        continue;
      }
      default: throw_gone(ref, e, w);
    }
  }
}

// The extent and type are read once, here, under the pin: the View keeps
// them, and a peer that rewrites the entry later cannot widen it.
void Session::pinned_view(const RemoteRef& ref, std::uint32_t index, Entry& e, Pinned& out) {
  std::uint64_t offset = field(e.offset);
  std::uint64_t size = field(e.size);
  if (offset > geo().capacity || size > geo().capacity - offset) {
    unpin(index, static_cast<std::uint32_t>(ref.id() >> 32U));
    throw Error(Errc::Corrupt,
                fmt::format("{} points outside the data region of segment '{}'", ref.to_string(), name_));
  }
  out.index = index;
  out.bytes = {map_.data_ro() + offset, size};
  load_type_words(e, out.type);
}

void Session::fetch_many(std::span<const RemoteRef> refs, Deadline deadline, std::chrono::nanoseconds spin,
                         PinSlot pin_slot, void* ctx) {
  check_writable();
  std::size_t k = 0;
  std::size_t ahead = 0;  // refs prefetched so far: through ref k + kFetchAhead
  try {
    for (; k < refs.size(); ++k) {
      // Written out here: GCC 12 compiled a helper lambda that did this
      // into nothing (no prefetch was left in the library), which the test
      // build.fetch_many_prefetches now checks.
      for (; ahead < std::min(k + kFetchAhead + 1, refs.size()); ++ahead) {
        auto index = static_cast<std::uint32_t>(refs[ahead].id() & 0xffffffffU);
        if (index < geo().max_objects) {
          __builtin_prefetch(&entry(index), 0, 3);
          __builtin_prefetch(&local_pins_[index], 1, 3);  // NOLINT
          __builtin_prefetch(&pins(index), 1, 3);
        }
      }
      fetch(refs[k], deadline, true, spin, pin_slot(ctx, k));
    }
  } catch (...) {
    // Refs before k are pinned; ref k, which failed, pinned nothing.
    for (std::size_t i = 0; i < k; ++i) unpin(pin_slot(ctx, i).index, static_cast<std::uint32_t>(refs[i].id() >> 32U));
    throw;
  }
}

bool Session::spin_until_settled(const Entry& e, std::chrono::nanoseconds spin, Deadline deadline) {
  auto until = std::chrono::steady_clock::now() + spin;
  if (deadline && *deadline < until) until = *deadline;
  std::uint64_t start = load(e.word, std::memory_order_acquire);
  for (unsigned i = 1;; ++i) {
    std::uint64_t w = load(e.word, std::memory_order_acquire);
    if (w != start) return true;
    // Reading the clock costs more than a poll: look at it every 64 polls.
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

void Session::wait_for_change(Entry& e, std::uint64_t seen, const RemoteRef& ref, Deadline deadline) {
  using clock = std::chrono::steady_clock;
  atomic(e.waiters).fetch_add(1);
  struct Leave {
    Entry& e;
    ~Leave() { atomic(e.waiters).fetch_sub(1); }
  } leave{e};
  // Registered as a waiter before this re-read: a sealer that stored the new
  // word before we registered is seen here; one after, sees us and wakes us.
  // The futex word holds generation bits, so an entry erased and reused
  // while we sleep wakes us too.
  while (load(e.word) == seen) {
    auto slice = std::chrono::nanoseconds(kLivenessSlice);
    if (deadline) {
      auto now = clock::now();
      if (now >= *deadline) {
        throw Error(Errc::Timeout, fmt::format("fetch of {} from segment '{}' timed out: it is still {}",
                                               ref.to_string(), name_, state_name(word_state(seen))));
      }
      slice = std::min(slice, std::chrono::nanoseconds(*deadline - now));
    }
    bool woken = futex_wait(futex_word(e), word_futex(seen), slice);
    if (!woken && (word_state(seen) == EntryState::Writing || word_state(seen) == EntryState::Restoring)) {
      std::uint32_t owner = word_owner(seen);
      if (owner >= kMaxProcesses || static_cast<SlotState>(load(slot(owner).state)) != SlotState::Live) {
        store(header().repair_pending, 1U);  // its writer has no slot: the repair rolls it back
        recover();
      } else if (!slot_alive(owner)) {
        recover();
      }
    }
  }
}

void Session::pin(std::uint32_t index) noexcept {
  std::atomic<std::uint32_t>& w = local_pins_[index];  // NOLINT
  std::uint64_t& word = pins(index).bits[slot_ / 64];  // NOLINT
  std::uint64_t bit = std::uint64_t{1} << (slot_ % 64);
  std::uint32_t c = w.load(std::memory_order_relaxed);
  for (unsigned spins = 0;; ++spins) {
    if ((c & kPinBusy) != 0) {  // another thread of ours is mid-transition
      if (spins > 64) sched_yield();
      c = w.load(std::memory_order_relaxed);
      continue;
    }
    if (c > 0) {
      // seq_cst: a spiller stores Spilled and then reads our count.
      if (w.compare_exchange_weak(c, c + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) return;
      continue;
    }
    if (w.compare_exchange_weak(c, kPinBusy, std::memory_order_acquire, std::memory_order_relaxed)) {
      atomic(word).fetch_or(bit);  // seq_cst: pairs with erase's word store then pin reads
      w.store(1, std::memory_order_release);
      return;
    }
  }
}

void Session::unpin(std::uint32_t index, [[maybe_unused]] std::uint32_t gen) noexcept {
  std::atomic<std::uint32_t>& w = local_pins_[index];  // NOLINT
  std::uint32_t c = w.load(std::memory_order_relaxed);
  for (unsigned spins = 0;; ++spins) {
    if ((c & kPinBusy) != 0) {
      if (spins > 64) sched_yield();
      c = w.load(std::memory_order_relaxed);
      continue;
    }
    if (c > 1) {
      if (w.compare_exchange_weak(c, c - 1, std::memory_order_release, std::memory_order_relaxed)) return;
      continue;
    }
    if (w.compare_exchange_weak(c, kPinBusy, std::memory_order_acquire, std::memory_order_relaxed)) {
      if (!usable()) {  // a View inherited across fork: the pin is the parent's
        w.store(0, std::memory_order_release);
        return;
      }
      std::uint64_t& word = pins(index).bits[slot_ / 64];  // NOLINT
      atomic(word).fetch_and(~(std::uint64_t{1} << (slot_ % 64)));
      // Erased and waiting for its last pin: ours, whichever generation it
      // is now (a pin taken just as the entry moved on to another object,
      // then dropped, may be that object's last).
      std::uint64_t now = load(entry(index).word);
      bool pending = word_state(now) == EntryState::ErasePending && word_valid(now);
      w.store(0, std::memory_order_release);
      if (pending && !pinned_anywhere(index)) finalize(index, word_gen(now));
      return;
    }
  }
}

bool Session::pinned_by_others(std::uint32_t index) const noexcept {
  // Our own bit stands for every View this process holds: it is someone
  // else's pin too if our count says more than the one we hold.
  if (local_pins_[index].load() > 1) return true;  // NOLINT
  const PinMask& m = pins(index);
  for (std::uint32_t w = 0; w < kMaxProcesses / 64; ++w) {
    std::uint64_t bits = load(m.bits[w]) & load(header().live_slots[w]);  // NOLINT
    if (w == slot_ / 64) bits &= ~(std::uint64_t{1} << (slot_ % 64));
    if (bits != 0) return true;
  }
  return false;
}

// Only live processes' bits count: a slot reaped or never attached pins
// nothing, whatever its bit says.
bool Session::pinned_anywhere(std::uint32_t index) const noexcept {
  const PinMask& m = pins(index);
  for (std::uint32_t w = 0; w < kMaxProcesses / 64; ++w) {
    if ((load(m.bits[w]) & load(header().live_slots[w])) != 0) return true;  // NOLINT
  }
  return false;
}

bool Session::begin_read(const RemoteRef& ref, std::span<const std::byte>& bytes, ValueType& type,
                         const std::uint64_t*& word_at, std::uint64_t& word) const {
  if (!kUnpinnedReads || slot_ == kNoSlot || !usable() || ref.segment_tag() != geo().segment_tag) return false;
  auto index = static_cast<std::uint32_t>(ref.id() & 0xffffffffU);
  if (index >= geo().max_objects) return false;
  const Entry& e = entry(index);
  word_at = &e.word;
  word = load(e.word, std::memory_order_acquire);
  // Any Sealed word of this generation: its owner bits change whenever the
  // bytes move (a spill and restore), so still_valid catches that too.
  if (word_state(word) != EntryState::Sealed || word_gen(word) != static_cast<std::uint32_t>(ref.id() >> 32U) ||
      !word_valid(word)) {
    return false;
  }
  std::uint64_t offset = field(e.offset);
  std::uint64_t size = field(e.size);
  if (size > kUnpinnedReadMax || offset > geo().capacity || size > geo().capacity - offset) return false;
  TypeWords w;
  load_type_words(e, w);
  decode_type(w, type);
  bytes = {map_.data_ro() + offset, size};
  return type_fits(type, size);
}

void Session::throw_misfit(const RemoteRef& ref, const ValueType& t, std::uint64_t size) const {
  throw Error(Errc::Corrupt, fmt::format("{} in segment '{}' says it holds {} in {} bytes, which cannot be",
                                         ref.to_string(), name_, t.describe(), size));
}

}  // namespace sealstore::detail
