// Reading an entry's fields as a process that trusts nothing in the
// segment: each field is read once (an atomic load: a peer may be
// rewriting it), and the value type is checked against the size it claims.
#pragma once

#include <algorithm>
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
  }
  return "in an unknown state";
}

template <class T>
T field(const T& f) {
  return load(f, std::memory_order_relaxed);
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
