// Free-space bookkeeping for the data region and the free list of object
// table entries. All of it is derived state: the object table is the truth,
// and rebuild() recomputes everything here from it after a process died
// holding the lock. Not thread-safe: callers hold the segment lock.
#pragma once

#include <cstdint>
#include <optional>

#include "segment/layout.hpp"

namespace sealstore::detail {

struct AllocState;

class ExtentAllocator {
 public:
  // Bytes the allocator's area needs for a table of max_objects entries.
  static std::uint64_t area_bytes(std::uint32_t max_objects);

  ExtentAllocator() = default;
  ExtentAllocator(void* area, std::uint64_t capacity, std::uint32_t max_objects) noexcept
      : area_(area), capacity_(capacity), max_objects_(max_objects) {}

  // Recomputes free space and free entries from the table. Throws
  // Error(Corrupt) if entries overlap or lie outside the data region.
  void rebuild(const Entry* entries);

  // Best fit, lowest offset among equals: reuses space that was written
  // before. `bytes` is a multiple of kDataAlign, > 0.
  std::optional<std::uint64_t> allocate(std::uint64_t bytes);
  void release(std::uint64_t offset, std::uint64_t bytes);

  std::optional<std::uint32_t> pop_entry();
  void push_entry(std::uint32_t index);

  std::uint64_t largest_free() const;
  std::uint64_t free_extents() const;

 private:
  AllocState& state() const noexcept;
  void insert_free(std::uint64_t offset, std::uint64_t bytes);

  void* area_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint32_t max_objects_ = 0;
};

// Bytes an object of `size` bytes takes in the data region.
inline std::uint64_t footprint(std::uint64_t size) { return round_up(size, kDataAlign); }

// An Abandoned entry holds data only when Store::fail() stored a reason in
// it (size > 0); one whose writer died has had its data released (size 0).
inline bool holds_data(EntryState s) {
  return s == EntryState::Writing || s == EntryState::Sealed || s == EntryState::ErasePending ||
         s == EntryState::Abandoned;
}

}  // namespace sealstore::detail
