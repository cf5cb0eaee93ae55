// Introspection: what memstat and the tests see. Read without the lock,
// field by field, each bounded: a snapshot may be a moment out of date, and
// a damaged segment shows damaged numbers, never a crash.
#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

std::vector<std::uint32_t> live_slots(const Header& h) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t w = 0; w < kMaxProcesses / 64; ++w) {
    std::uint64_t bits = load(h.live_slots[w], std::memory_order_relaxed);  // NOLINT
    while (bits != 0) {
      out.push_back(w * 64 + static_cast<std::uint32_t>(std::countr_zero(bits)));
      bits &= bits - 1;
    }
  }
  return out;
}

}  // namespace

SegmentInfo Session::info() const {
  const Header& h = header();
  const Geometry& g = geo();
  SegmentInfo i;
  i.name = name_;
  i.path = map_.path();
  i.layout_version = kLayoutVersion;
  i.segment_tag = g.segment_tag;
  i.mode = field(h.mode) & 07777U;
  i.file_size = g.file_size;
  i.capacity = g.capacity;
  i.max_objects = g.max_objects;
  // Used is what objects hold: neither free in the allocator nor cached by
  // a process (Reserved entries, counted per process and summed here).
  // Summed with wrap-around (never overflowing: a peer may have written
  // anything there), then split.
  std::uint64_t reserved = 0;
  std::vector<std::uint32_t> live = live_slots(h);
  for (std::uint32_t s : live) {
    for (std::uint32_t l = 0; l < kStatLines; ++l) {
      const SlotStats& st = stats_line(s, l);
      reserved += load(st.reserved, std::memory_order_relaxed);
    }
  }
  std::uint64_t free_bytes = std::min(field(h.free_bytes), g.capacity);
  std::uint64_t free_entries = std::min<std::uint64_t>(field(h.free_entries), g.max_objects);
  i.cached = std::min(reserved_bytes(reserved), g.capacity - free_bytes);
  i.used = g.capacity - free_bytes - i.cached;
  std::uint64_t held = std::min(reserved_entries(reserved), g.max_objects - free_entries);
  i.objects = static_cast<std::uint32_t>(g.max_objects - free_entries - held);
  i.largest_free = std::min(field(h.largest_free), free_bytes);
  i.free_extents = field(h.free_extents);
  i.processes = static_cast<std::uint32_t>(live.size());
  i.recoveries = field(h.recoveries);
  i.lock_repairs = field(h.lock_repairs);
  i.created_unix_ns = field(h.created_ns);
  const SpillConfig& sc = map_.spill();
  i.spill_directory = sc.dir;
  i.spill_high = sc.high;
  i.spill_low = sc.low;
  i.spilled_objects = std::min<std::uint64_t>(field(h.spilled_objects), g.max_objects);
  i.spilled_bytes = field(h.spilled_bytes);
  i.spills = field(h.spills);
  i.restores = field(h.restores);
  i.seal_events = field(h.event_head);
  for (const std::uint64_t& bits : h.subscribed)
    i.subscribers += static_cast<std::uint32_t>(std::popcount(field(bits)));
  return i;
}

std::vector<ProcessInfo> Session::processes() const {
  std::vector<ProcessInfo> out;
  const Geometry& g = geo();
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    const ProcessSlot& ps = slot(s);
    if (static_cast<SlotState>(load(ps.state, std::memory_order_acquire)) != SlotState::Live) continue;
    ProcessInfo p;
    p.slot = s;
    p.pid = field(ps.pid);
    p.start_time = field(ps.start_time);
    p.id = field(ps.worker_id);
    std::uint32_t role = field(ps.role);
    p.role = role <= static_cast<std::uint32_t>(Role::Client) ? static_cast<Role>(role) : Role::Client;
    p.alive = slot_alive(s);
    p.pid_namespace = field(ps.pid_ns);
    p.attached_unix_ns = field(ps.attached_ns);
    std::uint64_t reserved = 0;
    for (std::uint32_t l = 0; l < kStatLines; ++l) {
      p.objects_created += field(stats_line(s, l).objects_sealed);
      reserved += field(stats_line(s, l).reserved);
    }
    p.cached_bytes = std::min(reserved_bytes(reserved), g.capacity);
    out.push_back(p);
  }
  // Pins, by one pass over the pin masks.
  for (std::uint32_t i = 0; i < g.max_objects && !out.empty(); ++i) {
    const PinMask& m = pins(i);
    for (ProcessInfo& p : out) {
      if ((load(m.bits[p.slot / 64], std::memory_order_relaxed) & (std::uint64_t{1} << (p.slot % 64))) !=
          0) {  // NOLINT
        p.pinned_objects += 1;
        p.pinned_bytes += std::min(field(entry(i).size), g.capacity);
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const ProcessInfo& a, const ProcessInfo& b) { return a.id < b.id; });
  return out;
}

