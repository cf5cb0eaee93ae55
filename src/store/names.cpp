// Store-wide names: an open-addressing hash table of name slots, written
// under the lock as seqlocks and read without it. A lookup returns the
// binding read in the same validated window as the name it matched.
#include <sched.h>

#include <fmt/format.h>
#include <array>
#include <chrono>
#include <cstring>

#include "sealstore/error.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

// A lookup waits this long for a name slot caught mid-change.
constexpr std::chrono::milliseconds kNameSlotPatience{5};

std::uint64_t name_hash(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h == 0 ? 1 : h;
}

void validate_object_name(std::string_view name) {
  bool ok = !name.empty() && name.size() < kNameBytes;
  for (char c : name) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-' || c == ':' || c == '/';
    ok = ok && allowed;
  }
  if (!ok) {
    throw Error(Errc::InvalidArgument,
                fmt::format("invalid object name '{}': use 1 to {} of letters, digits, '.', '_', '-', ':', '/'", name,
                            kNameBytes - 1));
  }
}

bool names_an_object(std::uint64_t w, std::uint32_t gen) {
  EntryState st = word_state(w);
  return word_valid(w) && word_gen(w) == gen &&
         (st == EntryState::Unfilled || st == EntryState::Writing || is_sealed(st) || st == EntryState::Abandoned);
}

}  // namespace

// Lock-free probe. A slot that stays mid-change beyond kNameSlotPatience is
// skipped and *stuck set: its writer may have died holding the lock, and
// only the next locker repairs it.
std::optional<Session::NameHit> Session::find_name(std::string_view name, std::uint64_t hash, bool* stuck) const {
  std::uint32_t mask = geo().name_slots - 1;
  std::array<std::uint64_t, kNameBytes / 8> want{};
  std::memcpy(want.data(), name.data(), name.size());
  for (std::uint32_t i = 0, pos = static_cast<std::uint32_t>(hash) & mask; i <= mask; ++i, pos = (pos + 1) & mask) {
    const NameSlot& n = name_slot(pos);
    std::optional<std::chrono::steady_clock::time_point> odd_since;
    for (unsigned spins = 0;; ++spins) {
      std::uint32_t seq = load(n.seq);
      if ((seq & 1U) != 0) {
        if (spins % 64 == 63) {
          auto now = std::chrono::steady_clock::now();
          if (!odd_since) odd_since = now;
          if (now - *odd_since > kNameSlotPatience) {
            if (stuck != nullptr) *stuck = true;
            break;
          }
        }
        sched_yield();
        continue;
      }
      // Everything a hit returns is read inside the window the sequence
      // number validates: a binding is the name and its object together.
      std::uint32_t state = load(n.state);
      bool match = state == 1 && load(n.hash) == hash;
      for (std::size_t w = 0; match && w < want.size(); ++w) match = load(n.name[w]) == want[w];  // NOLINT
      std::uint32_t index = load(n.index);
      std::uint32_t gen = load(n.gen);
      if (load(n.seq) != seq) continue;
      if (state == 0) return std::nullopt;
      if (match) return NameHit{pos, index, gen};
      break;
    }
  }
  return std::nullopt;
}

void Session::write_name_slot_locked(NameSlot& n, std::uint32_t state, std::uint32_t index, std::uint32_t gen,
                                     std::uint64_t hash, std::string_view name) noexcept {
  std::array<std::uint64_t, kNameBytes / 8> words{};
  if (!name.empty()) std::memcpy(words.data(), name.data(), std::min(name.size(), kNameBytes - 1));
  atomic(n.seq).fetch_add(1);
  store(n.index, index);
  store(n.gen, gen);
  store(n.hash, hash);
  for (std::size_t w = 0; w < words.size(); ++w) store(n.name[w], words[w]);  // NOLINT
  store(n.state, state);
  atomic(n.seq).fetch_add(1);
}

