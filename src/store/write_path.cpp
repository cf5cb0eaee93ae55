// Making refs and objects. A small object (up to kSmallMax bytes) is written
// into an entry and extent this process already holds Reserved in its
// cache: one compare-and-swap claims it, another seals it, and no lock is
// taken. Larger objects, filling a ref made by make_ref, refilling and
// draining the caches, and failing a ref take the segment lock.
#include <fmt/format.h>
#include <algorithm>
#include <cstring>
#include <ctime>

#include "registry/process.hpp"
#include "sealstore/error.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

// Time stamps for memstat's ages (and its sort by age): the coarse clock
// (a fifth of the precise one's cost, a few milliseconds' resolution),
// kept increasing within a thread so one thread's objects keep their order.
std::uint64_t coarse_now_ns() {
  thread_local std::uint64_t last = 0;
  timespec ts{};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  std::uint64_t now = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
  last = now > last ? now : last + 1;
  return last;
}

void check_type(std::uint64_t size, const ValueType& type) {
  if (type.kind > ValueKind::NdArray || type.elem > ElemType::Trivial) {
    throw Error(Errc::InvalidArgument, fmt::format("value kind {} / element type {} is not one sealstore knows",
                                                   static_cast<int>(type.kind), static_cast<int>(type.elem)));
  }
  if (type.kind == ValueKind::NdArray) {
    if (type.rank == 0 || type.rank > kMaxRank) {
      throw Error(Errc::InvalidArgument, fmt::format("an n-d array needs rank 1 to {}, not {}", kMaxRank, type.rank));
    }
    std::uint64_t n = type.elem_size;
    for (std::uint32_t d = 0; d < type.rank; ++d) {
      if (type.shape[d] != 0 && n > UINT64_MAX / type.shape[d]) {
        throw Error(Errc::InvalidArgument, fmt::format("the shape {} overflows 64 bits", type.describe()));
      }
      n *= type.shape[d];
    }
    if (n != size) {
      throw Error(Errc::InvalidArgument, fmt::format("{} takes {} bytes, not the {} given", type.describe(), n, size));
    }
  } else if (type.kind != ValueKind::Bytes && type.kind != ValueKind::String &&
             (type.elem_size == 0 || size % type.elem_size != 0 ||
              (type.kind == ValueKind::Scalar && size != type.elem_size))) {
    throw Error(Errc::InvalidArgument, fmt::format("{} bytes is not a whole number of {}-byte elements for {}", size,
                                                   type.elem_size, type.describe()));
  }
}

}  // namespace

// Everything but the head word and the extent: what this writer stores.
void Session::fill_entry(Entry& e, std::uint64_t size, const ValueType& type) noexcept {
  store(e.size, size, std::memory_order_relaxed);
  store(e.kind, static_cast<std::uint8_t>(type.kind), std::memory_order_relaxed);
  store(e.elem, static_cast<std::uint8_t>(type.elem), std::memory_order_relaxed);
  store(e.rank, static_cast<std::uint8_t>(type.rank), std::memory_order_relaxed);
  store(e.elem_size, type.elem_size, std::memory_order_relaxed);
  store(e.type_hash, type.type_hash, std::memory_order_relaxed);
  if (type.kind == ValueKind::NdArray) {
    for (std::size_t d = 0; d < kMaxRank; ++d) store(e.shape[d], type.shape[d], std::memory_order_relaxed);  // NOLINT
  }
  store(e.creator_id, id_, std::memory_order_relaxed);
  store(e.creator_pid, static_cast<std::int32_t>(pid_), std::memory_order_relaxed);
}

