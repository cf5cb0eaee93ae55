#include "alloc/extent_allocator.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <boost/interprocess/offset_ptr.hpp>
#include <boost/intrusive/set.hpp>
#include <new>
#include <utility>
#include <vector>

#include "sealstore/error.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace bi = boost::intrusive;
using VoidPtr = boost::interprocess::offset_ptr<void>;

struct BySizeTag;
struct ByOffsetTag;
using SizeHook = bi::set_base_hook<bi::tag<BySizeTag>, bi::void_pointer<VoidPtr>, bi::link_mode<bi::normal_link>>;
using OffsetHook = bi::set_base_hook<bi::tag<ByOffsetTag>, bi::void_pointer<VoidPtr>, bi::link_mode<bi::normal_link>>;

// One free block of the data region. Nodes live in an array in the
// segment, so the trees' offset pointers stay valid in every process.
struct FreeExtent : SizeHook, OffsetHook {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

struct SizeKey {
  std::uint64_t size;
  std::uint64_t offset;
};
struct BySizeLess {
  static SizeKey key(const FreeExtent& e) { return {e.size, e.offset}; }
  static SizeKey key(const SizeKey& k) { return k; }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    SizeKey x = key(a);
    SizeKey y = key(b);
    return std::pair(x.size, x.offset) < std::pair(y.size, y.offset);
  }
};
struct ByOffsetLess {
  static std::uint64_t key(const FreeExtent& e) { return e.offset; }
  static std::uint64_t key(std::uint64_t k) { return k; }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return key(a) < key(b);
  }
};

using BySize = bi::set<FreeExtent, bi::base_hook<SizeHook>, bi::compare<BySizeLess>>;
using ByOffset = bi::set<FreeExtent, bi::base_hook<OffsetHook>, bi::compare<ByOffsetLess>>;

// The allocator's area: this struct, then node_count FreeExtents, then a
// stack of node_count free node indices, then a stack of max_objects free
// entry indices.
struct AllocState {
  BySize by_size;
  ByOffset by_offset;
  std::uint32_t node_count = 0;
  std::uint32_t node_top = 0;   // free nodes on the node stack
  std::uint32_t entry_top = 0;  // free entries on the entry stack
};

namespace {

std::uint64_t nodes_offset() { return round_up(sizeof(AllocState), 64); }
std::uint32_t node_count_for(std::uint32_t max_objects) { return max_objects + 2; }

}  // namespace

std::uint64_t ExtentAllocator::area_bytes(std::uint32_t max_objects) {
  std::uint64_t n = node_count_for(max_objects);
  return round_up(nodes_offset() + n * sizeof(FreeExtent) + n * 4 + std::uint64_t{max_objects} * 4, kPageSize);
}

AllocState& ExtentAllocator::state() const noexcept { return *static_cast<AllocState*>(area_); }

namespace {

FreeExtent* nodes(void* area) {
  return reinterpret_cast<FreeExtent*>(static_cast<std::byte*>(area) + nodes_offset());  // NOLINT
}
std::uint32_t* node_stack(void* area, std::uint32_t node_count) {
  return reinterpret_cast<std::uint32_t*>(nodes(area) + node_count);  // NOLINT
}

}  // namespace

