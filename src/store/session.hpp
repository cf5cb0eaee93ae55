// detail::Session: one process's attachment to a segment, shared by the
// Store handle and every View and Writer made through it. It implements the
// store's operations on the segment's tables, in files by concern:
//
//   session.cpp        attaching, detaching, the lock, accessors
//   write_path.cpp     make_ref, writers (lock-free for small objects), seal, abort, fail
//   read_path.cpp      fetch, fetch_many, pins, waiting, unpinned small reads
//   erase.cpp          erase and the frees it defers
//   names.cpp          bind, lookup, unbind
//   recovery.cpp       reaping the dead, repairing after a dead lock holder
//   introspection.cpp  info, processes, objects
//   spill.cpp          spilling sealed objects to files and restoring them
//   events.cpp         the ring of seal events and its subscribers
//
// Thread-safe. Every value read from the segment is bounded against this
// process's own copy of the geometry before it is used.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "alloc/extent_allocator.hpp"
#include "alloc/local_cache.hpp"
#include "registry/fork_guard.hpp"
#include "sealstore/ref.hpp"
#include "sealstore/stats.hpp"
#include "sealstore/store.hpp"
#include "sealstore/subscription.hpp"
#include "sealstore/value.hpp"
#include "sealstore/view.hpp"
#include "segment/layout.hpp"
#include "segment/segment.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

// Longer reasons given to Store::fail are cut to this many bytes.
inline constexpr std::size_t kMaxFailureReason = 4096;
// A write short of room spills and tries again this many times before it
// takes any room there is, above the high watermark or not.
inline constexpr int kRoomAttempts = 3;
// Objects up to this size are materialized without a pin (copied, then the
// entry checked unchanged).
inline constexpr std::uint64_t kUnpinnedReadMax = 4096;
// A process's depot keeps up to this many bytes of records erases gave
// back (no more than a quarter of the segment), while the segment is roomy
// (Session::depot_may_grow).
inline constexpr std::uint64_t kDepotBytes = std::uint64_t{1} << 20U;

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

class Session {
 public:
  // The shared_ptr is the Stores' hold on the session; Views and Writers
  // hold handles (below). The session ends when both are gone.
  static std::shared_ptr<Session> create(std::string_view name, const CreateOptions& o);
  static std::shared_ptr<Session> attach(std::string_view name, const AttachOptions& o);
  ~Session();

  // A View's or Writer's hold on the session: counted on the calling
  // thread's own line. release_handle may end the session (if no Store is
  // left), so nothing of it may be used after.
  ThreadCache* acquire_handle() { return acquire_handle(caches_->mine()); }
  ThreadCache& thread_cache() { return caches_->mine(); }
  static ThreadCache* acquire_handle(ThreadCache& tc, std::int64_t n = 1) noexcept {
    tc.handles.fetch_add(n, std::memory_order_relaxed);
    return &tc;
  }
  void release_handle(ThreadCache* h) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const std::string& name() const noexcept { return name_; }
  WorkerId id() const noexcept { return id_; }
  bool observer() const noexcept { return slot_ == kNoSlot; }
  Header& header() const noexcept { return map_.header(); }
  const Mapping& mapping() const noexcept { return map_; }
  const Geometry& geo() const noexcept { return map_.geometry(); }

  // ---- writing (write_path.cpp)
  RemoteRef make_ref(WorkerId where);
  struct Claim {
    std::uint32_t index;
    RemoteRef ref;
    std::span<std::byte> bytes;
    ThreadCache* cache = nullptr;  // this thread's cache, when it came from there
  };
  // An entry (or `target`, made with make_ref) and its data, in state
  // Writing, ours.
  Claim begin_write(const RemoteRef* target, std::uint64_t size, const ValueType& type);
  // Throws InvalidArgument in a process that did not make the writer (a
  // fork child), Corrupt if the entry is not this writer's any more.
  void seal(std::uint32_t index, std::uint32_t gen, ThreadCache* tc = nullptr);
  void abort(std::uint32_t index, std::uint32_t gen) noexcept;
  // Store::fail: the ref becomes Abandoned with reason as its data.
  void fail(const RemoteRef& ref, std::string_view reason);

  // ---- reading (read_path.cpp)
  using Pinned = PinnedObject;
  // deadline nullopt: wait for ever. wait false: never wait (false result).
  // spin: poll this long before sleeping. Fills out (in place: it is the
  // View's own) when it pins.
  bool fetch(const RemoteRef& ref, Deadline deadline, bool wait, std::chrono::nanoseconds spin, Pinned& out);
  // fetch() of each ref, their table entries and pins brought into the
  // cache ahead of use, a batch at a time. Ref k's pin is written to
  // pin_slot(ctx, k), the caller's own storage (a View's), so that a batch
  // allocates nothing here. On an error, what was pinned is unpinned.
  using PinSlot = Pinned& (*)(void* ctx, std::size_t k);
  void fetch_many(std::span<const RemoteRef> refs, Deadline deadline, std::chrono::nanoseconds spin, PinSlot pin_slot,
                  void* ctx);
  void unpin(std::uint32_t index, std::uint32_t gen) noexcept;