RemoteRef Session::make_ref(WorkerId where) {
  check_writable();
  Lock lock(*this);
  ExtentAllocator alloc = allocator();
  std::uint32_t index = pop_free_entry_locked(alloc);
  Entry& e = entry(index);
  std::uint32_t gen = next_gen(word_gen(load(e.word)));
  store(e.flags, 0U, std::memory_order_relaxed);
  store(e.offset, std::uint64_t{0}, std::memory_order_relaxed);
  store(e.extent, std::uint64_t{0}, std::memory_order_relaxed);
  store(e.size, std::uint64_t{0}, std::memory_order_relaxed);
  store(e.names, 0U, std::memory_order_relaxed);
  store(e.kind, std::uint8_t{0}, std::memory_order_relaxed);
  store(e.rank, std::uint8_t{0}, std::memory_order_relaxed);
  store(e.where, where, std::memory_order_relaxed);
  store(e.whence, id_, std::memory_order_relaxed);
  store(e.maker_pid, static_cast<std::int32_t>(pid_), std::memory_order_relaxed);
  store(e.creator_id, 0U, std::memory_order_relaxed);
  store(e.creator_pid, 0, std::memory_order_relaxed);
  store(e.created_ns, coarse_now_ns(), std::memory_order_relaxed);
  store(e.word, make_word(EntryState::Unfilled, kNoOwner, gen), std::memory_order_release);
  publish_alloc_stats_locked();
  return ref_of(index, gen);
}

Session::Claim Session::begin_write(const RemoteRef* target, std::uint64_t size, const ValueType& type) {
  check_writable();
  check_type(size, type);
  if (size > geo().capacity) {
    throw Error(Errc::OutOfMemory, fmt::format("an object of {} bytes cannot fit in segment '{}' of capacity {} bytes",
                                               size, name_, geo().capacity));
  }
  // (One Claim, returned from every path: filled in place, not copied.)
  Claim claim{};
  if (target == nullptr && size > 0 && size <= kSmallMax && (!spills_ || !above_high_water(kSmallMax)) &&
      begin_write_cached(size, type, claim)) {
    return claim;
  }
  claim = begin_write_slow(target, size, type);
  return claim;
}

Session::Claim Session::begin_write_slow(const RemoteRef* target, std::uint64_t size, const ValueType& type) {
  if (!spills_) return *begin_write_locked(target, size, type, false);
  // Short of room (or above the high watermark): spill, then try again; in
  // the end, take any room there is, whatever the watermark says.
  std::string spill_failed;
  for (int attempt = 0;; ++attempt) {
    try {
      if (auto c = begin_write_locked(target, size, type, attempt < kRoomAttempts)) return *c;
    } catch (const Error& e) {
      if (e.code() != Errc::OutOfMemory || spill_failed.empty()) throw;
      throw Error(Errc::OutOfMemory, fmt::format("{}; spilling failed: {}", e.what(), spill_failed));
    }
    std::string why = make_room(footprint(size));
    if (!why.empty()) spill_failed = why;
  }
}

// The lock-free path: an entry and extent of the size's class from this
// thread's cache (refilled in a batch when empty).
bool Session::begin_write_cached(std::uint64_t size, const ValueType& type, Claim& claim) {
  std::uint32_t c = size_class(size);
  ThreadCache& tc = caches_->mine();
  auto& bin = tc.bins[c];
  for (;;) {
    if (bin.empty() && !refill(tc, c)) return false;
    CachedExtent r = bin.back();
    bin.pop_back();
    Entry& e = entry(r.index);
    std::uint32_t gen = next_gen(r.gen);
    std::uint64_t want = make_word(EntryState::Reserved, slot_, r.gen);
    // Claimed whole, or not at all: taken back by a process short of
    // space (or by a peer's scribbling) since we cached it.
    if (!atomic(e.word).compare_exchange_strong(want, make_word(EntryState::Writing, slot_, gen),
                                                std::memory_order_acquire, std::memory_order_relaxed)) {
      continue;
    }
    std::uint64_t extent = class_bytes(c);
    add_reserved(tc, -1, -static_cast<std::int64_t>(extent));
    store(e.flags, static_cast<std::uint32_t>(kFresh), std::memory_order_relaxed);
    fill_entry(e, size, type);
    store(e.where, id_, std::memory_order_relaxed);
    store(e.whence, id_, std::memory_order_relaxed);
    store(e.maker_pid, static_cast<std::int32_t>(pid_), std::memory_order_relaxed);
    store(e.created_ns, coarse_now_ns(), std::memory_order_relaxed);
    // The record's offset was bounded when it was cached; the entry's own
    // copy is not trusted.
    claim = Claim{r.index, RemoteRef(geo().segment_tag, (std::uint64_t{gen} << 32U) | r.index, id_, id_),
                  std::span<std::byte>(map_.data_rw() + r.offset, size), &tc};
    return true;
  }
}

