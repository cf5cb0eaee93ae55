// How stored values look from Python: the element types numpy and DLPack
// share with the C++ value encoding, and the layout (format, shape, strides)
// under which a sealed object's bytes are exported. Plain data; no Python.
#pragma once

#include <Python.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "sealstore/value.hpp"

namespace sealstore::python {

// One element type both sides know. `format` is its buffer-protocol code;
// `numpy_kind` numpy's dtype.kind for it.
struct ElemSpec {
  ElemType elem;
  std::uint32_t size;
  char format;
  char numpy_kind;
  std::uint8_t dlpack_code;
};

// The spec of an element type, or nullopt (None, Trivial, or out of range).
std::optional<ElemSpec> elem_spec(ElemType elem) noexcept;
// The element type of a numpy dtype's kind and item size, or nullopt.
std::optional<ElemSpec> elem_spec_of_numpy(char kind, std::size_t itemsize) noexcept;

// The layout of an exported object: typed for scalars, arrays and n-d arrays
// of a known element type; one dimension of unsigned bytes otherwise
// (bytes, strings, trivially copyable structs).
struct Layout {
  char format[2] = {'B', '\0'};
  Py_ssize_t itemsize = 1;
  int ndim = 1;
  std::array<Py_ssize_t, kMaxRank> shape{};
  std::array<Py_ssize_t, kMaxRank> strides{};
  std::optional<ElemSpec> elem;  // nullopt: raw bytes
};

// The layout of `nbytes` bytes stored with type t. The type was checked
// against the size when the object was pinned (View::type()).
Layout layout_of(const ValueType& t, std::size_t nbytes) noexcept;

// The stored type of a value of element e: a scalar (empty shape), an
// Array (as_array, rank 1) or an NdArray. Throws Error(InvalidArgument)
// for a rank above kMaxRank or as_array with a rank other than 1.
ValueType value_type_of(const ElemSpec& e, const Py_ssize_t* shape, int ndim, bool as_array);

}  // namespace sealstore::python
