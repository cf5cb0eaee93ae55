// The segment's on-memory layout. Every struct here lives in shared memory:
// standard-layout, trivially copyable, offsets instead of pointers, each
// field's comment saying what guards it. Fields read or written outside the
// segment lock are accessed through std::atomic_ref (see atomics.hpp).
//
//   [Header | ProcessSlot x kMaxProcesses | SlotStats x kMaxProcesses x
//    kStatLines | Entry x max_objects | PinMask x max_objects |
//    NameSlot x name_slots | EventSlot x kEventSlots |
//    allocator state (derived) | data (capacity)]
//
// Nothing here is trusted by a process that reads it: any process that can
// write the file can write anything into it. Each process keeps its own
// copy of the geometry (Geometry, validated once at attach) and bounds every
// index and offset it reads from the segment against that copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "sealstore/value.hpp"

namespace sealstore::detail {

inline constexpr std::uint64_t kMagic = 0x3330'4c41'4553'4c53ULL;  // "SLSEAL03"
inline constexpr std::uint32_t kLayoutVersion = 3;
inline constexpr std::uint32_t kMaxProcesses = 128;
inline constexpr std::uint32_t kStatLines = 8;              // counter lines per process (one per thread, cycling)
inline constexpr std::uint64_t kDataAlign = 64;             // every object starts on a cache line
inline constexpr std::uint64_t kDataRegionAlign = 2 << 20;  // data region starts on a huge page
inline constexpr std::uint64_t kPageSize = 4096;
inline constexpr std::size_t kNameBytes = 64;  // names up to 63 bytes, NUL-padded
inline constexpr std::uint32_t kNoSlot = 0xffffffffU;
inline constexpr std::uint32_t kNoBlock = 0xffffffffU;
inline constexpr std::uint32_t kEventSlots = 4096;  // seal events the ring keeps (a power of two)
inline constexpr std::size_t kSpillDirBytes = 256;  // the spill directory's path, NUL-padded

enum class EntryState : std::uint32_t {
  Free = 0,          // in the free-entry stack
  Unfilled = 1,      // made by make_ref(); no data
  Writing = 2,       // owned by the writer in `owner`; holds its extent
  Sealed = 3,        // immutable; holds its extent
  ErasePending = 4,  // erased while pinned; freed by whoever drops the last pin
  Abandoned = 5,     // its writer died, or Store::fail(): holds the reason's extent, if any
  Reserved = 6,      // no object: an entry and extent cached by the process in `owner`
  Spilled = 7,       // sealed, its bytes wholly in its spill file; holds no extent
  Restoring = 8,     // sealed, being read back from its spill file by the process in `owner`; holds its extent
};
inline constexpr std::uint32_t kEntryStates = 9;

// An entry's head word, the one field whose changes commit its life:
//   bits  0..3   EntryState
//   bits  4..11  owner: the slot writing it (Writing), caching it
//                (Reserved) or restoring it (Restoring); for Sealed, 0xff
//                until the object is first restored from a spill file,
//                then its residence (restores so far, mod 255), so that
//                the word changes whenever the bytes move; 0xff otherwise
//   bits 12..31  the low 20 bits of the generation
//   bits 32..63  the generation: bumped (never to 0) whenever the entry
//                starts a new life or a new reservation
// The low half is the futex word fetchers sleep on; holding generation bits
// makes it change when the entry is reused, so a sleeper never sleeps on
// the entry's next object.
inline constexpr std::uint32_t kNoOwner = 0xff;
constexpr std::uint64_t make_word(EntryState s, std::uint32_t owner, std::uint32_t gen) {
  return static_cast<std::uint64_t>(s) | (std::uint64_t{owner & 0xffU} << 4U) | (std::uint64_t{gen & 0xfffffU} << 12U) |
         (std::uint64_t{gen} << 32U);
}
constexpr std::uint32_t word_state_bits(std::uint64_t w) { return static_cast<std::uint32_t>(w & 0xfU); }
constexpr EntryState word_state(std::uint64_t w) { return static_cast<EntryState>(w & 0xfU); }
constexpr std::uint32_t word_owner(std::uint64_t w) { return static_cast<std::uint32_t>((w >> 4U) & 0xffU); }
constexpr std::uint32_t word_gen(std::uint64_t w) { return static_cast<std::uint32_t>(w >> 32U); }
constexpr std::uint32_t word_futex(std::uint64_t w) { return static_cast<std::uint32_t>(w); }
// A word no honest process writes: the state is out of range, or the low
// generation bits disagree with the generation.
constexpr bool word_valid(std::uint64_t w) {
  return word_state_bits(w) < kEntryStates && ((w >> 12U) & 0xfffffU) == (word_gen(w) & 0xfffffU);
}
constexpr std::uint32_t next_gen(std::uint32_t g) { return g + 1 == 0 ? 1 : g + 1; }

enum EntryFlags : std::uint32_t {
  kFresh = 1U << 0U,      // made by a writer, not make_ref(): an abort frees the entry
  kFailed = 1U << 1U,     // Abandoned by Store::fail(): its data (size bytes) is the reason
  kSpillFile = 1U << 2U,  // a spill file may exist for it (perhaps half written): removed with it
  kSpillValid = 1U << 3U  // its spill file is complete: spilling it again writes nothing
};

// One object (or made ref). 128 bytes: the first line is all a fetch of an
// object that is not an n-d array reads.
struct alignas(64) Entry {
  // --- line 1
  std::uint64_t word;       // the head word (above); atomic
  std::uint32_t waiters;    // fetchers sleeping on the word (atomic); a dead waiter costs one spare wake-up
  std::uint32_t flags;      // EntryFlags; by the entry's owner or under the lock
  std::uint64_t offset;     // of its extent in the data region, bytes; set with the extent (under the lock)
  std::uint64_t extent;     // bytes of the data region it holds (a multiple of 64), 0 for none
  std::uint64_t size;       // bytes of value (<= extent); by the writer before sealing
  std::uint8_t kind;        // ValueKind   } the value's type: by the writer before
  std::uint8_t elem;        // ElemType    } sealing, immutable once sealed
  std::uint8_t rank;        //             }
  std::uint8_t touched;     // fetched since the spiller last looked (atomic): its clock's reference bit
  std::uint32_t elem_size;  // bytes       }
  std::uint64_t type_hash;  //             }
  std::uint32_t names;      // names bound to it; under the lock
  std::uint32_t block;      // the allocator's block for its extent (derived); under the lock
  // --- line 2
  std::uint64_t shape[kMaxRank];  // NdArray only; as the type above
  std::uint32_t where;            // WorkerId it is meant for; by its maker
  std::uint32_t whence;           // WorkerId that made the ref (or object); by its maker
  std::uint32_t creator_id;       // WorkerId that wrote the data (0 while unfilled); by the writer
  std::int32_t creator_pid;       // pid of creator_id; by the writer
  std::int32_t maker_pid;         // pid of whence; by its maker
  std::uint32_t restores;         // times restored from its spill file; under the lock
  std::uint64_t created_ns;       // CLOCK_REALTIME (coarse) when made; by its maker
};
static_assert(sizeof(Entry) == 128);

enum class SlotState : std::uint32_t { Free = 0, Live = 1 };

// One attached process. Claimed and freed under the lock.
struct alignas(64) ProcessSlot {
  std::uint32_t state;          // SlotState; under the lock, read atomically by everyone
  std::int32_t pid;             // under the lock
  std::uint64_t start_time;     // /proc/PID/stat field 22; pid + start time identify a process
  std::uint32_t worker_id;      // under the lock
  std::uint32_t role;           // sealstore::Role; under the lock
  std::uint64_t attached_ns;    // CLOCK_REALTIME
  std::uint64_t pid_ns;         // its pid namespace (registry/process.hpp), 0 if unknown; under the lock
  std::uint32_t lock_seq;       // the segment lock's sequence while it holds the lock, else 0 (atomic, own)
  std::uint32_t publishing;     // seal events it has claimed and not yet published (atomic, own)
  std::uint32_t event_waiting;  // its threads asleep on the event bell, its share of event_waiters (atomic, own)
  std::uint32_t reserved1;
  std::uint64_t reserved2;
};
static_assert(sizeof(ProcessSlot) == 64);

// Counters a process's threads change on every put and erase, a line per
// thread (cycling through kStatLines), summed on read: no line is shared by
// two busy threads. `reserved` is zeroed when the slot is reaped; the
// whole line when a process joins in the slot.
struct alignas(64) SlotStats {
  // Entries Reserved by this process and the bytes of their extents, in one
  // word (one atomic add for both): reserved_word(entries, bytes), summed
  // over the lines with wrap-around, then split by reserved_entries/_bytes.
  // A line's own value may be "negative" (a record reserved on one thread,
  // used on another); the sum over a process's lines is not.
  std::uint64_t reserved;
  std::uint64_t objects_sealed;  // objects this process sealed (atomic)
  std::uint64_t spare[6];
};
static_assert(sizeof(SlotStats) == 64);
inline constexpr unsigned kReservedBytesBits = 40;  // a process caches less than 1 TiB
constexpr std::uint64_t reserved_word(std::int64_t entries, std::int64_t bytes) {
  return (static_cast<std::uint64_t>(entries) << kReservedBytesBits) + static_cast<std::uint64_t>(bytes);
}
constexpr std::uint64_t reserved_entries(std::uint64_t sum) { return sum >> kReservedBytesBits; }
constexpr std::uint64_t reserved_bytes(std::uint64_t sum) {
  return sum & ((std::uint64_t{1} << kReservedBytesBits) - 1);
}

// Which processes pin an entry: bit s set while the process in slot s holds
// a View of it. A mask per entry (four to a cache line), not a row per
// process: an erase reads one mask, and processes pinning their own objects
// write different lines. Bits set and cleared atomically by their owners;
// a dead process's cleared when it is reaped.
struct PinMask {
  std::uint64_t bits[kMaxProcesses / 64];
};
static_assert(sizeof(PinMask) == 16);

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

// One seal event in the ring: sequence s lives in slot s % kEventSlots.
// `stamp` is 2s+1 while its sealer writes it and 2s+2 once published; a
// reader copies the fields between two reads of the stamp and checks the
// sum, so a slot torn by two sealers a whole ring apart is seen as lost.
struct alignas(64) EventSlot {
  std::uint64_t stamp;  // atomic
  std::uint32_t index;  // the entry
  std::uint32_t gen;
  std::uint32_t where;
  std::uint32_t whence;
  std::uint32_t sealed_by;     // WorkerId
  std::int32_t sealed_by_pid;  //
  std::uint64_t size;          //
  std::uint64_t type[2];       // the entry's type words (entry_view.hpp: TypeWords)
  std::uint64_t shape[kMaxRank];
  std::uint64_t check;  // event_check() of the fields above and the sequence
};
static_assert(sizeof(EventSlot) == 128);

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
  std::uint32_t pin_words;   // 64-bit words per pin mask
  std::uint64_t slots_offset;
  std::uint64_t stats_offset;
  std::uint64_t entries_offset;
  std::uint64_t pins_offset;
  std::uint64_t names_offset;
  std::uint64_t events_offset;
  std::uint64_t alloc_offset;
  std::uint64_t alloc_bytes;
  std::uint64_t data_offset;
  std::uint64_t created_ns;  // CLOCK_REALTIME
  std::int32_t creator_pid;
  std::uint32_t reserved0;
  // Spilling (store/spill.cpp), as the creator set it; each process copies
  // it at attach (SpillConfig) and never reads it again.
  char spill_dir[kSpillDirBytes];  // absolute, NUL-padded; empty: no spilling
  std::uint64_t spill_high;        // a write that would take used bytes above this spills
  std::uint64_t spill_low;         // ... down to this

