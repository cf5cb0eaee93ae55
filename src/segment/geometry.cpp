// The segment's geometry: a pure function of (capacity, max_objects,
// max_names), recomputed by every attaching process and compared with the
// header, and the fingerprint of the structs two builds must agree on.
#include <fmt/format.h>

#include "alloc/extent_allocator.hpp"
#include "sealstore/error.hpp"
#include "segment/layout.hpp"
#include "segment/segment.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

Geometry compute_geometry(std::uint64_t capacity, std::uint32_t max_objects, std::uint32_t max_names) {
  constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 46U;  // 64 TiB
  if (capacity == 0 || capacity > kMaxCapacity) {
    throw Error(Errc::InvalidArgument, fmt::format("capacity {} bytes is out of range (1 byte to 64 TiB)", capacity));
  }
  if (max_objects == 0 || max_objects > (1U << 24U)) {
    throw Error(Errc::InvalidArgument, fmt::format("max_objects {} is out of range (1 to 16777216)", max_objects));
  }
  if (max_names == 0 || max_names > (1U << 20U)) {
    throw Error(Errc::InvalidArgument, fmt::format("max_names {} is out of range (1 to 1048576)", max_names));
  }
  Geometry g{};
  g.capacity = round_up(capacity, kPageSize);
  g.max_objects = max_objects;
  g.max_names = max_names;
  g.name_slots = 16;
  while (g.name_slots < 2 * max_names) g.name_slots *= 2;
  g.pin_words = kMaxProcesses / 64;
  g.slots_offset = kPageSize;
  g.stats_offset = round_up(g.slots_offset + sizeof(ProcessSlot) * kMaxProcesses, kPageSize);
  g.entries_offset = round_up(g.stats_offset + sizeof(SlotStats) * kMaxProcesses * kStatLines, kPageSize);
  g.pins_offset = round_up(g.entries_offset + sizeof(Entry) * std::uint64_t{max_objects}, kPageSize);
  g.names_offset = round_up(g.pins_offset + sizeof(PinMask) * std::uint64_t{max_objects}, kPageSize);
  g.events_offset = round_up(g.names_offset + sizeof(NameSlot) * std::uint64_t{g.name_slots}, kPageSize);
  g.alloc_offset = round_up(g.events_offset + sizeof(EventSlot) * std::uint64_t{kEventSlots}, kPageSize);
  g.alloc_bytes = ExtentAllocator::area_bytes(max_objects);
  g.data_offset = round_up(g.alloc_offset + g.alloc_bytes, kDataRegionAlign);
  g.file_size = g.data_offset + g.capacity;
  return g;
}

std::uint64_t layout_fingerprint() {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h = (h ^ ((v >> (8U * static_cast<unsigned>(i))) & 0xffU)) * 0x100000001b3ULL;
    }
  };
  mix(sizeof(Header));
  mix(offsetof(Header, lock_word));
  mix(offsetof(Header, live_slots));
  mix(sizeof(Entry));
  mix(offsetof(Entry, block));
  mix(offsetof(Entry, shape));
  mix(sizeof(ProcessSlot));
  mix(sizeof(SlotStats));
  mix(sizeof(NameSlot));
  mix(sizeof(PinMask));
  mix(sizeof(EventSlot));
  mix(kEventSlots);
  mix(offsetof(Header, spill_dir));
  mix(offsetof(Header, event_head));
  mix(offsetof(Entry, touched));
  mix(kMaxProcesses);
  mix(kStatLines);
  mix(kMaxRank);
  mix(ExtentAllocator::area_bytes(1000));
  return h;
}

Geometry validate_header(const Header& h, std::uint64_t file_size, std::string_view name) {
  std::uint64_t magic = load(h.magic, std::memory_order_acquire);
  if (magic == 0) {
    throw Error(Errc::Corrupt, fmt::format("segment '{}' was never initialised (its creator died while creating it); "
                                           "remove it",
                                           name));
  }
  if (magic != kMagic) {
    throw Error(Errc::IncompatibleSegment,
                fmt::format("'{}' is not a sealstore segment of this version (magic {:#018x})", name, magic));
  }
  // Read once, each: a peer may be rewriting the header as we look.
  std::uint32_t version = load(h.layout_version, std::memory_order_relaxed);
  if (version != kLayoutVersion) {
    throw Error(
        Errc::IncompatibleSegment,
        fmt::format("segment '{}' has layout version {}, this build reads version {}", name, version, kLayoutVersion));
  }
  std::uint64_t fingerprint = load(h.fingerprint, std::memory_order_relaxed);
  if (load(h.header_bytes, std::memory_order_relaxed) != sizeof(Header) || fingerprint != layout_fingerprint()) {
    throw Error(Errc::IncompatibleSegment,
                fmt::format("segment '{}' was made by a build with another layout (fingerprint {:#x}, ours {:#x})",
                            name, fingerprint, layout_fingerprint()));
  }
  Geometry g{};
  try {
    g = compute_geometry(load(h.capacity, std::memory_order_relaxed), load(h.max_objects, std::memory_order_relaxed),
                         load(h.max_names, std::memory_order_relaxed));
  } catch (const Error& e) {
    throw Error(Errc::Corrupt, fmt::format("segment '{}' has a corrupt header: {}", name, e.what()));
  }
  bool ok = g.capacity == load(h.capacity, std::memory_order_relaxed) &&
            g.name_slots == load(h.name_slots, std::memory_order_relaxed) &&
            g.pin_words == load(h.pin_words, std::memory_order_relaxed) &&
            g.slots_offset == load(h.slots_offset, std::memory_order_relaxed) &&
            g.stats_offset == load(h.stats_offset, std::memory_order_relaxed) &&
            g.entries_offset == load(h.entries_offset, std::memory_order_relaxed) &&
            g.pins_offset == load(h.pins_offset, std::memory_order_relaxed) &&
            g.names_offset == load(h.names_offset, std::memory_order_relaxed) &&
            g.events_offset == load(h.events_offset, std::memory_order_relaxed) &&
            g.alloc_offset == load(h.alloc_offset, std::memory_order_relaxed) &&
            g.alloc_bytes == load(h.alloc_bytes, std::memory_order_relaxed) &&
            g.data_offset == load(h.data_offset, std::memory_order_relaxed) &&
            g.file_size == load(h.file_size, std::memory_order_relaxed);
  if (!ok)
    throw Error(Errc::Corrupt, fmt::format("segment '{}' has a corrupt header: its geometry does not add up", name));
  if (g.file_size != file_size) {
    throw Error(Errc::Corrupt,
                fmt::format("segment '{}' header says {} bytes but the file has {}", name, g.file_size, file_size));
  }
  g.segment_tag = load(h.segment_tag, std::memory_order_relaxed);
  return g;
}

}  // namespace sealstore::detail
