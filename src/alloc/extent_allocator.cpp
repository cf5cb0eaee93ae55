#include "alloc/extent_allocator.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <bit>
#include <utility>
#include <vector>

#include "sealstore/error.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

// Sizes are counted in units of kDataAlign bytes. Sizes under 16 units each
// have a list; above, each power of two is split into 16 lists.
constexpr std::uint32_t kSubBits = 4;
constexpr std::uint32_t kSub = 1U << kSubBits;
constexpr std::uint32_t kSubMask = (1U << kSub) - 1;  // the bits of a level's map that name lists
constexpr std::uint32_t kLevels = 40;                 // enough for 2^46 bytes / 64 = 2^40 units
constexpr std::uint32_t kNone = 0xffffffffU;
// The longest walk of one list (the fallback of allocate, largest_free).
constexpr std::uint32_t kMaxWalk = 256;

enum class NodeState : std::uint32_t { Unused = 0, Free = 1, Used = 2 };

struct Index {
  std::uint32_t level;
  std::uint32_t sub;
};

// The list a block of u units belongs in.
Index list_of(std::uint64_t u) {
  if (u < kSub) return {0, static_cast<std::uint32_t>(u)};
  auto msb = static_cast<std::uint32_t>(63 - std::countl_zero(u));
  return {msb - kSubBits + 1, static_cast<std::uint32_t>((u >> (msb - kSubBits)) & (kSub - 1))};
}

// The first list whose every block holds at least u units.
Index list_at_least(std::uint64_t u) {
  if (u >= kSub) {
    auto msb = static_cast<std::uint32_t>(63 - std::countl_zero(u));
    u += (std::uint64_t{1} << (msb - kSubBits)) - 1;
  }
  return list_of(u);
}

}  // namespace

// One block of the data region.
struct Block {
  std::uint64_t offset;     // bytes into the data region
  std::uint64_t bytes;      // a multiple of kDataAlign
  std::uint32_t prev_phys;  // the block just below, or kNone
  std::uint32_t next_phys;  // the block just above, or kNone
  std::uint32_t prev_free;  // in its free list (free blocks only)
  std::uint32_t next_free;
  std::uint32_t state;  // NodeState
  std::uint32_t reserved;
};
static_assert(sizeof(Block) == 40);

// The allocator's area: this struct, then node_count Blocks, then a stack
// of node_count unused node indices, then a stack of max_objects free
// entry indices.
struct AllocState {
  std::uint32_t node_count;
  std::uint32_t node_top;   // unused nodes on the node stack
  std::uint32_t entry_top;  // free entries on the entry stack
  std::uint32_t reserved;
  std::uint64_t free_bytes;
  std::uint64_t free_blocks;
  std::uint64_t level_map;             // bit per level with a non-empty list
  std::uint32_t sub_map[kLevels];      // bit per non-empty list of the level
  std::uint32_t heads[kLevels][kSub];  // first block of each list, or kNone
};

namespace {

std::uint64_t nodes_offset() { return round_up(sizeof(AllocState), 64); }
std::uint32_t node_count_for(std::uint32_t max_objects) { return 2 * max_objects + 2; }

// Fields of the area are read and written one at a time through these:
// a peer may scribble concurrently, and a value checked must be the value
// used.
template <class T>
T rd(const T& f) {
  return load(f, std::memory_order_relaxed);
}
template <class T>
void wr(T& f, T v) {
  store(f, v, std::memory_order_relaxed);
}

}  // namespace

std::uint64_t ExtentAllocator::area_bytes(std::uint32_t max_objects) {
  std::uint64_t n = node_count_for(max_objects);
  return round_up(nodes_offset() + n * sizeof(Block) + n * 4 + std::uint64_t{max_objects} * 4, kPageSize);
}

inline AllocState& ExtentAllocator::state() const { return *reinterpret_cast<AllocState*>(area_); }  // NOLINT

inline std::uint32_t ExtentAllocator::node_count() const { return node_count_for(max_objects_); }

inline Block& ExtentAllocator::node(std::uint32_t i) const {
  if (i >= node_count()) damaged("a link to block", i, node_count());
  return reinterpret_cast<Block*>(area_ + nodes_offset())[i];  // NOLINT
}