  // --- the segment lock (sync/segment_lock.hpp), a line of its own
  alignas(64) std::uint32_t lock_word;

  // --- mutable, under the lock (read atomically by everyone)
  alignas(64) std::uint32_t next_worker_id;
  std::uint32_t repair_pending;  // 1: the next locker validates the tables and rebuilds what is derived
  std::uint64_t free_entries;    // entries in the free-entry stack; derived
  std::uint64_t free_bytes;      // bytes in free blocks of the allocator; derived
  std::uint64_t largest_free;    // derived
  std::uint64_t free_extents;    // free blocks; derived
  std::uint64_t recoveries;      // dead processes reaped
  std::uint64_t lock_repairs;    // lock holders found dead
  std::uint32_t names_bound;     // used name slots; derived
  std::uint32_t reserved1;
  std::uint64_t live_slots[kMaxProcesses / 64];  // bit per slot in state Live

  // --- spilling (store/spill.cpp), under the lock
  alignas(64) std::uint64_t spill_hand;  // the clock hand: the next entry the spiller looks at
  std::uint64_t spills;                  // objects written out (or dropped, their file valid)
  std::uint64_t restores;                // objects read back
  std::uint64_t spilled_objects;         // objects in state Spilled or Restoring
  std::uint64_t spilled_bytes;           // their sizes

