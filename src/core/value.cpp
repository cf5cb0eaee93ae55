#include <fmt/format.h>

#include "sealstore/error.hpp"
#include "sealstore/stats.hpp"
#include "sealstore/value.hpp"

namespace sealstore {

namespace {

std::string elem_name(const ValueType& t) {
  switch (t.elem) {
    case ElemType::None: return "byte";
    case ElemType::Int8: return "i8";
    case ElemType::Int16: return "i16";
    case ElemType::Int32: return "i32";
    case ElemType::Int64: return "i64";
    case ElemType::UInt8: return "u8";
    case ElemType::UInt16: return "u16";
    case ElemType::UInt32: return "u32";
    case ElemType::UInt64: return "u64";
    case ElemType::Float32: return "f32";
    case ElemType::Float64: return "f64";
    case ElemType::Bool: return "bool";
    case ElemType::Char: return "char";
    case ElemType::Trivial: return fmt::format("trivial({} B, #{:08x})", t.elem_size, t.type_hash & 0xffffffffU);
  }
  return "?";
}

}  // namespace

std::string ValueType::describe() const {
  switch (kind) {
    case ValueKind::Bytes: return "bytes";
    case ValueKind::String: return "string";
    case ValueKind::Scalar: return elem_name(*this);
    case ValueKind::Array: return elem_name(*this) + "[]";
    case ValueKind::NdArray: {
      if (rank == 0) return elem_name(*this) + " n-d array";
      std::string out = elem_name(*this);
      out.push_back('[');
      for (std::uint32_t d = 0; d < rank && d < kMaxRank; ++d) {
        if (d != 0) out.push_back('x');
        out.append(fmt::format("{}", shape[d]));  // NOLINT
      }
      out.push_back(']');
      return out;
    }
  }
  return "unknown";
}

void throw_invalid_index(std::string_view what) { throw Error(Errc::InvalidArgument, std::string(what)); }

std::string_view to_string(ObjectState s) noexcept {
  switch (s) {
    case ObjectState::Unfilled: return "unfilled";
    case ObjectState::Writing: return "writing";
    case ObjectState::Sealed: return "sealed";
    case ObjectState::ErasePending: return "erase-pending";
    case ObjectState::Abandoned: return "abandoned";
  }
  return "?";
}

std::string_view to_string(Place p) noexcept {
  switch (p) {
    case Place::Segment: return "segment";
    case Place::Spill: return "spill";
    case Place::Restoring: return "restoring";
  }
  return "?";
}

std::string_view to_string(Role r) noexcept {
  switch (r) {
    case Role::Owner: return "owner";
    case Role::Worker: return "worker";
    case Role::Client: return "client";
  }
  return "?";
}

}  // namespace sealstore