inline std::uint32_t* ExtentAllocator::node_stack() const {
  return reinterpret_cast<std::uint32_t*>(area_ + nodes_offset() +
                                          std::uint64_t{node_count()} * sizeof(Block));  // NOLINT
}

inline std::uint32_t* ExtentAllocator::entry_stack() const { return node_stack() + node_count(); }  // NOLINT

void ExtentAllocator::damaged(const char* what, std::uint64_t a, std::uint64_t b) const {
  if (damage_ != nullptr) store(*damage_, 1U);
  throw Error(Errc::Corrupt, fmt::format("the allocator's state is damaged: {} ({} / {})", what, a, b));
}

std::uint32_t ExtentAllocator::new_node() {
  AllocState& st = state();
  std::uint32_t top = rd(st.node_top);
  if (top == 0 || top > node_count()) damaged("no unused block node", top, node_count());
  std::uint32_t i = rd(node_stack()[top - 1]);  // NOLINT
  if (i >= node_count()) damaged("an unused block node out of range", i, node_count());
  wr(st.node_top, top - 1);
  return i;
}

void ExtentAllocator::free_node(std::uint32_t i) {
  AllocState& st = state();
  std::uint32_t top = rd(st.node_top);
  if (top >= node_count()) damaged("the unused node stack overflows", top, node_count());
  wr(node(i).state, static_cast<std::uint32_t>(NodeState::Unused));
  wr(node_stack()[top], i);  // NOLINT
  wr(st.node_top, top + 1);
}

void ExtentAllocator::insert_free(std::uint32_t i) {
  AllocState& st = state();
  Block& b = node(i);
  std::uint64_t bytes = rd(b.bytes);
  Index x = list_of(bytes / kDataAlign);
  if (x.level >= kLevels) damaged("a block too large", bytes, capacity_);
  std::uint32_t head = rd(st.heads[x.level][x.sub]);  // NOLINT
  wr(b.prev_free, kNone);
  wr(b.next_free, head);
  if (head != kNone) wr(node(head).prev_free, i);
  wr(st.heads[x.level][x.sub], i);                                                // NOLINT
  wr(st.sub_map[x.level], (rd(st.sub_map[x.level]) & kSubMask) | (1U << x.sub));  // NOLINT
  wr(st.level_map, rd(st.level_map) | (std::uint64_t{1} << x.level));
  wr(b.state, static_cast<std::uint32_t>(NodeState::Free));
  wr(st.free_bytes, rd(st.free_bytes) + bytes);
  wr(st.free_blocks, rd(st.free_blocks) + 1);
}

void ExtentAllocator::remove_free(std::uint32_t i) {
  AllocState& st = state();
  Block& b = node(i);
  if (rd(b.state) != static_cast<std::uint32_t>(NodeState::Free)) damaged("a listed block is not free", i, rd(b.state));
  std::uint64_t bytes = rd(b.bytes);
  Index x = list_of(bytes / kDataAlign);
  if (x.level >= kLevels) damaged("a block too large", bytes, capacity_);
  std::uint32_t prev = rd(b.prev_free);
  std::uint32_t next = rd(b.next_free);
  if (prev != kNone) {
    Block& p = node(prev);
    if (rd(p.next_free) != i) damaged("a free list's links disagree", prev, i);
    wr(p.next_free, next);
  } else {
    if (rd(st.heads[x.level][x.sub]) != i) damaged("a free list's head is not its first block", x.level, i);  // NOLINT
    wr(st.heads[x.level][x.sub], next);                                                                       // NOLINT
    if (next == kNone) {
      std::uint32_t sub = rd(st.sub_map[x.level]) & kSubMask & ~(1U << x.sub);  // NOLINT
      wr(st.sub_map[x.level], sub);                                             // NOLINT
      if (sub == 0) wr(st.level_map, rd(st.level_map) & ~(std::uint64_t{1} << x.level));
    }
  }
  if (next != kNone) {
    Block& n = node(next);
    if (rd(n.prev_free) != i) damaged("a free list's links disagree", i, next);
    wr(n.prev_free, prev);
  }
  wr(st.free_bytes, rd(st.free_bytes) - std::min(bytes, rd(st.free_bytes)));
  wr(st.free_blocks, rd(st.free_blocks) - std::min<std::uint64_t>(1, rd(st.free_blocks)));
}