  // --- seal events (store/events.cpp), each on a line of its own: every
  // seal reads the first, and only seals while someone subscribes write the rest
  alignas(64) std::uint64_t subscribed[kMaxProcesses / 64];  // bit per slot with a subscription (atomic)
  alignas(64) std::uint64_t event_head;                      // the next sequence to claim (atomic)
  alignas(64) std::uint32_t event_bell;  // bumped after each publication: the futex word subscribers sleep on
  std::uint32_t event_waiters;           // subscribers asleep on the bell (atomic)
};
static_assert(sizeof(Header) <= kPageSize);
static_assert(kMaxProcesses / 64 == 2, "Session::anyone_subscribed reads two words");
static_assert(std::is_standard_layout_v<Header> && std::is_trivially_copyable_v<Header>);
// Identity, geometry and the spill settings end where the lock's line
// begins: the torture tool's hostile peer (tools/torture/hostile.cpp)
// spares only what lies before.
static_assert(offsetof(Header, lock_word) == 448);
static_assert(std::is_standard_layout_v<Entry> && std::is_trivially_copyable_v<Entry>);
static_assert(std::is_standard_layout_v<ProcessSlot> && std::is_trivially_copyable_v<ProcessSlot>);
static_assert(std::is_standard_layout_v<SlotStats> && std::is_trivially_copyable_v<SlotStats>);
static_assert(std::is_standard_layout_v<NameSlot> && std::is_trivially_copyable_v<NameSlot>);

