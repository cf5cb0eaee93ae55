// The segment's on-memory layout. Every struct here lives in shared memory:
// standard-layout, trivially copyable, offsets instead of pointers, each
// field's comment saying what guards it. Fields read or written outside the
// segment lock are accessed through std::atomic_ref (see atomics.hpp).
//
//   [Header | ProcessSlot x kMaxProcesses | Entry x max_objects |
//    pin bitmaps (one row per slot) | NameSlot x name_slots |
//    allocator state (derived, rebuilt after a crash) | data (capacity)]
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "sealstore/value.hpp"

namespace sealstore::detail {

inline constexpr std::uint64_t kMagic = 0x3130'4c41'4553'4c53ULL;  // "SLSEAL01"
inline constexpr std::uint32_t kLayoutVersion = 1;
inline constexpr std::uint32_t kMaxProcesses = 128;
inline constexpr std::uint64_t kDataAlign = 64;             // every object starts on a cache line
inline constexpr std::uint64_t kDataRegionAlign = 2 << 20;  // data region starts on a huge page
inline constexpr std::uint64_t kPageSize = 4096;
inline constexpr std::size_t kNameBytes = 64;  // names up to 63 bytes, NUL-padded
inline constexpr std::uint32_t kNoSlot = 0xffffffffU;

enum class EntryState : std::uint32_t {
  Free = 0,
  Unfilled = 1,
  Writing = 2,
  Sealed = 3,
  ErasePending = 4,
  Abandoned = 5,
};

enum EntryFlags : std::uint32_t {
  kFresh = 1U << 0U,   // made by a writer, not make_ref(): an abort frees the entry
  kFailed = 1U << 1U,  // Abandoned by Store::fail(): its data (size bytes) is the reason
};

// One object (or made ref). 128 bytes: the first line is what fetch reads.
struct alignas(64) Entry {
  // --- line 1: the fast path
  std::uint32_t state;        // EntryState; the futex word fetchers sleep on. Changed under
                              // the lock, except Writing -> Sealed by the writer (atomic).
  std::uint32_t gen;          // bumped (never to 0) each time the entry is reused; under lock.
                              // Read atomically after state by fetch.
  std::uint32_t waiters;      // fetchers sleeping on state (atomic); a dead waiter only costs
                              // one spare wake-up.
  std::uint32_t flags;        // EntryFlags; under lock
  std::uint64_t offset;       // of the data within the data region, bytes; under lock
  std::uint64_t size;         // bytes (not rounded); under lock
  std::uint32_t writer_slot;  // slot filling it while Writing, else kNoSlot; under lock
  std::uint32_t names;        // names bound to it; under lock
  std::uint32_t where;        // WorkerId; under lock
  std::uint32_t whence;       // WorkerId that made the ref (or object); under lock
  std::uint32_t creator_id;   // WorkerId that wrote the data (0 while unfilled); under lock
  std::int32_t creator_pid;   // pid of creator_id; under lock
  std::uint64_t created_ns;   // CLOCK_REALTIME when made; under lock
  // --- line 2: the value's type, written with the data, immutable once sealed
  std::uint8_t kind;  // ValueKind
  std::uint8_t elem;  // ElemType
  std::uint8_t rank;
  std::uint8_t reserved0;
  std::uint32_t elem_size;  // bytes
  std::uint64_t type_hash;
  std::uint64_t shape[kMaxRank];
  std::uint64_t sealed_ns;  // CLOCK_REALTIME when sealed; written by the writer before sealing
  std::int32_t maker_pid;   // pid of whence when it made the ref; under lock
  std::uint32_t reserved1;
};
static_assert(sizeof(Entry) == 128);

enum class SlotState : std::uint32_t { Free = 0, Live = 1 };

// One attached process. Claimed and freed under the lock.
struct alignas(64) ProcessSlot {
  std::uint32_t state;            // SlotState; under lock, read atomically by observers
  std::int32_t pid;               // under lock
  std::uint64_t start_time;       // /proc/PID/stat field 22; pid + start time identify a process
  std::uint32_t worker_id;        // under lock
  std::uint32_t role;             // sealstore::Role; under lock
  std::uint64_t attached_ns;      // CLOCK_REALTIME
  std::uint64_t objects_created;  // objects sealed by it; atomic, relaxed
  std::uint64_t pid_ns;           // its pid namespace (registry/process.hpp), 0 if unknown; under lock
  std::uint64_t reserved[2];
};
static_assert(sizeof(ProcessSlot) == 64);

// One store-wide name. Written under the lock as a seqlock (seq odd while
// changing), so lookups read it without the lock.
struct NameSlot {
  std::uint32_t seq;                   // even when stable; atomic
  std::uint32_t state;                 // 0 empty, 1 used, 2 deleted (a tombstone for probing); atomic
  std::uint32_t index;                 // the entry it names; atomic
  std::uint32_t gen;                   // the entry's gen when bound; atomic
  std::uint64_t hash;                  // of the name; atomic
  std::uint64_t name[kNameBytes / 8];  // NUL-padded bytes; each word atomic
};
static_assert(sizeof(NameSlot) == 88);

struct alignas(64) Header {
  // --- identity and geometry: written once at creation, before magic
  std::uint64_t magic;  // kMagic, stored last (release) when creation is complete
  std::uint32_t layout_version;
  std::uint32_t header_bytes;  // sizeof(Header)
  std::uint64_t fingerprint;   // layout_fingerprint() of the creating build
  std::uint32_t segment_tag;   // random, names this incarnation in refs
  std::uint32_t mode;          // requested permission bits
  std::uint64_t file_size;     // bytes
  std::uint64_t capacity;      // bytes of the data region
  std::uint32_t max_objects;
  std::uint32_t max_names;   // names that can be bound
  std::uint32_t name_slots;  // hash table size (power of two, >= 2 * max_names)
  std::uint32_t pin_words;   // 64-bit words per pin bitmap row
  std::uint64_t slots_offset;
  std::uint64_t entries_offset;
  std::uint64_t pins_offset;
  std::uint64_t names_offset;
  std::uint64_t alloc_offset;
  std::uint64_t alloc_bytes;
  std::uint64_t data_offset;
  std::uint64_t created_ns;  // CLOCK_REALTIME
  std::int32_t creator_pid;
  std::uint32_t reserved0;

