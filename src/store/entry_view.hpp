// Reading an entry's fields as a process that trusts nothing in the
// segment: each field is read once (an atomic load: a peer may be
// rewriting it), and the value type is checked against the size it claims.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sealstore/value.hpp"
#include "segment/layout.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

inline std::string_view state_name(EntryState s) {
  switch (s) {
    case EntryState::Free: return "free";
    case EntryState::Unfilled: return "unfilled";
    case EntryState::Writing: return "being written";
    case EntryState::Sealed: return "sealed";
    case EntryState::ErasePending: return "erased (free deferred while pinned)";
    case EntryState::Abandoned: return "abandoned by its writer";
    case EntryState::Reserved: return "free (cached by a process)";
    case EntryState::Spilled: return "spilled";
    case EntryState::Restoring: return "being restored from its spill file";
  }
  return "in an unknown state";
}

template <class T>
T field(const T& f) {
  return load(f, std::memory_order_relaxed);
}

// An entry's value type as it lies in the entry, in words (one 16-byte run
// and the shape), copied in a few loads: what a View keeps.
using TypeWords = std::array<std::uint64_t, 2 + kMaxRank>;
static_assert(offsetof(Entry, elem_size) == offsetof(Entry, kind) + 4 &&
              offsetof(Entry, type_hash) == offsetof(Entry, kind) + 8);
inline void load_type_words(const Entry& e, TypeWords& w) {
  const auto* head = reinterpret_cast<const std::uint64_t*>(&e.kind);  // NOLINT: kind..elem_size, then type_hash
  w[0] = load(head[0], std::memory_order_relaxed);                     // NOLINT
  w[1] = load(head[1], std::memory_order_relaxed);                     // NOLINT
  if (static_cast<ValueKind>(w[0] & 0xffU) == ValueKind::NdArray) {
    for (std::size_t d = 0; d < kMaxRank; ++d) w[2 + d] = field(e.shape[d]);  // NOLINT
  }
}
// Into t, field by field (a ValueType built elsewhere and copied in whole
// stalls on store forwarding: this is on every fetch's and read's path).
inline void decode_type(const TypeWords& w, ValueType& t) {
  t.kind = static_cast<ValueKind>(w[0] & 0xffU);
  t.elem = static_cast<ElemType>((w[0] >> 8U) & 0xffU);
  t.elem_size = static_cast<std::uint32_t>(w[0] >> 32U);
  t.type_hash = w[1];
  if (t.kind != ValueKind::NdArray) {
    t.rank = 0;
    t.shape = {};
    return;
  }
  t.rank = std::min<std::uint32_t>(static_cast<std::uint32_t>((w[0] >> 16U) & 0xffU), kMaxRank);
  for (std::size_t d = 0; d < kMaxRank; ++d) t.shape[d] = d < t.rank ? w[2 + d] : 0;  // NOLINT
}

// The value type as the entry stores it (rank clamped; shape read only for
// n-d arrays, the one kind that has one).
inline ValueType stored_type(const Entry& e) {
  ValueType t;
  t.kind = static_cast<ValueKind>(field(e.kind));
  t.elem = static_cast<ElemType>(field(e.elem));
  t.elem_size = field(e.elem_size);
  t.type_hash = field(e.type_hash);
  if (t.kind == ValueKind::NdArray) {
    t.rank = std::min<std::uint32_t>(field(e.rank), kMaxRank);
    for (std::size_t d = 0; d < t.rank; ++d) t.shape[d] = field(e.shape[d]);  // NOLINT
  }
  return t;
}

// Whether `size` bytes can hold a value of type t: what typed views and
// materialize rely on before they read a stored value.
inline bool type_fits(const ValueType& t, std::uint64_t size) {
  if (t.kind > ValueKind::NdArray || t.elem > ElemType::Trivial) return false;
  switch (t.kind) {
    case ValueKind::Bytes:
    case ValueKind::String: return true;
    case ValueKind::Scalar: return t.elem_size != 0 && size == t.elem_size;
    case ValueKind::Array: return t.elem_size != 0 && size % t.elem_size == 0;
    case ValueKind::NdArray: {
      if (t.rank == 0 || t.rank > kMaxRank) return false;
      std::uint64_t n = t.elem_size;
      for (std::uint32_t d = 0; d < t.rank; ++d) {
        if (t.shape[d] != 0 && n > UINT64_MAX / t.shape[d]) return false;  // NOLINT
        n *= t.shape[d];                                                   // NOLINT
      }
      return n == size;
    }
  }
  return false;
}

}  // namespace sealstore::detail