// Offsets and sizes of every region, computed from the three parameters.
// Each process keeps its own copy: the one in the header is checked against
// it once, at attach, and never read again.
struct Geometry {
  std::uint64_t capacity;
  std::uint32_t max_objects;
  std::uint32_t max_names;
  std::uint32_t name_slots;
  std::uint32_t pin_words;
  std::uint32_t segment_tag;
  std::uint64_t slots_offset, stats_offset, entries_offset, pins_offset, names_offset;
  std::uint64_t events_offset;
  std::uint64_t alloc_offset, alloc_bytes, data_offset, file_size;
};

// Throws Error(InvalidArgument) when the parameters overflow or are zero.
Geometry compute_geometry(std::uint64_t capacity, std::uint32_t max_objects, std::uint32_t max_names);

// A hash of everything that must agree between two builds sharing a segment.
std::uint64_t layout_fingerprint();

inline std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// Bytes an extent for `size` bytes of value takes when not cached by size class.
inline std::uint64_t footprint(std::uint64_t size) { return round_up(size, kDataAlign); }

// States whose entry holds its extent: Writing, Sealed, ErasePending,
// Abandoned (a failed ref's reason; 0 bytes when its writer died), Reserved,
// Restoring. A Spilled entry holds none.
inline bool holds_extent(EntryState s) {
  return s == EntryState::Writing || s == EntryState::Sealed || s == EntryState::ErasePending ||
         s == EntryState::Abandoned || s == EntryState::Reserved || s == EntryState::Restoring;
}
// States of a sealed object, wherever its bytes are.
inline bool is_sealed(EntryState s) {
  return s == EntryState::Sealed || s == EntryState::Spilled || s == EntryState::Restoring;
}

}  // namespace sealstore::detail