std::optional<Session::Claim> Session::begin_write_locked(const RemoteRef* target, std::uint64_t size,
                                                          const ValueType& type, bool want_room) {
  std::uint32_t target_index = target != nullptr ? index_of(*target) : 0;
  Lock lock(*this);
  ExtentAllocator alloc = allocator();
  std::uint32_t index = target_index;
  std::uint32_t gen = 0;
  if (target != nullptr) {
    gen = static_cast<std::uint32_t>(target->id() >> 32U);
    std::uint64_t w = load(entry(index).word);
    if (word_gen(w) != gen || !word_valid(w)) throw_gone(*target, entry(index), w);
    EntryState st = word_state(w);
    if (st == EntryState::Writing) {
      throw Error(Errc::AlreadySealed,
                  fmt::format("{} is already being filled by worker {} (pid {})", target->to_string(),
                              field(entry(index).creator_id), field(entry(index).creator_pid)));
    }
    if (st != EntryState::Unfilled) {
      if (is_sealed(st) || st == EntryState::Abandoned) {
        throw Error(Errc::AlreadySealed, fmt::format("{} is already filled ({}); a ref is filled once",
                                                     target->to_string(), state_name(st)));
      }
      throw_not_found(*target, w);
    }
  }
  std::uint64_t bytes = footprint(size);
  ExtentAllocator::Extent x{};
  if (want_room && above_high_water(bytes)) return std::nullopt;
  if (bytes > 0) {
    auto got = alloc.allocate(bytes);
    if (!got && steal_reserved_locked() > 0) got = alloc.allocate(bytes);
    if (!got && want_room) return std::nullopt;
    if (!got) {
      throw Error(Errc::OutOfMemory,
                  fmt::format("an object of {} bytes does not fit in segment '{}': {} of {} bytes free, the largest "
                              "free block is {} bytes{}",
                              size, name_, alloc.free_bytes(), geo().capacity, alloc.largest_free(),
                              spills_ ? fmt::format("; nothing more can be spilled: {}", pinned_report_locked())
                                      : std::string()));
    }
    x = *got;
  }
  if (target == nullptr) {
    try {
      index = pop_free_entry_locked(alloc);
    } catch (...) {
      if (bytes > 0) alloc.release(x);
      throw;
    }
    gen = next_gen(word_gen(load(entry(index).word)));
    Entry& e = entry(index);
    store(e.flags, static_cast<std::uint32_t>(kFresh), std::memory_order_relaxed);
    store(e.names, 0U, std::memory_order_relaxed);
    store(e.where, id_, std::memory_order_relaxed);
    store(e.whence, id_, std::memory_order_relaxed);
    store(e.maker_pid, static_cast<std::int32_t>(pid_), std::memory_order_relaxed);
    store(e.created_ns, coarse_now_ns(), std::memory_order_relaxed);
  } else {
    store(entry(index).flags, 0U, std::memory_order_relaxed);
  }
  Entry& e = entry(index);
  store(e.offset, x.offset, std::memory_order_relaxed);
  store(e.extent, x.bytes, std::memory_order_relaxed);
  store(e.block, x.block, std::memory_order_relaxed);
  fill_entry(e, size, type);
  // Committing the head word last makes the entry (and so the extent) ours
  // even if we die right after: recovery finds it Writing in our slot.
  store(e.word, make_word(EntryState::Writing, slot_, gen), std::memory_order_release);
  publish_alloc_stats_locked();
  return Claim{index, ref_of(index, gen), std::span<std::byte>(map_.data_rw() + x.offset, size)};
}