  // --- mutable, under lock (observers read them atomically)
  std::uint32_t next_worker_id;
  std::uint32_t objects;                         // entries not Free
  std::uint64_t used;                            // bytes allocated to object data (rounded); derived
  std::uint64_t largest_free;                    // derived
  std::uint64_t free_extents;                    // derived
  std::uint64_t recoveries;                      // dead processes reaped
  std::uint32_t names_bound;                     // used name slots; derived
  std::uint32_t repair_pending;                  // 1: the next locker validates the tables and rebuilds what is
                                                 // derived (set when a lock holder died, or a repair failed)
  std::uint64_t lock_repairs;                    // lock holders found dead (EOWNERDEAD); under lock
  std::uint64_t live_slots[kMaxProcesses / 64];  // bit per slot in state Live

  alignas(64) pthread_mutex_t lock;  // robust, process-shared
};
static_assert(std::is_standard_layout_v<Header> && std::is_trivially_copyable_v<Header>);
static_assert(std::is_standard_layout_v<Entry> && std::is_trivially_copyable_v<Entry>);
static_assert(std::is_standard_layout_v<ProcessSlot> && std::is_trivially_copyable_v<ProcessSlot>);
static_assert(std::is_standard_layout_v<NameSlot> && std::is_trivially_copyable_v<NameSlot>);

// Offsets and sizes of every region, computed from the three parameters.
struct Geometry {
  std::uint64_t capacity;
  std::uint32_t max_objects;
  std::uint32_t max_names;
  std::uint32_t name_slots;
  std::uint32_t pin_words;
  std::uint64_t slots_offset, entries_offset, pins_offset, names_offset;
  std::uint64_t alloc_offset, alloc_bytes, data_offset, file_size;
};

// Throws Error(InvalidArgument) when the parameters overflow or are zero.
Geometry compute_geometry(std::uint64_t capacity, std::uint32_t max_objects, std::uint32_t max_names);

// A hash of everything that must agree between two builds sharing a segment.
std::uint64_t layout_fingerprint();

inline std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace sealstore::detail
