#include "values.hpp"

#include <string>

#include "sealstore/error.hpp"

namespace sealstore::python {

namespace {

constexpr std::array<ElemSpec, 12> kElems{{
    {ElemType::Int8, 1, 'b', 'i', 0},
    {ElemType::Int16, 2, 'h', 'i', 0},
    {ElemType::Int32, 4, 'i', 'i', 0},
    {ElemType::Int64, 8, 'q', 'i', 0},
    {ElemType::UInt8, 1, 'B', 'u', 1},
    {ElemType::UInt16, 2, 'H', 'u', 1},
    {ElemType::UInt32, 4, 'I', 'u', 1},
    {ElemType::UInt64, 8, 'Q', 'u', 1},
    {ElemType::Float32, 4, 'f', 'f', 2},
    {ElemType::Float64, 8, 'd', 'f', 2},
    {ElemType::Bool, 1, '?', 'b', 6},
    {ElemType::Char, 1, 'c', 'S', 0},
}};

static_assert(sizeof(char) == 1 && sizeof(bool) == 1 && sizeof(float) == 4 && sizeof(double) == 8);

std::string shape_text(const Py_ssize_t* shape, int ndim) {
  std::string out = "(";
  for (int d = 0; d < ndim; ++d) {
    if (d != 0) out += ", ";
    out += std::to_string(shape[d]);
  }
  return out + (ndim == 1 ? ",)" : ")");
}

}  // namespace

std::optional<ElemSpec> elem_spec(ElemType elem) noexcept {
  for (const ElemSpec& e : kElems) {
    if (e.elem == elem) return e;
  }
  return std::nullopt;
}

std::optional<ElemSpec> elem_spec_of_numpy(char kind, std::size_t itemsize) noexcept {
  for (const ElemSpec& e : kElems) {
    if (e.numpy_kind == kind && e.size == itemsize) return e;
  }
  return std::nullopt;
}

Layout layout_of(const ValueType& t, std::size_t nbytes) noexcept {
  Layout out;
  std::optional<ElemSpec> e = elem_spec(t.elem);
  bool typed = e && t.elem_size == e->size &&
               (t.kind == ValueKind::Scalar || t.kind == ValueKind::Array ||
                (t.kind == ValueKind::NdArray && t.rank >= 1 && t.rank <= kMaxRank));
  if (!typed) {
    out.shape[0] = static_cast<Py_ssize_t>(nbytes);
    out.strides[0] = 1;
    return out;
  }
  out.elem = e;
  out.format[0] = e->format;
  out.itemsize = static_cast<Py_ssize_t>(e->size);
  if (t.kind == ValueKind::Scalar) {
    out.ndim = 0;
    return out;
  }
  if (t.kind == ValueKind::Array) {
    out.shape[0] = static_cast<Py_ssize_t>(nbytes / e->size);
  } else {
    out.ndim = static_cast<int>(t.rank);
    for (std::uint32_t d = 0; d < t.rank; ++d) out.shape[d] = static_cast<Py_ssize_t>(t.shape[d]);
  }
  Py_ssize_t stride = out.itemsize;
  for (int d = out.ndim; d-- > 0;) {
    auto i = static_cast<std::size_t>(d);
    out.strides[i] = stride;
    stride *= out.shape[i];
  }
  return out;
}

ValueType value_type_of(const ElemSpec& e, const Py_ssize_t* shape, int ndim, bool as_array) {
  ValueType t;
  t.elem = e.elem;
  t.elem_size = e.size;
  if (as_array) {
    if (ndim != 1) {
      throw Error(Errc::InvalidArgument, "kind='array' stores one dimension; got shape " + shape_text(shape, ndim));
    }
    t.kind = ValueKind::Array;
    return t;
  }
  if (ndim == 0) {
    t.kind = ValueKind::Scalar;
    return t;
  }
  if (ndim < 0 || static_cast<std::size_t>(ndim) > kMaxRank) {
    throw Error(Errc::InvalidArgument, "an n-d array has 1 to " + std::to_string(kMaxRank) + " dimensions; got shape " +
                                           shape_text(shape, ndim));
  }
  t.kind = ValueKind::NdArray;
  t.rank = static_cast<std::uint32_t>(ndim);
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0) throw Error(Errc::InvalidArgument, "negative extent in shape " + shape_text(shape, ndim));
    t.shape[static_cast<std::size_t>(d)] = static_cast<std::uint64_t>(shape[d]);
  }
  return t;
}

}  // namespace sealstore::python