void Session::bind(std::string_view name, const RemoteRef& ref) {
  check_writable();
  validate_object_name(name);
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  std::uint64_t hash = name_hash(name);
  Lock lock(*this);
  Entry& e = entry(index);
  if (!names_an_object(load(e.word), gen)) {
    throw Error(Errc::NotFound, fmt::format("cannot bind '{}' to {}: it was erased", name, ref.to_string()));
  }
  Header& h = header();
  std::optional<NameHit> was = find_name(name, hash, nullptr);
  NameSlot* slot = nullptr;
  if (was) {
    if (was->index == index && was->gen == gen) return;
    slot = &name_slot(was->pos);
  } else {
    if (load(h.names_bound, std::memory_order_relaxed) >= geo().max_names) {
      throw Error(Errc::OutOfMemory, fmt::format("cannot bind '{}': all {} names of segment '{}' are bound", name,
                                                 geo().max_names, name_));
    }
    std::uint32_t mask = geo().name_slots - 1;
    std::uint32_t pos = static_cast<std::uint32_t>(hash) & mask;
    for (std::uint32_t i = 0; load(name_slot(pos).state) == 1; ++i, pos = (pos + 1) & mask) {
      if (i == mask) {  // names_bound < max_names <= half the slots: only damage gets here
        store(h.repair_pending, 1U);
        corrupt(fmt::format("its name table is full though it counts {} of {} names", load(h.names_bound),
                            geo().max_names));
      }
    }
    slot = &name_slot(pos);
  }
  write_name_slot_locked(*slot, 1, index, gen, hash, name);
  atomic(e.names).fetch_add(1);  // seq_cst, then read the word: pairs with erase's word then count
  if (!names_an_object(load(e.word), gen)) {
    // Erased meanwhile (without the lock): put the slot back as it was.
    atomic(e.names).fetch_sub(1);
    if (was) {
      write_name_slot_locked(*slot, 1, was->index, was->gen, hash, name);
    } else {
      write_name_slot_locked(*slot, 2, 0, 0, 0, {});
    }
    throw Error(Errc::NotFound, fmt::format("cannot bind '{}' to {}: it was erased", name, ref.to_string()));
  }
  if (was) {
    if (was->index < geo().max_objects) {
      Entry& old = entry(was->index);
      if (word_gen(load(old.word)) == was->gen && load(old.names) > 0) atomic(old.names).fetch_sub(1);
    }
  } else {
    store(h.names_bound, load(h.names_bound) + 1);
  }
}

std::optional<RemoteRef> Session::lookup(std::string_view name) const {
  validate_object_name(name);
  std::uint64_t hash = name_hash(name);
  bool stuck = false;
  auto hit = find_name(name, hash, &stuck);
  if (!hit && stuck && !observer() && usable()) {
    // Taking the lock repairs a slot whose writer died mid-change, or waits
    // for a live writer to finish. Observers cannot lock: they skip it.
    Lock lock(*this);
    hit = find_name(name, hash, nullptr);
  }
  if (!hit || hit->index >= geo().max_objects) return std::nullopt;
  const Entry& e = entry(hit->index);
  if (!names_an_object(load(e.word), hit->gen)) return std::nullopt;
  return RemoteRef(geo().segment_tag, (std::uint64_t{hit->gen} << 32U) | hit->index, field(e.where), field(e.whence));
}

bool Session::unbind(std::string_view name) {
  check_writable();
  validate_object_name(name);
  std::uint64_t hash = name_hash(name);
  Lock lock(*this);
  auto hit = find_name(name, hash, nullptr);
  if (!hit) return false;
  if (hit->index < geo().max_objects) {
    Entry& e = entry(hit->index);
    if (word_gen(load(e.word)) == hit->gen && load(e.names) > 0) atomic(e.names).fetch_sub(1);
  }
  write_name_slot_locked(name_slot(hit->pos), 2, 0, 0, 0, {});
  Header& h = header();
  std::uint32_t bound = load(h.names_bound);
  store(h.names_bound, bound > 0 ? bound - 1 : 0);
  return true;
}

void Session::unbind_entry_locked(std::uint32_t index, std::uint32_t gen) noexcept {
  Entry& e = entry(index);
  Header& h = header();
  for (std::uint32_t i = 0; i < geo().name_slots && load(e.names) > 0; ++i) {
    NameSlot& n = name_slot(i);
    if (load(n.state) == 1 && load(n.index) == index && load(n.gen) == gen) {
      write_name_slot_locked(n, 2, 0, 0, 0, {});
      std::uint32_t bound = load(h.names_bound);
      store(h.names_bound, bound > 0 ? bound - 1 : 0);
      atomic(e.names).fetch_sub(1);
    }
  }
  store(e.names, 0U);
}

}  // namespace sealstore::detail