// A pop from the free-entry stack, or steal cached ones when it is empty.
std::uint32_t Session::pop_free_entry_locked(ExtentAllocator& alloc) {
  for (int attempt = 0;; ++attempt) {
    std::optional<std::uint32_t> got = alloc.pop_entry();
    if (!got && attempt == 0 && steal_reserved_locked() > 0) continue;
    if (!got) {
      throw Error(Errc::OutOfMemory, fmt::format("the object table of segment '{}' is full ({} objects); create it "
                                                 "with a larger max_objects",
                                                 name_, geo().max_objects));
    }
    std::uint64_t w = load(entry(*got).word);
    if (word_state(w) != EntryState::Free || !word_valid(w)) {
      store(header().repair_pending, 1U);  // the stack is derived; the next locker rebuilds it
      corrupt(fmt::format("entry {} on the free stack is {}", *got, state_name(word_state(w))));
    }
    return *got;
  }
}

void Session::seal(std::uint32_t index, std::uint32_t gen, ThreadCache* tc) {
  // A writer inherited across fork is the parent's to seal, not the child's.
  check_writable();
  Entry& e = entry(index);
  std::uint64_t want = make_word(EntryState::Writing, slot_, gen);
  // Subscribers hear of the seal from the entry as we wrote it, read while
  // it is still ours (after the seal anyone may erase it).
  std::optional<SealNote> note;  // (no 96-byte clear on every seal)
  if (anyone_subscribed()) note = seal_note(e);
  // seq_cst, then the waiter count: pairs with wait_for_change's count,
  // then word (a release here could let the count be read first, and a
  // waiter registering just then would sleep through the seal).
  if (!atomic(e.word).compare_exchange_strong(want, make_word(EntryState::Sealed, kNoOwner, gen))) {
    throw Error(Errc::Corrupt, fmt::format("{} is no longer this writer's to seal (segment '{}' changed under it: {})",
                                           ref_of(index, gen).to_string(), name_, state_name(word_state(want))));
  }
  if (tc == nullptr) tc = &caches_->mine();
  atomic(stats_line(slot_, tc->line).objects_sealed).fetch_add(1, std::memory_order_relaxed);
  if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
  bool whole = true;
  if (!note && anyone_subscribed(std::memory_order_seq_cst)) {
    // Someone subscribed between our first look and the seal (seq_cst both
    // sides: a subscribe() that returned before the seal is seen here). The
    // entry is public now: read it, and if it moved on meanwhile (erased at
    // once), publish the event as lost rather than with torn fields.
    note = seal_note(e);
    whole = load(e.word) == make_word(EntryState::Sealed, kNoOwner, gen);
  }
  if (note) publish_seal(index, gen, *note, whole);
}

void Session::abort(std::uint32_t index, std::uint32_t gen) noexcept {
  if (!usable()) return;
  try {
    Entry& e = entry(index);
    std::uint64_t w = load(e.word);
    if (w != make_word(EntryState::Writing, slot_, gen)) return;
    std::uint64_t extent = field(e.extent);
    std::uint64_t offset = field(e.offset);
    auto c = exact_class(extent);
    if ((field(e.flags) & kFresh) != 0 && c && offset <= geo().capacity && extent <= geo().capacity - offset) {
      // Back into the cache it (likely) came from.
      std::uint32_t g = next_gen(gen);
      if (!atomic(e.word).compare_exchange_strong(w, make_word(EntryState::Reserved, slot_, g))) return;
      ThreadCache& tc = caches_->mine();
      add_reserved(tc, 1, static_cast<std::int64_t>(extent));
      tc.bins[*c].push_back({index, g, offset, *c});
      if (tc.bins[*c].size() > 2 * std::size_t{batch(*c)}) spill(tc, *c);
      return;
    }
    Lock lock(*this);
    if (load(e.word) != w) return;
    if ((field(e.flags) & kFresh) != 0) {
      free_entry_locked(index, w);
      return;
    }
    release_extent_locked(e);  // a made ref returns to unfilled
    store(e.size, std::uint64_t{0}, std::memory_order_relaxed);
    store(e.word, make_word(EntryState::Unfilled, kNoOwner, gen), std::memory_order_release);
    publish_alloc_stats_locked();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a failed lock leaves it to recovery
  }
}