std::vector<ObjectInfo> Session::objects() const {
  std::vector<ObjectInfo> out;
  const Geometry& g = geo();
  std::vector<std::pair<std::uint32_t, WorkerId>> live;  // slot, worker id
  for (std::uint32_t s : live_slots(header())) live.emplace_back(s, field(slot(s).worker_id));
  std::vector<std::uint32_t> where;  // out's index of each entry listed
  for (std::uint32_t i = 0; i < g.max_objects; ++i) {
    const Entry& e = entry(i);
    std::uint64_t w = load(e.word);
    if (!word_valid(w)) continue;
    ObjectInfo o;
    switch (word_state(w)) {
      case EntryState::Unfilled: o.state = ObjectState::Unfilled; break;
      case EntryState::Writing: o.state = ObjectState::Writing; break;
      case EntryState::Sealed: o.state = ObjectState::Sealed; break;
      case EntryState::Spilled:
        o.state = ObjectState::Sealed;
        o.place = Place::Spill;
        break;
      case EntryState::Restoring:
        o.state = ObjectState::Sealed;
        o.place = Place::Restoring;
        break;
      case EntryState::ErasePending: o.state = ObjectState::ErasePending; break;
      case EntryState::Abandoned: o.state = ObjectState::Abandoned; break;
      default: continue;  // free, or cached by a process: not an object
    }
    o.ref = ref_of(i, word_gen(w));
    o.size = std::min(field(e.size), g.capacity);
    o.type = stored_type(e);
    o.spill_file = (field(e.flags) & kSpillValid) != 0 && is_sealed(word_state(w));
    o.creator = field(e.whence);
    o.creator_pid = field(e.maker_pid);
    o.sealed_by = field(e.creator_id);
    o.sealed_by_pid = field(e.creator_pid);
    o.created_unix_ns = field(e.created_ns);
    o.waiters = field(e.waiters);
    for (auto [s, id] : live) {
      if ((load(pins(i).bits[s / 64], std::memory_order_relaxed) & (std::uint64_t{1} << (s % 64))) != 0) {  // NOLINT
        o.pinned_by.push_back(id);
      }
    }
    where.push_back(i);
    out.push_back(std::move(o));
  }
  // Names, by one pass over the name table.
  for (std::uint32_t n = 0; n < g.name_slots; ++n) {
    const NameSlot& ns = name_slot(n);
    if (load(ns.state) != 1) continue;
    std::uint32_t index = load(ns.index);
    std::uint32_t gen = load(ns.gen);
    std::array<char, kNameBytes> text{};
    for (std::size_t w = 0; w < kNameBytes / 8; ++w) {
      std::uint64_t word = load(ns.name[w]);  // NOLINT
      std::memcpy(text.data() + w * 8, &word, 8);
    }
    text.back() = '\0';
    auto it = std::lower_bound(where.begin(), where.end(), index);
    if (it == where.end() || *it != index) continue;
    ObjectInfo& o = out[static_cast<std::size_t>(it - where.begin())];
    if ((o.ref.id() >> 32U) == gen) o.names.emplace_back(text.data());
  }
  return out;
}

}  // namespace sealstore::detail