std::optional<std::uint32_t> ExtentAllocator::find_free(std::uint64_t bytes) {
  AllocState& st = state();
  std::uint64_t units = bytes / kDataAlign;
  Index x = list_at_least(units);
  if (x.level < kLevels) {
    std::uint32_t subs = rd(st.sub_map[x.level]) & kSubMask & (~0U << x.sub);  // NOLINT
    std::uint32_t level = x.level;
    if (subs == 0) {
      std::uint64_t levels = x.level + 1 < 64 ? rd(st.level_map) & (~std::uint64_t{0} << (x.level + 1)) : 0;
      if (levels != 0) {
        level = static_cast<std::uint32_t>(std::countr_zero(levels));
        if (level >= kLevels) damaged("the level map names a level out of range", level, kLevels);
        subs = rd(st.sub_map[level]) & kSubMask;  // NOLINT
      }
    }
    if (subs != 0) {
      auto sub = static_cast<std::uint32_t>(std::countr_zero(subs));
      std::uint32_t head = rd(st.heads[level][sub]);  // NOLINT
      if (head == kNone) damaged("a list marked non-empty is empty", level, sub);
      return head;
    }
  }
  // Every block of the list a size falls in is at least as large as the
  // list's lower bound, not necessarily as `bytes`: look through it.
  Index exact = list_of(units);
  if (exact.level >= kLevels) return std::nullopt;
  std::uint32_t i = rd(st.heads[exact.level][exact.sub]);  // NOLINT
  for (std::uint32_t walked = 0; i != kNone && walked < kMaxWalk; ++walked) {
    Block& b = node(i);
    if (rd(b.bytes) >= bytes) return i;
    i = rd(b.next_free);
  }
  return std::nullopt;
}

std::optional<ExtentAllocator::Extent> ExtentAllocator::allocate(std::uint64_t bytes) {
  if (bytes == 0 || bytes % kDataAlign != 0 || bytes > capacity_) return std::nullopt;
  std::optional<std::uint32_t> found = find_free(bytes);
  if (!found) return std::nullopt;
  std::uint32_t i = *found;
  Block& b = node(i);
  std::uint64_t have = rd(b.bytes);
  std::uint64_t offset = rd(b.offset);
  if (have < bytes || have % kDataAlign != 0 || offset > capacity_ || have > capacity_ - offset) {
    damaged("a free block does not fit the data region", offset, have);
  }
  remove_free(i);
  if (have > bytes) {
    std::uint32_t r = new_node();
    Block& rest = node(r);
    std::uint32_t next = rd(b.next_phys);
    wr(rest.offset, offset + bytes);
    wr(rest.bytes, have - bytes);
    wr(rest.prev_phys, i);
    wr(rest.next_phys, next);
    if (next != kNone) wr(node(next).prev_phys, r);
    wr(b.next_phys, r);
    wr(b.bytes, bytes);
    insert_free(r);
  }
  wr(b.state, static_cast<std::uint32_t>(NodeState::Used));
  return Extent{offset, bytes, i};
}

ExtentAllocator::Extent ExtentAllocator::split(Extent& e, std::uint64_t first) {
  Block& b = node(e.block);
  if (rd(b.state) != static_cast<std::uint32_t>(NodeState::Used) || rd(b.offset) != e.offset ||
      rd(b.bytes) != e.bytes || first == 0 || first >= e.bytes || first % kDataAlign != 0) {
    damaged("a block to split is not the extent", e.block, e.offset);
  }
  std::uint32_t r = new_node();
  Block& rest = node(r);
  std::uint32_t next = rd(b.next_phys);
  wr(rest.offset, e.offset + first);
  wr(rest.bytes, e.bytes - first);
  wr(rest.prev_phys, e.block);
  wr(rest.next_phys, next);
  wr(rest.state, static_cast<std::uint32_t>(NodeState::Used));
  if (next != kNone) wr(node(next).prev_phys, r);
  wr(b.next_phys, r);
  wr(b.bytes, first);
  Extent out{e.offset + first, e.bytes - first, r};
  e.bytes = first;
  return out;
}