void Session::fail(const RemoteRef& ref, std::string_view reason) {
  check_writable();
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  reason = reason.substr(0, kMaxFailureReason);
  Lock lock(*this);
  Entry& e = entry(index);
  std::uint64_t w = load(e.word);
  EntryState st = word_state(w);
  if (!word_valid(w)) corrupt(fmt::format("{} has an invalid head word {:#x}", ref.to_string(), w));
  if (word_gen(w) != gen || st == EntryState::Free || st == EntryState::ErasePending || st == EntryState::Reserved) {
    throw Error(Errc::NotFound,
                fmt::format("cannot fail {}: it is not in segment '{}' (erased)", ref.to_string(), name_));
  }
  if (st == EntryState::Writing) {
    std::uint32_t ws = word_owner(w);
    if (slot_alive(ws)) {
      throw Error(Errc::AlreadySealed, fmt::format("cannot fail {}: worker {} (pid {}) is filling it", ref.to_string(),
                                                   field(e.creator_id), field(e.creator_pid)));
    }
    release_extent_locked(e);  // its writer died: roll the write back as recovery would, then fail it
  } else if (is_sealed(st)) {
    throw Error(Errc::AlreadySealed, fmt::format("cannot fail {}: it is already sealed", ref.to_string()));
  } else if (st == EntryState::Abandoned && (field(e.flags) & kFailed) != 0) {
    throw Error(Errc::AlreadySealed, fmt::format("cannot fail {}: it has failed already", ref.to_string()));
  }
  // Unfilled, abandoned by a dead writer (no data held), or just rolled back.
  release_extent_locked(e);
  std::uint64_t size = 0;
  if (!reason.empty()) {
    ExtentAllocator alloc = allocator();
    if (auto got = alloc.allocate(footprint(reason.size()))) {
      size = reason.size();
      std::memcpy(map_.data_rw() + got->offset, reason.data(), size);
      store(e.offset, got->offset, std::memory_order_relaxed);
      store(e.extent, got->bytes, std::memory_order_relaxed);
      store(e.block, got->block, std::memory_order_relaxed);
    }
  }
  fill_entry(e, size, ValueType{ValueKind::String, ElemType::None, 1, 0, 0, {}});
  store(e.flags, field(e.flags) | kFailed, std::memory_order_relaxed);
  store(e.word, make_word(EntryState::Abandoned, kNoOwner, gen));  // seq_cst, then the waiters: as in seal()
  publish_alloc_stats_locked();
  if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
}

// ---- the caches

// Fills this thread's bin of class c: from the process's depot, else a batch
// of entries and extents reserved under the lock (one extent allocated and
// split, where it can be). False if the segment has none to spare.
bool Session::refill(ThreadCache& tc, std::uint32_t c) {
  auto& bin = tc.bins[c];
  std::uint32_t n = batch(c);
  {
    std::lock_guard guard(caches_->mu);
    auto& depot = caches_->depot[c];
    while (!depot.empty() && bin.size() < n) {
      bin.push_back(depot.back());
      depot.pop_back();
    }
  }
  if (!bin.empty()) return true;
  std::uint64_t cb = class_bytes(c);
  Lock lock(*this);
  ExtentAllocator alloc = allocator();
  std::vector<ExtentAllocator::Extent> extents;
  if (auto chunk = alloc.allocate(cb * n)) {
    ExtentAllocator::Extent x = *chunk;
    for (std::uint32_t k = 1; k < n; ++k) extents.push_back(alloc.split(x, x.bytes - cb));
    extents.push_back(x);
  } else {
    for (std::uint32_t k = 0; k < n; ++k) {
      auto one = alloc.allocate(cb);
      if (!one) break;
      extents.push_back(*one);
    }
  }
  std::size_t used = 0;
  for (; used < extents.size(); ++used) {
    std::optional<std::uint32_t> got = alloc.pop_entry();
    if (!got) break;
    Entry& e = entry(*got);
    std::uint64_t w = load(e.word);
    if (word_state(w) != EntryState::Free || !word_valid(w)) {
      store(header().repair_pending, 1U);
      break;
    }
    const ExtentAllocator::Extent& x = extents[used];
    std::uint32_t gen = next_gen(word_gen(w));
    store(e.offset, x.offset, std::memory_order_relaxed);
    store(e.extent, x.bytes, std::memory_order_relaxed);
    store(e.block, x.block, std::memory_order_relaxed);
    store(e.size, std::uint64_t{0}, std::memory_order_relaxed);
    store(e.names, 0U, std::memory_order_relaxed);
    store(e.flags, 0U, std::memory_order_relaxed);
    store(e.word, make_word(EntryState::Reserved, slot_, gen), std::memory_order_release);
    bin.push_back({*got, gen, x.offset, c});
  }
  for (std::size_t k = used; k < extents.size(); ++k) alloc.release(extents[k]);
  add_reserved(tc, static_cast<std::int64_t>(used), static_cast<std::int64_t>(used * cb));
  publish_alloc_stats_locked();
  return used > 0;
}