  // A sealed object of at most kUnpinnedReadMax bytes, read without a pin:
  // begin_read gives its bytes and type as they are now; the caller copies
  // them, then asks Store::still_valid whether the entry stayed the same all
  // along (if not, the copy may be torn: fall back to fetch()).
  // False when it cannot be read so (not sealed, too large, a type that does
  // not fit its size): then fetch.
  // word_at: where the head word lies, to check it again after the copy
  // (Store::still_valid).
  bool begin_read(const RemoteRef& ref, std::span<const std::byte>& bytes, ValueType& type,
                  const std::uint64_t*& word_at, std::uint64_t& word) const;

  // Error(Corrupt): ref's stored type t cannot describe its size bytes.
  [[noreturn]] void throw_misfit(const RemoteRef& ref, const ValueType& t, std::uint64_t size) const;

  // ---- erasing (erase.cpp)
  void erase(const RemoteRef& ref);
  bool contains(const RemoteRef& ref) const;

  // ---- names (names.cpp)
  void bind(std::string_view name, const RemoteRef& ref);
  std::optional<RemoteRef> lookup(std::string_view name) const;
  bool unbind(std::string_view name);

  // ---- introspection (introspection.cpp)
  SegmentInfo info() const;
  std::vector<ProcessInfo> processes() const;
  std::vector<ObjectInfo> objects() const;

  // ---- recovery (recovery.cpp)
  std::size_t recover();

  // ---- spilling (spill.cpp)
  bool spills() const noexcept { return spills_; }
  // Store::spill.
  bool spill(const RemoteRef& ref);
  // Removes the spill folder of a segment nobody uses any more, if it is a
  // real directory (not a link) owned by `owner`, the segment file's owner.
  static void remove_spill_folder(const std::string& folder, uid_t owner) noexcept;

  // ---- seal events (events.cpp)
  // Marks this process as subscribed; returns the sequence of the next event.
  std::uint64_t subscribe();
  void unsubscribe() noexcept;
  // The event at position, or the first after it still in the ring (what
  // was lost is added to missed); false if none came by the deadline.
  // pending: events lost that no returned event has reported yet (carried
  // over a call that times out).
  bool next_event(std::uint64_t& position, std::uint64_t& missed, std::uint64_t& pending, SealEvent& out,
                  Deadline deadline, std::chrono::nanoseconds spin);

  // Throws InvalidArgument if this handle cannot change the store (observer,
  // or inherited across fork).
  void check_writable() const {
    if (slot_ == kNoSlot || !usable()) throw_not_writable();
  }

  // Test hooks: hold the segment lock, as a process stopped inside a
  // critical section would.
  void lock_for_test();
  void unlock_for_test() noexcept;

 private:
  Session(std::string name, Mapping map);
  static std::shared_ptr<Session> owned(Session* s);
  void owners_released() noexcept;
  void end_if_unheld() noexcept;
  class Lock;
  class Peers;
  friend class Lock;

  // ---- the tables, at this process's geometry (callers bound the index)
  Entry& entry(std::uint32_t i) const noexcept {
    return reinterpret_cast<Entry*>(map_.base() + geo().entries_offset)[i];  // NOLINT
  }
  ProcessSlot& slot(std::uint32_t s) const noexcept {
    return reinterpret_cast<ProcessSlot*>(map_.base() + geo().slots_offset)[s];  // NOLINT
  }
  SlotStats& stats_line(std::uint32_t s, std::uint32_t line) const noexcept {
    return reinterpret_cast<SlotStats*>(map_.base() + geo().stats_offset)[s * kStatLines + line];  // NOLINT
  }
  PinMask& pins(std::uint32_t index) const noexcept {
    return reinterpret_cast<PinMask*>(map_.base() + geo().pins_offset)[index];  // NOLINT
  }
  NameSlot& name_slot(std::uint32_t i) const noexcept {
    return reinterpret_cast<NameSlot*>(map_.base() + geo().names_offset)[i];  // NOLINT
  }
  ExtentAllocator allocator() const noexcept;
  static std::uint32_t* futex_word(Entry& e) noexcept;