void ExtentAllocator::release(const Extent& e) {
  std::uint32_t i = e.block;
  Block& b = node(i);
  if (rd(b.state) != static_cast<std::uint32_t>(NodeState::Used) || rd(b.offset) != e.offset ||
      rd(b.bytes) != e.bytes) {
    damaged("a released extent is not a used block", e.offset, e.bytes);
  }
  std::uint64_t offset = e.offset;
  std::uint64_t bytes = e.bytes;
  std::uint32_t next = rd(b.next_phys);
  if (next != kNone) {
    Block& n = node(next);
    if (rd(n.prev_phys) != i || rd(n.offset) != offset + bytes) damaged("neighbouring blocks disagree", i, next);
    if (rd(n.state) == static_cast<std::uint32_t>(NodeState::Free)) {
      remove_free(next);
      bytes += rd(n.bytes);
      std::uint32_t after = rd(n.next_phys);
      if (after != kNone) {
        if (rd(node(after).prev_phys) != next) damaged("neighbouring blocks disagree", next, after);
        wr(node(after).prev_phys, i);
      }
      wr(b.next_phys, after);
      free_node(next);
    }
  }
  std::uint32_t prev = rd(b.prev_phys);
  if (prev != kNone) {
    Block& p = node(prev);
    if (rd(p.next_phys) != i || rd(p.offset) + rd(p.bytes) != offset) damaged("neighbouring blocks disagree", prev, i);
    if (rd(p.state) == static_cast<std::uint32_t>(NodeState::Free)) {
      remove_free(prev);
      bytes += rd(p.bytes);
      offset = rd(p.offset);
      std::uint32_t after = rd(b.next_phys);
      if (after != kNone) wr(node(after).prev_phys, prev);
      wr(p.next_phys, after);
      free_node(i);
      i = prev;
    }
  }
  Block& merged = node(i);
  wr(merged.offset, offset);
  wr(merged.bytes, bytes);
  insert_free(i);
}

std::optional<std::uint32_t> ExtentAllocator::pop_entry() {
  AllocState& st = state();
  std::uint32_t top = rd(st.entry_top);
  if (top == 0) return std::nullopt;
  if (top > max_objects_) damaged("the free entry stack overflows", top, max_objects_);
  std::uint32_t i = rd(entry_stack()[top - 1]);  // NOLINT
  if (i >= max_objects_) damaged("a free entry out of range", i, max_objects_);
  wr(st.entry_top, top - 1);
  return i;
}

void ExtentAllocator::push_entry(std::uint32_t index) {
  AllocState& st = state();
  std::uint32_t top = rd(st.entry_top);
  if (top >= max_objects_) damaged("the free entry stack overflows", top, max_objects_);
  wr(entry_stack()[top], index);  // NOLINT
  wr(st.entry_top, top + 1);
}

std::uint64_t ExtentAllocator::free_entries() const {
  return std::min<std::uint64_t>(rd(state().entry_top), max_objects_);
}
std::uint64_t ExtentAllocator::free_bytes() const { return std::min(rd(state().free_bytes), capacity_); }
std::uint64_t ExtentAllocator::free_blocks() const { return rd(state().free_blocks); }

std::uint64_t ExtentAllocator::largest_free() const {
  const AllocState& st = state();
  std::uint64_t levels = rd(st.level_map);
  if (levels == 0) return 0;
  auto level = static_cast<std::uint32_t>(63 - std::countl_zero(levels));
  if (level >= kLevels) return 0;
  std::uint32_t subs = rd(st.sub_map[level]) & kSubMask;  // NOLINT
  if (subs == 0) return 0;
  auto sub = static_cast<std::uint32_t>(31 - std::countl_zero(subs));
  std::uint64_t best = 0;
  std::uint32_t i = rd(st.heads[level][sub]);  // NOLINT
  for (std::uint32_t walked = 0; i != kNone && i < node_count() && walked < kMaxWalk; ++walked) {
    const Block& b = reinterpret_cast<const Block*>(area_ + nodes_offset())[i];  // NOLINT
    best = std::max(best, rd(b.bytes));
    i = rd(b.next_free);
  }
  return std::min(best, capacity_);
}