void ExtentAllocator::rebuild(const Entry* entries) {
  // Read the truth first, so a corrupt table throws before anything changes.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> used;
  std::vector<std::uint32_t> free_entries;
  for (std::uint32_t i = 0; i < max_objects_; ++i) {
    const Entry& e = entries[i];  // NOLINT
    auto st = static_cast<EntryState>(load(e.state));
    if (st == EntryState::Free) {
      free_entries.push_back(i);
    } else if (holds_data(st) && e.size > 0) {
      if (e.offset % kDataAlign != 0 || e.offset > capacity_ || e.size > capacity_ - e.offset) {
        throw Error(Errc::Corrupt, fmt::format("object table entry {} ({} bytes at offset {}) lies outside the "
                                               "{}-byte data region",
                                               i, e.size, e.offset, capacity_));
      }
      used.emplace_back(e.offset, footprint(e.size));
    } else if (static_cast<std::uint32_t>(st) > static_cast<std::uint32_t>(EntryState::Abandoned)) {
      throw Error(Errc::Corrupt,
                  fmt::format("object table entry {} has unknown state {}", i, static_cast<std::uint32_t>(st)));
    }
  }
  std::sort(used.begin(), used.end());
  for (std::size_t k = 1; k < used.size(); ++k) {
    if (used[k - 1].first + used[k - 1].second > used[k].first) {
      throw Error(Errc::Corrupt, fmt::format("two objects overlap in the data region at offset {}", used[k].first));
    }
  }

  std::uint32_t n = node_count_for(max_objects_);
  auto* st = new (area_) AllocState();  // the old trees are garbage: start afresh
  st->node_count = n;
  std::uint32_t* stack = node_stack(area_, n);
  for (std::uint32_t k = 0; k < n; ++k) stack[k] = n - 1 - k;  // NOLINT
  st->node_top = n;
  std::uint32_t* estack = stack + n;  // NOLINT
  st->entry_top = 0;
  for (auto it = free_entries.rbegin(); it != free_entries.rend(); ++it) estack[st->entry_top++] = *it;  // NOLINT

  std::uint64_t cursor = 0;
  for (auto [off, len] : used) {
    if (off > cursor) insert_free(cursor, off - cursor);
    cursor = off + len;
  }
  if (capacity_ > cursor) insert_free(cursor, capacity_ - cursor);
}

void ExtentAllocator::insert_free(std::uint64_t offset, std::uint64_t bytes) {
  AllocState& st = state();
  std::uint32_t idx = node_stack(area_, st.node_count)[--st.node_top];  // NOLINT
  FreeExtent* node = new (nodes(area_) + idx) FreeExtent();             // NOLINT
  node->offset = offset;
  node->size = bytes;
  st.by_size.insert(*node);
  st.by_offset.insert(*node);
}

std::optional<std::uint64_t> ExtentAllocator::allocate(std::uint64_t bytes) {
  AllocState& st = state();
  auto it = st.by_size.lower_bound(SizeKey{bytes, 0}, BySizeLess{});
  if (it == st.by_size.end()) return std::nullopt;
  FreeExtent& node = *it;
  std::uint64_t offset = node.offset;
  st.by_size.erase(it);
  if (node.size == bytes) {
    st.by_offset.erase(st.by_offset.iterator_to(node));
    node_stack(area_, st.node_count)[st.node_top++] = static_cast<std::uint32_t>(&node - nodes(area_));  // NOLINT
  } else {
    // Take the front: the node keeps its place in offset order.
    node.offset += bytes;
    node.size -= bytes;
    st.by_size.insert(node);
  }
  return offset;
}

void ExtentAllocator::release(std::uint64_t offset, std::uint64_t bytes) {
  AllocState& st = state();
  auto next = st.by_offset.lower_bound(offset, ByOffsetLess{});
  FreeExtent* merged = nullptr;
  if (next != st.by_offset.begin()) {
    auto prev = std::prev(next);
    if (prev->offset + prev->size == offset) {
      merged = &*prev;
      st.by_size.erase(st.by_size.iterator_to(*merged));
      merged->size += bytes;
    }
  }
  if (next != st.by_offset.end() && offset + bytes == next->offset) {
    FreeExtent& after = *next;
    st.by_size.erase(st.by_size.iterator_to(after));
    if (merged != nullptr) {
      merged->size += after.size;
      st.by_offset.erase(next);
      node_stack(area_, st.node_count)[st.node_top++] = static_cast<std::uint32_t>(&after - nodes(area_));  // NOLINT
    } else {
      after.offset = offset;  // still between its neighbours: order holds
      after.size += bytes;
      merged = &after;
    }
  }
  if (merged != nullptr) {
    st.by_size.insert(*merged);
  } else {
    insert_free(offset, bytes);
  }
}

std::optional<std::uint32_t> ExtentAllocator::pop_entry() {
  AllocState& st = state();
  if (st.entry_top == 0) return std::nullopt;
  return node_stack(area_, st.node_count)[st.node_count + --st.entry_top];  // NOLINT
}

void ExtentAllocator::push_entry(std::uint32_t index) {
  AllocState& st = state();
  node_stack(area_, st.node_count)[st.node_count + st.entry_top++] = index;  // NOLINT
}

std::uint64_t ExtentAllocator::largest_free() const {
  const AllocState& st = state();
  return st.by_size.empty() ? 0 : st.by_size.rbegin()->size;
}

std::uint64_t ExtentAllocator::free_extents() const { return state().by_size.size(); }

}  // namespace sealstore::detail