  // ---- session.cpp
  void join(Role role, WorkerId id);
  void leave() noexcept;
  // False in a child that inherited this attachment across fork.
  bool usable() const noexcept { return fork_epoch_ == process_epoch(); }
  // Whether the process attached in slot s can still use the segment; the
  // quick form trusts a held lock byte without asking /proc.
  bool slot_alive(std::uint32_t s) const;
  bool slot_lock_held(std::uint32_t s) const;
  bool no_live_slots() const noexcept;
  std::uint32_t index_of(const RemoteRef& ref) const;
  RemoteRef ref_of(std::uint32_t index, std::uint32_t gen) const;
  [[noreturn]] void throw_gone(const RemoteRef& ref, const Entry& e, std::uint64_t word) const;
  [[noreturn]] void throw_not_found(const RemoteRef& ref, std::uint64_t word) const;
  [[noreturn]] void throw_failed(const RemoteRef& ref) const;
  [[noreturn]] void corrupt(const std::string& what) const;
  void add_reserved(std::uint32_t line, std::int64_t entries, std::int64_t bytes) noexcept;
  // On the line of tc, the calling thread's own cache: a plain load and
  // store where tc is the line's only writer, else an atomic add.
  void add_reserved(const ThreadCache& tc, std::int64_t entries, std::int64_t bytes) noexcept;

  // ---- write_path.cpp
  // begin_write beyond the cache: under the lock, spilling if it must.
  Claim begin_write_slow(const RemoteRef* target, std::uint64_t size, const ValueType& type);
  // Fills `claim` (and says true) from this thread's cache.
  bool begin_write_cached(std::uint64_t size, const ValueType& type, Claim& claim);
  [[noreturn]] void throw_not_writable() const;
  // want_room: give up (nullopt) rather than fail when short of room or
  // above the high watermark, so the caller can spill and come back.
  std::optional<Claim> begin_write_locked(const RemoteRef* target, std::uint64_t size, const ValueType& type,
                                          bool want_room);
  void fill_entry(Entry& e, std::uint64_t size, const ValueType& type) noexcept;
  bool refill(ThreadCache& tc, std::uint32_t c);
  // A full bin gives half to the depot; a full depot gives to the segment
  // unless it may grow (depot_may_grow; caller holds caches_->mu).
  void spill(ThreadCache& tc, std::uint32_t c);
  bool depot_may_grow(const Bins& depot) const noexcept;
  void drain_locked(const std::vector<CachedExtent>& records);
  std::uint32_t batch(std::uint32_t c) const noexcept { return batch_[c]; }

  // ---- read_path.cpp
  void pin(std::uint32_t index) noexcept;
  bool pinned_anywhere(std::uint32_t index) const noexcept;
  // Pinned by anyone but the one pin this thread holds itself.
  bool pinned_by_others(std::uint32_t index) const noexcept;
  static bool spin_until_settled(const Entry& e, std::chrono::nanoseconds spin, Deadline deadline);
  void wait_for_change(Entry& e, std::uint64_t seen, const RemoteRef& ref, Deadline deadline);
  void pinned_view(const RemoteRef& ref, std::uint32_t index, Entry& e, Pinned& out);

  // ---- spill.cpp
  enum class SpillOutcome { Spilled, Busy };
  // Spills the entry if its head word is still w (Sealed) and nobody pins
  // it. Takes the lock twice, around the file's write.
  SpillOutcome spill_entry(std::uint32_t index, std::uint64_t w);
  // The last step, under the lock: the word goes Spilled unless a pin
  // (other than the one the spiller holds, if own_pin) got in first.
  bool commit_spill_locked(std::uint32_t index, std::uint64_t w, bool own_pin);
  // Spills, least recently fetched first, until `bytes` more fit below the
  // low watermark (see the limit it takes for larger objects), or nothing
  // more can be spilled. Takes the lock. Returns why a spill failed (the
  // directory full or unwritable), else empty.
  std::string make_room(std::uint64_t bytes);
  // The next victim of the clock: a Sealed entry nobody pins and nobody
  // fetched since the hand last passed.
  std::optional<std::pair<std::uint32_t, std::uint64_t>> pick_victim_locked();
  // Fetch found ref's entry Spilled (word w): reads it back into the
  // segment and returns true with the object pinned (the caller's View
  // takes the pin), or false if someone else got to it first (or erased it).
  bool restore(const RemoteRef& ref, std::uint32_t index, std::uint64_t w);
  // Whether a write of `bytes` more would take used bytes above the high
  // watermark.
  bool above_high_water(std::uint64_t bytes) const noexcept;
  // Pinned and half-written bytes, by whom: why nothing more can be spilled.
  std::string pinned_report_locked() const;
  std::string spill_path(std::uint32_t index, std::uint32_t gen) const;
  // A Spilled entry back in the segment (Restoring's undo), or a spill
  // whose commit was cut short undone: the word for a sealed object that
  // was restored `restores` times.
  static std::uint64_t sealed_word(std::uint32_t gen, std::uint32_t restores) noexcept {
    return make_word(EntryState::Sealed, restores == 0 ? kNoOwner : restores % kNoOwner, gen);
  }
  // A Restoring entry whose restorer died goes back to Spilled.
  void undo_restore_locked(std::uint32_t index, std::uint64_t w) noexcept;
  // Counts spilled objects and bytes again from the table.
  void recount_spilled_locked() noexcept;
  // One object of `size` bytes is no longer spilled (restored or erased).
  void uncount_spilled_locked(std::uint64_t size) noexcept;

