// Read-only introspection of a store: its segment, attached processes and
// objects, as plain values. Taken without the store's lock, so a snapshot
// may be a moment out of date but never disturbs the processes using it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sealstore/ref.hpp"
#include "sealstore/value.hpp"

namespace sealstore {

enum class ObjectState : std::uint8_t {
  Unfilled,      // made with make_ref(), not yet filled
  Writing,       // a writer is filling it
  Sealed,        // immutable, fetchable
  ErasePending,  // erased while pinned; freed when the last pin goes
  Abandoned,     // its writer died before sealing, or it was failed (Store::fail; size is
                 // the reason's length); fetch fails with WorkerFailed
};
std::string_view to_string(ObjectState s) noexcept;

// Where a sealed object's bytes are.
enum class Place : std::uint8_t {
  Segment,   // in the segment (and, if it was spilled before, in its spill file too)
  Spill,     // only in its spill file: a fetch restores it
  Restoring  // being read back from its spill file
};
std::string_view to_string(Place p) noexcept;

enum class Role : std::uint8_t { Owner, Worker, Client };
std::string_view to_string(Role r) noexcept;

struct ObjectInfo {
  RemoteRef ref{};
  ObjectState state = ObjectState::Unfilled;
  std::uint64_t size = 0;  // bytes
  ValueType type{};
  Place place = Place::Segment;
  bool spill_file = false;  // a complete spill file holds it (spilling it again frees its space at no cost)
  WorkerId creator = 0;     // the worker that made the object (or the ref it fills): ref.whence()
  std::int32_t creator_pid = 0;
  WorkerId sealed_by = 0;  // the worker that filled it (0 while nobody has); may differ from creator
  std::int32_t sealed_by_pid = 0;
  std::uint64_t created_unix_ns = 0;
  std::vector<WorkerId> pinned_by{};  // workers holding at least one View
  std::uint32_t waiters = 0;          // fetches sleeping until it is sealed
  std::vector<std::string> names{};   // names bound to it
};

struct ProcessInfo {
  std::uint32_t slot = 0;
  std::int32_t pid = 0;
  std::uint64_t start_time = 0;  // /proc/PID/stat field 22, clock ticks after boot
  WorkerId id = 0;
  Role role = Role::Client;
  // It can still use the segment: it holds its slot's lock and (where its
  // pid means something in the asking process's pid namespace) the process
  // of that pid and start time has a thread left.
  bool alive = false;
  // Its pid namespace (the inode of /proc/PID/ns/pid): when it differs from
  // the asking process's, pid is a number in that other namespace.
  std::uint64_t pid_namespace = 0;
  std::uint64_t pinned_objects = 0;
  std::uint64_t pinned_bytes = 0;
  std::uint64_t objects_created = 0;  // objects it sealed
  std::uint64_t cached_bytes = 0;     // its share of SegmentInfo::cached
  std::uint64_t attached_unix_ns = 0;
};

struct SegmentInfo {
  std::string name{};
  std::string path{};  // the backing file
  std::uint32_t layout_version = 0;
  std::uint32_t segment_tag = 0;
  std::uint32_t mode = 0;       // permission bits of the backing file
  std::uint64_t file_size = 0;  // bytes of the backing file
  std::uint64_t capacity = 0;   // bytes for object data
  std::uint64_t used = 0;       // bytes held by objects (each rounded up to its extent)
  // Bytes processes hold ready for their next small objects (each keeps a
  // cache of entries and extents, so that putting and erasing small
  // objects takes no lock: what its erases gave back, up to 1 MiB and a
  // quarter of the segment while a quarter of the segment's bytes and
  // entries are free, else a few KiB). Neither used nor free: capacity =
  // used + cached + free. A process short of space takes them back.
  std::uint64_t cached = 0;
  std::uint64_t largest_free = 0;  // the largest free block: the largest object that fits now
  std::uint64_t free_extents = 0;  // number of free blocks (fragmentation)
  std::uint32_t objects = 0;       // objects (and made refs) in the table
  std::uint32_t max_objects = 0;
  std::uint32_t processes = 0;     // slots in use (alive or not yet reaped)
  std::uint64_t recoveries = 0;    // dead processes cleaned up so far
  std::uint64_t lock_repairs = 0;  // times the store's lock was taken over (a holder that died, or a damaged lock word)
  std::uint64_t created_unix_ns = 0;
  // Spilling (CreateOptions::spill_directory): the segment's own folder of
  // spill files (empty: it does not spill), the watermarks in bytes, the
  // objects whose bytes are only in their spill files and their sizes, and
  // the spills and restores so far.
  std::string spill_directory{};
  std::uint64_t spill_high = 0;
  std::uint64_t spill_low = 0;
  std::uint64_t spilled_objects = 0;
  std::uint64_t spilled_bytes = 0;
  std::uint64_t spills = 0;
  std::uint64_t restores = 0;
  std::uint64_t seal_events = 0;  // seal events published so far (while anyone subscribed)
  std::uint32_t subscribers = 0;  // processes with a Subscription
};

}  // namespace sealstore