void ExtentAllocator::rebuild(Entry* entries) {
  // Read the truth first, so a damaged table throws before anything changes.
  struct Used {
    std::uint64_t offset, bytes;
    std::uint32_t entry;
  };
  std::vector<Used> used;
  std::vector<std::uint32_t> free_entries;
  for (std::uint32_t i = 0; i < max_objects_; ++i) {
    Entry& e = entries[i];  // NOLINT
    std::uint64_t w = load(e.word);
    if (!word_valid(w)) continue;  // damaged: neither free nor holding anything
    EntryState s = word_state(w);
    if (s == EntryState::Free) {
      free_entries.push_back(i);
      continue;
    }
    std::uint64_t bytes = rd(e.extent);
    if (!holds_extent(s) || bytes == 0) continue;
    std::uint64_t offset = rd(e.offset);
    if (offset % kDataAlign != 0 || bytes % kDataAlign != 0 || offset > capacity_ || bytes > capacity_ - offset) {
      continue;  // damaged: its extent is not counted, and fetches of it say Corrupt
    }
    used.push_back({offset, bytes, i});
  }
  std::sort(used.begin(), used.end(), [](const Used& a, const Used& b) { return a.offset < b.offset; });
  // Two entries that claim the same bytes: the first keeps them.
  std::size_t kept = 0;
  for (std::size_t k = 0; k < used.size(); ++k) {
    if (kept > 0 && used[kept - 1].offset + used[kept - 1].bytes > used[k].offset) continue;
    used[kept++] = used[k];
  }
  used.resize(kept);

  // Start afresh: every node unused, every list empty.
  AllocState& st = state();
  std::uint32_t n = node_count();
  wr(st.node_count, n);
  wr(st.free_bytes, std::uint64_t{0});
  wr(st.free_blocks, std::uint64_t{0});
  wr(st.level_map, std::uint64_t{0});
  for (std::uint32_t l = 0; l < kLevels; ++l) {
    wr(st.sub_map[l], 0U);                                               // NOLINT
    for (std::uint32_t s = 0; s < kSub; ++s) wr(st.heads[l][s], kNone);  // NOLINT
  }
  for (std::uint32_t k = 0; k < n; ++k) {
    wr(node_stack()[k], n - 1 - k);  // NOLINT: pops give 0, 1, 2, ...
    wr(node(k).state, static_cast<std::uint32_t>(NodeState::Unused));
  }
  wr(st.node_top, n);
  wr(st.entry_top, 0U);
  std::reverse(free_entries.begin(), free_entries.end());
  for (std::uint32_t i : free_entries) push_entry(i);

  // Tile the data region: a used block per entry, a free block per gap.
  std::uint32_t last = kNone;
  auto append = [&](std::uint64_t offset, std::uint64_t bytes, bool free) {
    std::uint32_t k = new_node();
    Block& b = node(k);
    wr(b.offset, offset);
    wr(b.bytes, bytes);
    wr(b.prev_phys, last);
    wr(b.next_phys, kNone);
    if (last != kNone) wr(node(last).next_phys, k);
    last = k;
    if (free) {
      insert_free(k);
    } else {
      wr(b.state, static_cast<std::uint32_t>(NodeState::Used));
    }
    return k;
  };
  std::uint64_t cursor = 0;
  for (const Used& u : used) {
    if (u.offset > cursor) append(cursor, u.offset - cursor, true);
    std::uint32_t k = append(u.offset, u.bytes, false);
    store(entries[u.entry].block, k, std::memory_order_relaxed);  // NOLINT
    cursor = u.offset + u.bytes;
  }
  if (capacity_ > cursor) append(cursor, capacity_ - cursor, true);
}

}  // namespace sealstore::detail
