// Cleaning up after processes that died, and repairing what a process that
// died holding the lock (or a peer scribbling over the segment) left half
// done. The object table is the one truth; everything else is rebuilt from
// it. Every step here runs under the lock and can be cut short and redone.
#include <unistd.h>

#include <fmt/format.h>
#include <bit>
#include <vector>

#include "sealstore/error.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

std::size_t Session::recover() {
  check_writable();
  Lock lock(*this);
  return lock.reaped() + reap_dead_locked(true);
}

// thorough: ask /proc too (a forked child may hold a dead process's lock
// byte); otherwise trust a held lock byte, which costs one system call.
std::size_t Session::reap_dead_locked(bool thorough) {
  std::size_t reaped = 0;
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    if (s == slot_ || static_cast<SlotState>(load(slot(s).state)) != SlotState::Live) continue;
    if (thorough ? !slot_alive(s) : !slot_lock_held(s)) {
      reap_slot_locked(s, true);
      ++reaped;
    }
  }
  return reaped;
}

// Idempotent: a reap cut short by our own death is simply redone.
void Session::reap_slot_locked(std::uint32_t s, bool died) {
  Header& h = header();
  // Its cached entries and half-written objects: found by scanning the
  // table, unless it left cleanly with none (its counters say so).
  std::uint64_t reserved = 0;  // unsigned: wraps, never overflows, whatever a peer wrote
  for (std::uint32_t l = 0; l < kStatLines; ++l) {
    reserved += load(stats_line(s, l).reserved);
  }
  reserved = reserved_entries(reserved);
  if (died || reserved != 0) {
    std::uint64_t bit = std::uint64_t{1} << (s % 64);
    for (std::uint32_t i = 0; i < geo().max_objects; ++i) {
      std::uint64_t& pinned = pins(i).bits[s / 64];  // NOLINT
      if ((load(pinned, std::memory_order_relaxed) & bit) != 0) atomic(pinned).fetch_and(~bit);
      Entry& e = entry(i);
      std::uint64_t w = load(e.word);
      if (!word_valid(w) || word_owner(w) != s) continue;
      if (word_state(w) == EntryState::Reserved) {
        free_entry_locked(i, w);
      } else if (word_state(w) == EntryState::Restoring) {
        undo_restore_locked(i, w);  // its file still has it
      } else if (word_state(w) == EntryState::Writing) {
        // Rolled back: the data was never published, so nobody reads it;
        // waiters wake with WorkerFailed.
        if (!atomic(e.word).compare_exchange_strong(w, make_word(EntryState::Abandoned, kNoOwner, word_gen(w)))) {
          continue;
        }
        release_extent_locked(e);
        if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
      }
    }
  }
  for (std::uint32_t l = 0; l < kStatLines; ++l) {
    SlotStats& st = stats_line(s, l);
    store(st.reserved, std::uint64_t{0});
  }
  // A process leaving still holds the lock (its claim on it stays until it
  // unlocks); a dead one's claim goes with it.
  if (s != slot_) store(slot(s).lock_seq, 0U);
  store(slot(s).publishing, 0U);
  // Its sleepers on the event bell are gone.
  std::uint32_t asleep = load(slot(s).event_waiting);
  store(slot(s).event_waiting, 0U);
  if (asleep != 0) {
    std::uint32_t all = load(h.event_waiters);
    while (!atomic(h.event_waiters).compare_exchange_weak(all, all - std::min(all, asleep))) {
    }
  }
  store(slot(s).state, static_cast<std::uint32_t>(SlotState::Free));
  atomic(h.live_slots[s / 64]).fetch_and(~(std::uint64_t{1} << (s % 64)));
  atomic(h.subscribed[s / 64]).fetch_and(~(std::uint64_t{1} << (s % 64)));  // its subscriptions go with it
  if (died) {
    // Complete every deferred erase no live process pins any more. Not only
    // those this slot pinned: a process killed in unpin() after clearing its
    // pin bit, before freeing, left one with no pin at all.
    free_unpinned_erased_locked();
    atomic(h.recoveries).fetch_add(1);
  }
  publish_alloc_stats_locked();
}

void Session::free_unpinned_erased_locked() {
  for (std::uint32_t i = 0; i < geo().max_objects; ++i) {
    std::uint64_t w = load(entry(i).word);
    if (word_valid(w) && word_state(w) == EntryState::ErasePending && !pinned_anywhere(i)) {
      if (field(entry(i).names) != 0) unbind_entry_locked(i, word_gen(w));
      free_entry_locked(i, w);
    }
  }
}

// Out of space or entries: every entry any process holds Reserved in its
// cache goes back. Their owners find out when they try to use them.
std::size_t Session::steal_reserved_locked() {
  std::size_t taken = 0;
  for (std::uint32_t i = 0; i < geo().max_objects; ++i) {
    Entry& e = entry(i);
    std::uint64_t w = load(e.word);
    if (!word_valid(w) || word_state(w) != EntryState::Reserved) continue;
    std::uint32_t owner = word_owner(w);
    std::uint64_t bytes = field(e.extent);
    if (!free_entry_locked(i, w)) continue;  // lost a race with its owner
    if (owner < kMaxProcesses) {
      SlotStats& st = stats_line(owner, 0);
      atomic(st.reserved).fetch_add(reserved_word(-1, -static_cast<std::int64_t>(bytes)));
    }
    ++taken;
  }
  return taken;
}

