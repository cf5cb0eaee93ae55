// Erasing. An unpinned sealed object with no names is erased without the
// lock: its head word goes Sealed -> ErasePending -> Reserved by this
// process, and its entry and extent join this process's cache. Whoever
// drops the last pin of an ErasePending object frees it the same way. A
// compare-and-swap on the head word decides every race: one eraser, one
// freer. Named objects, objects with extents of no size class, unfilled
// refs and failed ones take the lock.
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>

#include "sealstore/error.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

void Session::erase(const RemoteRef& ref) {
  check_writable();
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  Entry& e = entry(index);
  for (;;) {
    std::uint64_t w = load(e.word);
    if (word_gen(w) != gen || !word_valid(w)) {
      if (!word_valid(w)) corrupt(fmt::format("{} has an invalid head word {:#x}", ref.to_string(), w));
      throw_not_found(ref, w);
    }
    switch (word_state(w)) {
      case EntryState::Writing:
        throw Error(Errc::NotSealed, fmt::format("cannot erase {}: worker {} (pid {}) is still writing it",
                                                 ref.to_string(), field(e.creator_id), field(e.creator_pid)));
      case EntryState::Unfilled:
      case EntryState::Abandoned:
      case EntryState::Spilled: {
        Lock lock(*this);
        if (load(e.word) != w) continue;
        if (field(e.names) != 0) unbind_entry_locked(index, gen);
        free_entry_locked(index, w);
        return;
      }
      case EntryState::Restoring: {
        // Its restorer pins it while it fills the extent: the free waits
        // for its unpin (or its reap).
        Lock lock(*this);
        if (!atomic(e.word).compare_exchange_strong(w, make_word(EntryState::ErasePending, kNoOwner, gen))) continue;
        uncount_spilled_locked(field(e.size));
        if (field(e.names) != 0) unbind_entry_locked(index, gen);
        if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
        return;
      }
      case EntryState::Sealed: {
        // seq_cst, then read the pins (and names): pairs with pin()'s bit
        // then word, and with bind()'s count then word.
        if (!atomic(e.word).compare_exchange_strong(w, make_word(EntryState::ErasePending, kNoOwner, gen))) continue;
        if (load(e.names) != 0) {
          Lock lock(*this);
          // The last unpin may have freed it meanwhile, and the entry may
          // hold another object now, with names of its own.
          std::uint64_t pending = make_word(EntryState::ErasePending, kNoOwner, gen);
          if (load(e.word) != pending) return;
          unbind_entry_locked(index, gen);
          if (!pinned_anywhere(index)) free_entry_locked(index, pending);
          return;
        }
        if (!pinned_anywhere(index)) finalize(index, gen);  // else the last unpin does
        return;
      }
      default: throw_not_found(ref, w);
    }
  }
}

bool Session::contains(const RemoteRef& ref) const {
  if (ref.is_null() || ref.segment_tag() != geo().segment_tag) return false;
  auto index = static_cast<std::uint32_t>(ref.id() & 0xffffffffU);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  if (index >= geo().max_objects) return false;
  std::uint64_t w = load(entry(index).word);
  if (word_gen(w) != gen || !word_valid(w)) return false;
  EntryState st = word_state(w);
  return st == EntryState::Unfilled || st == EntryState::Writing || is_sealed(st) || st == EntryState::Abandoned;
}

void Session::finalize(std::uint32_t index, std::uint32_t gen) noexcept {
  try {
    Entry& e = entry(index);
    std::uint64_t extent = field(e.extent);
    std::uint64_t offset = field(e.offset);
    auto c = exact_class(extent);
    // (One with a spill file goes under the lock, which removes the file.)
    if (slot_ != kNoSlot && usable() && c && field(e.names) == 0 && (field(e.flags) & kSpillFile) == 0 &&
        offset % kDataAlign == 0 && offset <= geo().capacity && extent <= geo().capacity - offset) {
      std::uint64_t want = make_word(EntryState::ErasePending, kNoOwner, gen);
      std::uint32_t g = next_gen(gen);
      if (!atomic(e.word).compare_exchange_strong(want, make_word(EntryState::Reserved, slot_, g))) return;
      ThreadCache& tc = caches_->mine();
      add_reserved(tc, 1, static_cast<std::int64_t>(extent));
      auto& bin = tc.bins[*c];
      bin.push_back({index, g, offset, *c});
      if (bin.size() > 2 * std::size_t{batch(*c)}) spill(tc, *c);
      if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
      return;
    }
    finalize_locked(index, gen);
  } catch (...) {  // NOLINT(bugprone-empty-catch): left ErasePending; recover() frees it
  }
}

void Session::finalize_locked(std::uint32_t index, std::uint32_t gen) {
  std::uint64_t pending = make_word(EntryState::ErasePending, kNoOwner, gen);
  Lock lock(*this);
  Entry& e = entry(index);
  if (load(e.word) != pending || pinned_anywhere(index)) return;
  if (field(e.names) != 0) unbind_entry_locked(index, gen);
  free_entry_locked(index, pending);
}

// Frees the entry if its head word is still `expected`: its extent goes
// back to the allocator, its spill file (if any) away, and it to the free
// stack.
bool Session::free_entry_locked(std::uint32_t index, std::uint64_t expected) {
  Entry& e = entry(index);
  if (!atomic(e.word).compare_exchange_strong(expected, make_word(EntryState::Free, kNoOwner, word_gen(expected)))) {
    return false;
  }
  std::uint32_t flags = field(e.flags);
  if (spills_ && (flags & kSpillFile) != 0) {
    if (word_state(expected) == EntryState::Spilled) {
      uncount_spilled_locked(field(e.size));
    }
    ::unlink(spill_path(index, word_gen(expected)).c_str());
    store(e.flags, flags & ~(kSpillFile | kSpillValid), std::memory_order_relaxed);
  }
  release_extent_locked(e);
  ExtentAllocator alloc = allocator();
  alloc.push_entry(index);
  publish_alloc_stats_locked();
  if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
  return true;
}

// Gives an entry's extent back to the allocator. One that does not match
// the allocator's books (the table was changed behind our back) is not
// released: the books are marked for rebuilding from the table instead.
void Session::release_extent_locked(Entry& e, bool keep_size) noexcept {
  std::uint64_t bytes = field(e.extent);
  std::uint64_t offset = field(e.offset);
  store(e.extent, std::uint64_t{0}, std::memory_order_relaxed);
  if (!keep_size) store(e.size, std::uint64_t{0}, std::memory_order_relaxed);
  if (bytes == 0) return;
  try {
    if (offset % kDataAlign != 0 || bytes % kDataAlign != 0 || offset > geo().capacity ||
        bytes > geo().capacity - offset) {
      throw Error(Errc::Corrupt, "an extent outside the data region");
    }
    allocator().release({offset, bytes, field(e.block)});
  } catch (...) {
    store(header().repair_pending, 1U);
  }
}

}  // namespace sealstore::detail