  // ---- events.cpp
  EventSlot& event_slot(std::uint64_t seq) const noexcept {
    return reinterpret_cast<EventSlot*>(map_.base() + geo().events_offset)[seq % kEventSlots];  // NOLINT
  }
  // On every seal: two loads of a line nobody writes while no subscription
  // comes or goes.
  bool anyone_subscribed(std::memory_order order = std::memory_order_relaxed) const noexcept {
    const Header& h = header();
    return (load(h.subscribed[0], order) | load(h.subscribed[1], order)) != 0;
  }
  // What a seal event tells of the object, read from its entry.
  struct SealNote {
    std::uint32_t where, whence;
    std::uint64_t size;
    std::array<std::uint64_t, 2 + kMaxRank> type;  // entry_view.hpp's TypeWords
  };
  static SealNote seal_note(const Entry& e) noexcept;
  // Publishes the seal of entry index; one not `whole` is published as
  // lost (subscribers count it as missed).
  void publish_seal(std::uint32_t index, std::uint32_t gen, const SealNote& note, bool whole = true) noexcept;
  // Whether some live process has claimed an event it has not published.
  bool someone_publishing() const;

  // ---- erase.cpp
  // Frees an ErasePending entry of generation gen that nobody pins: into
  // this process's cache when it can, else under the lock.
  void finalize(std::uint32_t index, std::uint32_t gen) noexcept;
  void finalize_locked(std::uint32_t index, std::uint32_t gen);

  // ---- under the lock
  std::uint32_t pop_free_entry_locked(ExtentAllocator& alloc);
  // True if it freed it (its head word was still expected_word).
  bool free_entry_locked(std::uint32_t index, std::uint64_t expected_word);
  // keep_size: the entry keeps its size (a sealed object leaving the
  // segment for its spill file), else the size goes to 0 with the extent.
  void release_extent_locked(Entry& e, bool keep_size = false) noexcept;
  void publish_alloc_stats_locked() noexcept;
  std::size_t reap_dead_locked(bool thorough);
  void reap_slot_locked(std::uint32_t s, bool died);
  void free_unpinned_erased_locked();
  std::size_t steal_reserved_locked();
  std::size_t repair_locked();
  void unbind_entry_locked(std::uint32_t index, std::uint32_t gen) noexcept;
  struct NameHit {
    std::uint32_t pos;    // the name slot
    std::uint32_t index;  // the binding, read with the name in one version of the slot
    std::uint32_t gen;
  };
  std::optional<NameHit> find_name(std::string_view name, std::uint64_t hash, bool* stuck) const;
  void write_name_slot_locked(NameSlot& n, std::uint32_t state, std::uint32_t index, std::uint32_t gen,
                              std::uint64_t hash, std::string_view name) noexcept;

  std::string name_;
  Mapping map_;
  std::uint32_t slot_ = kNoSlot;
  WorkerId id_ = 0;
  pid_t pid_ = 0;
  std::uint64_t pid_ns_ = 0;  // our pid namespace (see registry/process.hpp)
  std::uint64_t fork_epoch_ = 0;
  std::array<std::uint32_t, kClasses> batch_{};  // records moved per refill or spill, by class
  std::shared_ptr<CacheRegistry> caches_;
  bool spills_ = false;                   // the segment spills (its SpillConfig is set)
  std::mutex events_mu_;                  // subscriptions_ and our subscribed bit change together
  std::uint32_t subscriptions_ = 0;       // this process's Subscriptions; under events_mu_
  std::mutex lock_mu_;                    // this process's threads take the segment lock one at a time
  std::atomic<bool> owners_gone_{false};  // the last Store let go
  std::atomic<bool> ending_{false};       // someone is deleting it
  // This process's pin count per entry; bit 31 set while a thread moves the
  // count between 0 and 1 and updates the shared pin bitmap.
  std::atomic<std::uint32_t>* local_pins_ = nullptr;
  std::size_t local_pins_bytes_ = 0;
};

}  // namespace sealstore::detail