void Session::spill(ThreadCache& tc, std::uint32_t c) {
  auto& bin = tc.bins[c];
  std::size_t n = batch(c);
  std::vector<CachedExtent> out;
  {
    std::lock_guard guard(caches_->mu);
    auto& depot = caches_->depot[c];
    // The oldest records (the bin's front; puts take from its back), moved
    // in one go.
    auto k = static_cast<std::ptrdiff_t>(std::min(n, bin.size()));
    depot.insert(depot.end(), bin.begin(), bin.begin() + k);
    bin.erase(bin.begin(), bin.begin() + k);
    if (depot.size() > 2 * n && !depot_may_grow(caches_->depot)) {
      // Down to one batch, the oldest first.
      auto excess = static_cast<std::ptrdiff_t>(depot.size() - n);
      out.assign(depot.begin(), depot.begin() + excess);
      depot.erase(depot.begin(), depot.begin() + excess);
    }
  }
  if (out.empty()) return;
  Lock lock(*this);
  drain_locked(out);
}

// The depot keeps what erases give back, up to kDepotBytes in all (a
// quarter of a smaller segment), so
// that a run of puts after a run of erases finds its records whole (a
// refill from the segment splits an extent and pops an entry per record).
// Only while the segment is roomy: a quarter of its bytes and of its
// entries free. A spilling segment counts cached bytes as used against its
// high watermark, so there the depot keeps two batches, as everywhere
// when room is short. Whatever it keeps, a process short of room takes
// back (steal_reserved_locked).
bool Session::depot_may_grow(const Bins& depot) const noexcept {
  if (spills_) return false;
  const Header& h = header();
  if (field(h.free_bytes) < geo().capacity / 4 || field(h.free_entries) < geo().max_objects / 4) return false;
  std::uint64_t bytes = 0;
  for (std::uint32_t c = 0; c < kClasses; ++c) bytes += depot[c].size() * class_bytes(c);  // NOLINT
  return bytes <= std::min(kDepotBytes, geo().capacity / 4);
}

// Gives cached records back to the segment: each still ours becomes Free.
void Session::drain_locked(const std::vector<CachedExtent>& records) {
  if (records.empty()) return;
  ExtentAllocator alloc = allocator();
  std::int64_t entries = 0;
  std::int64_t bytes = 0;
  for (const CachedExtent& r : records) {
    Entry& e = entry(r.index);
    std::uint64_t want = make_word(EntryState::Reserved, slot_, r.gen);
    if (!atomic(e.word).compare_exchange_strong(want, make_word(EntryState::Free, kNoOwner, r.gen))) continue;
    // By the entry's own block, which a repair since we cached it may have
    // renumbered; books that disagree are marked for rebuilding.
    release_extent_locked(e);
    alloc.push_entry(r.index);
    entries += 1;
    bytes += static_cast<std::int64_t>(class_bytes(r.cls));
  }
  add_reserved(0, -entries, -bytes);
  publish_alloc_stats_locked();
}

}  // namespace sealstore::detail