void Session::publish_alloc_stats_locked() noexcept {
  try {
    ExtentAllocator alloc = allocator();
    Header& h = header();
    store(h.free_entries, alloc.free_entries(), std::memory_order_relaxed);
    store(h.free_bytes, alloc.free_bytes(), std::memory_order_relaxed);
    store(h.free_extents, alloc.free_blocks(), std::memory_order_relaxed);
    store(h.largest_free, alloc.largest_free(), std::memory_order_relaxed);
  } catch (...) {
    store(header().repair_pending, 1U);
  }
}

// After a lock holder died (or damage was found): rebuilds everything
// derived from the object table, rolls back what a reap cut short left,
// and reaps the dead. Processes working without the lock meanwhile only
// move entries between states that hold the same extent, so the rebuild
// sees a consistent table whatever they do.
std::size_t Session::repair_locked() {
  Header& h = header();
  // A spill's commit cut short (Spilled, its extent not yet given back):
  // undone if someone pins the object (and may read it now), else
  // finished. Before the rebuild, which counts a Spilled entry's extent free.
  for (std::uint32_t i = 0; i < geo().max_objects; ++i) {
    Entry& e = entry(i);
    std::uint64_t w = load(e.word);
    if (!word_valid(w) || word_state(w) != EntryState::Spilled || field(e.extent) == 0) continue;
    if (pinned_anywhere(i)) {
      store(e.word, sealed_word(word_gen(w), field(e.restores)));
    } else {
      store(e.extent, std::uint64_t{0}, std::memory_order_relaxed);
    }
  }
  ExtentAllocator alloc = allocator();
  alloc.rebuild(&entry(0));
  // The live-slot mask, from the slots.
  for (std::uint32_t w = 0; w < kMaxProcesses / 64; ++w) {
    std::uint64_t live = 0;
    for (std::uint32_t b = 0; b < 64; ++b) {
      if (static_cast<SlotState>(load(slot(w * 64 + b).state)) == SlotState::Live) live |= std::uint64_t{1} << b;
    }
    store(h.live_slots[w], live);             // NOLINT
    atomic(h.subscribed[w]).fetch_and(live);  // NOLINT
  }
  // Names: a slot caught mid-write (odd seq) is dropped, the rest counted.
  std::vector<std::uint32_t> names(geo().max_objects, 0);
  std::uint32_t bound = 0;
  for (std::uint32_t i = 0; i < geo().name_slots; ++i) {
    NameSlot& n = name_slot(i);
    if ((load(n.seq) & 1U) != 0) {
      store(n.state, std::uint32_t{2});
      atomic(n.seq).fetch_add(1);
    }
    if (load(n.state) != 1) continue;
    std::uint32_t index = load(n.index);
    if (index >= geo().max_objects) {
      write_name_slot_locked(n, 2, 0, 0, 0, {});  // names nothing we have
      continue;
    }
    ++bound;
    if (word_gen(load(entry(index).word)) == load(n.gen)) names[index] += 1;
  }
  store(h.names_bound, bound);
  // Writes and reservations of processes with no slot any more (a reap cut
  // short) roll back as the reap would have.
  for (std::uint32_t i = 0; i < geo().max_objects; ++i) {
    Entry& e = entry(i);
    std::uint64_t w = load(e.word);
    if (!word_valid(w)) continue;  // damaged: left alone, holding nothing
    store(e.names, names[i]);
    EntryState st = word_state(w);
    std::uint32_t owner = word_owner(w);
    if (st == EntryState::Free && spills_ && (field(e.flags) & kSpillFile) != 0) {
      // Freed by a holder killed before it deleted the object's spill file
      // (a free word keeps the generation the file is named by).
      ::unlink(spill_path(i, word_gen(w)).c_str());
      store(e.flags, 0U, std::memory_order_relaxed);
    }
    bool orphan = (st == EntryState::Writing || st == EntryState::Reserved || st == EntryState::Restoring) &&
                  (owner >= kMaxProcesses || static_cast<SlotState>(load(slot(owner).state)) != SlotState::Live);
    if (orphan && st == EntryState::Reserved) {
      free_entry_locked(i, w);
    } else if (orphan && st == EntryState::Restoring) {
      undo_restore_locked(i, w);
    } else if (orphan) {
      if (atomic(e.word).compare_exchange_strong(w, make_word(EntryState::Abandoned, kNoOwner, word_gen(w)))) {
        release_extent_locked(e);
        if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
      }
    } else if (st == EntryState::ErasePending && !pinned_anywhere(i)) {
      if (names[i] != 0) unbind_entry_locked(i, word_gen(w));
      free_entry_locked(i, w);
    }
  }
  recount_spilled_locked();
  publish_alloc_stats_locked();
  return reap_dead_locked(true);
}

}  // namespace sealstore::detail
