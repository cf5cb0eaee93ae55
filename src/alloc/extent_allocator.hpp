// Free-space bookkeeping for the data region, and the stack of free object
// table entries. All of it is derived state: the object table is the truth,
// and rebuild() recomputes everything here from it (after a process died
// holding the lock, or after damage was found). Not thread-safe: callers
// hold the segment lock.
//
// A two-level segregated fit allocator (TLSF, Masmano et al. 2004): every
// block of the data region, free or used, has a node; nodes link to their
// neighbours in address order (to coalesce on free) and free nodes to the
// other free blocks of their size class, found through two levels of
// bitmaps in O(1). Links are node indices, never pointers, and every one is
// checked against the node count and against its neighbour's links before
// it is followed: a peer that scribbles over this area gets Error(Corrupt)
// out of the next call, never a write outside the area, and no walk is
// longer than a fixed bound.
#pragma once

#include <cstdint>
#include <optional>

#include "segment/layout.hpp"

namespace sealstore::detail {

struct AllocState;
struct Block;

class ExtentAllocator {
 public:
  // Bytes the allocator's area needs for a table of max_objects entries.
  static std::uint64_t area_bytes(std::uint32_t max_objects);

  ExtentAllocator() = default;
  // damage_flag, if given, is set to 1 before any Error(Corrupt) is thrown:
  // the segment's repair flag, so that the next locker rebuilds this area.
  ExtentAllocator(void* area, std::uint64_t capacity, std::uint32_t max_objects,
                  std::uint32_t* damage_flag = nullptr) noexcept
      : area_(static_cast<std::byte*>(area)), capacity_(capacity), max_objects_(max_objects), damage_(damage_flag) {}

  // A run of the data region held by one entry: its offset, bytes and the
  // node that tracks it.
  struct Extent {
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
    std::uint32_t block = kNoBlock;
  };

  // Recomputes the free space and free entries from the table, and each
  // entry's `block`. A damaged entry (an invalid head word, an extent
  // misaligned or out of range, or overlapping an earlier one) is counted
  // neither free nor holding: the rest of the store goes on working.
  void rebuild(Entry* entries);

  // A free run of `bytes` (a multiple of kDataAlign, > 0), or nullopt if
  // none is left. Throws Error(Corrupt) on damage.
  std::optional<Extent> allocate(std::uint64_t bytes);
  // Cuts the used extent e into its first `first` bytes (returned in e) and
  // the rest (the result, a used extent of its own).
  Extent split(Extent& e, std::uint64_t first);
  // Gives e back, coalescing it with free neighbours. Throws Error(Corrupt)
  // if e is not a used block of the allocator.
  void release(const Extent& e);

  // The lowest free table entry, or nullopt. Throws Error(Corrupt) when the
  // stack holds an index out of range.
  std::optional<std::uint32_t> pop_entry();
  void push_entry(std::uint32_t index);

  std::uint64_t free_entries() const;
  std::uint64_t free_bytes() const;
  std::uint64_t free_blocks() const;
  // The largest free block (looked for among a bounded number of the
  // blocks of the largest size class present).
  std::uint64_t largest_free() const;

 private:
  AllocState& state() const;
  Block& node(std::uint32_t i) const;
  std::uint32_t* node_stack() const;
  std::uint32_t* entry_stack() const;
  std::uint32_t node_count() const;
  std::uint32_t new_node();
  void free_node(std::uint32_t i);
  void insert_free(std::uint32_t i);
  void remove_free(std::uint32_t i);
  std::optional<std::uint32_t> find_free(std::uint64_t bytes);
  [[noreturn, gnu::cold, gnu::noinline]] void damaged(const char* what, std::uint64_t a, std::uint64_t b) const;

  std::byte* area_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint32_t max_objects_ = 0;
  std::uint32_t* damage_ = nullptr;
};

}  // namespace sealstore::detail
