// Value types sealstore stores with their type: scalars of any trivially
// copyable T, arrays of them, strings, and dense row-major n-d arrays of
// arithmetic elements. NdView reads one without copying; NdArray owns one.
// Plain values: no shared state, safe to use from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sealstore {

inline constexpr std::size_t kMaxRank = 4;

enum class ValueKind : std::uint8_t {
  Bytes = 0,    // untyped bytes
  Scalar = 1,   // one T
  Array = 2,    // a contiguous run of T
  String = 3,   // UTF-8 (or any) text, no terminator stored
  NdArray = 4,  // dense row-major array of arithmetic T with a shape
};

enum class ElemType : std::uint8_t {
  None = 0,  // Bytes and String
  Int8,
  Int16,
  Int32,
  Int64,
  UInt8,
  UInt16,
  UInt32,
  UInt64,
  Float32,
  Float64,
  Bool,
  Char,
  Trivial,  // any other trivially copyable type, identified by its name's hash
};

// What is stored: checked on every typed access and on materialize.
struct ValueType {
  ValueKind kind = ValueKind::Bytes;
  ElemType elem = ElemType::None;
  std::uint32_t elem_size = 1;
  std::uint64_t type_hash = 0;  // for Trivial: hash of the type's name
  std::uint32_t rank = 0;       // NdArray only
  std::array<std::uint64_t, kMaxRank> shape{};

  // "bytes", "string", "f64", "i32[1000]", "f64[10000x10000]", "trivial(24 B)[3]"
  std::string describe() const;
  friend bool operator==(const ValueType&, const ValueType&) = default;
};

namespace detail {

// FNV-1a over the compiler's spelling of T: stable across processes built
// by the same compiler, which is what one segment's users share.
template <class T>
constexpr std::uint64_t type_name_hash() {
  std::string_view name = __PRETTY_FUNCTION__;
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : name) {
    h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  }
  return h;
}

template <class T>
constexpr ElemType elem_code() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>)
    return ElemType::Bool;
  else if constexpr (std::is_same_v<U, char>)
    return ElemType::Char;
  else if constexpr (std::is_same_v<U, float>)
    return ElemType::Float32;
  else if constexpr (std::is_same_v<U, double>)
    return ElemType::Float64;
  else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) {
    if constexpr (sizeof(U) == 1)
      return ElemType::Int8;
    else if constexpr (sizeof(U) == 2)
      return ElemType::Int16;
    else if constexpr (sizeof(U) == 4)
      return ElemType::Int32;
    else
      return ElemType::Int64;
  } else if constexpr (std::is_integral_v<U> && std::is_unsigned_v<U>) {
    if constexpr (sizeof(U) == 1)
      return ElemType::UInt8;
    else if constexpr (sizeof(U) == 2)
      return ElemType::UInt16;
    else if constexpr (sizeof(U) == 4)
      return ElemType::UInt32;
    else
      return ElemType::UInt64;
  } else {
    return ElemType::Trivial;
  }
}

}  // namespace detail

// A type sealstore can store element-wise: trivially copyable, no pointers
// (a pointer means nothing in another process).
template <class T>
concept Element = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                  !std::is_same_v<std::remove_cv_t<T>, std::byte>;

template <class T>
concept Arithmetic = std::is_arithmetic_v<T>;

template <Element T>
constexpr ValueType element_type(ValueKind kind) {
  ValueType t;
  t.kind = kind;
  t.elem = detail::elem_code<T>();
  t.elem_size = static_cast<std::uint32_t>(sizeof(T));
  t.type_hash = t.elem == ElemType::Trivial ? detail::type_name_hash<T>() : 0;
  return t;
}

// A read-only view of a dense n-d array somewhere else (a fetched object, or
// an NdArray). Row-major; slicing keeps strides and copies nothing. Indices
// are not bounds-checked by operator(); at() checks and throws InvalidArgument.
template <Arithmetic T>
class NdView {
 public:
  NdView() = default;
  NdView(const T* data, std::span<const std::uint64_t> shape) : data_(data), rank_(shape.size()) {
    std::uint64_t stride = 1;
    for (std::size_t d = rank_; d-- > 0;) {
      shape_[d] = shape[d];
      strides_[d] = stride;
      stride *= shape[d];
    }
  }

  std::size_t rank() const noexcept { return rank_; }
  std::uint64_t extent(std::size_t dim) const noexcept { return shape_[dim]; }
  std::span<const std::uint64_t> shape() const noexcept { return {shape_.data(), rank_}; }
  std::uint64_t size() const noexcept {
    std::uint64_t n = 1;
    for (std::size_t d = 0; d < rank_; ++d) n *= shape_[d];
    return n;
  }
  bool contiguous() const noexcept {
    std::uint64_t stride = 1;
    for (std::size_t d = rank_; d-- > 0;) {
      if (shape_[d] != 1 && strides_[d] != stride) return false;
      stride *= shape_[d];
    }
    return true;
  }
  // Only for contiguous views: the elements in row-major order.
  std::span<const T> flat() const noexcept { return {data_, static_cast<std::size_t>(size())}; }

  template <class... I>
  const T& operator()(I... idx) const noexcept {
    static_assert(sizeof...(I) >= 1 && sizeof...(I) <= kMaxRank);
    const std::array<std::uint64_t, sizeof...(I)> i{static_cast<std::uint64_t>(idx)...};
    std::uint64_t off = 0;
    for (std::size_t d = 0; d < sizeof...(I); ++d) off += i[d] * strides_[d];
    return data_[off];
  }
  template <class... I>
  const T& at(I... idx) const;

  // Half-open ranges [first, last), one per leading dimension; missing
  // trailing dimensions are taken whole. view.slice({0, 5}, {0, 5}) is the
  // 5x5 corner of a matrix; view.slice({2, 4}) its rows 2 and 3. Throws
  // InvalidArgument for a range out of bounds or more ranges than dimensions.
  using Range = std::pair<std::uint64_t, std::uint64_t>;
  NdView slice(Range r0) const { return slice({r0}); }
  NdView slice(Range r0, Range r1) const { return slice({r0, r1}); }
  NdView slice(Range r0, Range r1, Range r2) const { return slice({r0, r1, r2}); }
  NdView slice(Range r0, Range r1, Range r2, Range r3) const { return slice({r0, r1, r2, r3}); }
  // The same, the ranges as one list: view.slice({{0, 5}, {0, 5}}).
  NdView slice(std::initializer_list<Range> ranges) const;

 private:
  const T* data_ = nullptr;
  std::size_t rank_ = 0;
  std::array<std::uint64_t, kMaxRank> shape_{};
  std::array<std::uint64_t, kMaxRank> strides_{};
};

[[noreturn]] void throw_invalid_index(std::string_view what);

template <Arithmetic T>
template <class... I>
const T& NdView<T>::at(I... idx) const {
  const std::array<std::uint64_t, sizeof...(I)> i{static_cast<std::uint64_t>(idx)...};
  if (sizeof...(I) != rank_) throw_invalid_index("wrong number of indices for the array's rank");
  for (std::size_t d = 0; d < sizeof...(I); ++d) {
    if (i[d] >= shape_[d]) throw_invalid_index("index out of range");
  }
  return (*this)(idx...);
}

template <Arithmetic T>
NdView<T> NdView<T>::slice(std::initializer_list<Range> ranges) const {
  if (ranges.size() > rank_) throw_invalid_index("more slice ranges than dimensions");
  NdView out = *this;
  std::size_t d = 0;
  for (auto [first, last] : ranges) {
    if (first > last || last > shape_[d]) throw_invalid_index("slice range out of bounds");
    out.data_ += first * strides_[d];
    out.shape_[d] = last - first;
    ++d;
  }
  return out;
}

// An owned dense row-major n-d array: an ordinary value, copyable,
// independent of any segment. materialize<NdArray<T>>() returns one.
template <Arithmetic T>
class NdArray {
 public:
  NdArray() = default;
  explicit NdArray(std::vector<std::uint64_t> shape, T fill = T{})
      : shape_(std::move(shape)), data_(count(shape_), fill) {}
  NdArray(std::vector<std::uint64_t> shape, std::vector<T> data) : shape_(std::move(shape)), data_(std::move(data)) {
    if (data_.size() != count(shape_)) throw_invalid_index("data size does not match the shape");
  }

  std::span<const std::uint64_t> shape() const noexcept { return shape_; }
  std::size_t rank() const noexcept { return shape_.size(); }
  std::size_t size() const noexcept { return data_.size(); }
  T* data() noexcept { return data_.data(); }
  const T* data() const noexcept { return data_.data(); }
  std::span<T> flat() noexcept { return data_; }
  std::span<const T> flat() const noexcept { return data_; }
  NdView<T> view() const { return NdView<T>(data_.data(), shape_); }

  template <class... I>
  T& operator()(I... idx) noexcept {
    return const_cast<T&>(view()(idx...));  // NOLINT(cppcoreguidelines-pro-type-const-cast): same object
  }
  template <class... I>
  const T& operator()(I... idx) const noexcept {
    return view()(idx...);
  }

  friend bool operator==(const NdArray&, const NdArray&) = default;

 private:
  static std::size_t count(const std::vector<std::uint64_t>& shape) {
    if (shape.empty() || shape.size() > kMaxRank) throw_invalid_index("rank must be 1..4");
    std::size_t n = 1;
    for (auto e : shape) {
      if (e != 0 && n > SIZE_MAX / e) throw_invalid_index("the shape's element count overflows");
      n *= static_cast<std::size_t>(e);
    }
    return n;
  }
  std::vector<std::uint64_t> shape_;
  std::vector<T> data_;
};

// How a C++ value maps onto a stored value: its ValueType and its bytes
// (put), and how to rebuild it from stored bytes (materialize).
template <class V>
struct Codec;

template <Element T>
struct Codec<T> {
  static ValueType type(const T&) { return element_type<T>(ValueKind::Scalar); }
  static std::span<const std::byte> bytes(const T& v) { return std::as_bytes(std::span<const T, 1>(&v, 1)); }
  static ValueType wanted() { return element_type<T>(ValueKind::Scalar); }
  static bool accepts(const ValueType& t) { return t == wanted(); }
  static T build(std::span<const std::byte> b, const ValueType& /*type*/) {
    T v;
    std::memcpy(&v, b.data(), sizeof(T));
    return v;
  }
};

template <Element T>
struct Codec<std::vector<T>> {
  static ValueType type(const std::vector<T>&) { return element_type<T>(ValueKind::Array); }
  static std::span<const std::byte> bytes(const std::vector<T>& v) { return std::as_bytes(std::span<const T>(v)); }
  static ValueType wanted() { return element_type<T>(ValueKind::Array); }
  static bool accepts(const ValueType& t) { return t == wanted(); }
  static std::vector<T> build(std::span<const std::byte> b, const ValueType& /*type*/) {
    const auto* first = reinterpret_cast<const T*>(b.data());  // NOLINT: stored as T, suitably aligned
    return std::vector<T>(first, first + b.size() / sizeof(T));
  }
};

template <Element T>
struct Codec<std::span<const T>> {
  static ValueType type(const std::span<const T>&) { return element_type<T>(ValueKind::Array); }
  static std::span<const std::byte> bytes(const std::span<const T>& v) { return std::as_bytes(v); }
};
template <Element T>
struct Codec<std::span<T>> : Codec<std::span<const T>> {};

template <>
struct Codec<std::string_view> {
  static ValueType type(std::string_view) { return ValueType{ValueKind::String, ElemType::None, 1, 0, 0, {}}; }
  static std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span<const char>(s)); }
};
template <>
struct Codec<std::string> : Codec<std::string_view> {
  static ValueType wanted() { return type(std::string_view{}); }
  static bool accepts(const ValueType& t) { return t.kind == ValueKind::String; }
  static std::string build(std::span<const std::byte> b, const ValueType& /*type*/) {
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());  // NOLINT: bytes of chars
  }
};
template <std::size_t N>
struct Codec<char[N]> : Codec<std::string_view> {};

template <>
struct Codec<std::span<const std::byte>> {
  static ValueType type(std::span<const std::byte>) { return ValueType{}; }
  static std::span<const std::byte> bytes(std::span<const std::byte> b) { return b; }
};
// Raw bytes of any stored value.
template <>
struct Codec<std::vector<std::byte>> {
  static ValueType type(const std::vector<std::byte>&) { return ValueType{}; }
  static std::span<const std::byte> bytes(const std::vector<std::byte>& b) { return b; }
  static ValueType wanted() { return {}; }
  static bool accepts(const ValueType&) { return true; }
  static std::vector<std::byte> build(std::span<const std::byte> b, const ValueType& /*type*/) {
    return {b.begin(), b.end()};
  }
};

template <Arithmetic T>
ValueType ndarray_type(std::span<const std::uint64_t> shape) {
  ValueType t = element_type<T>(ValueKind::NdArray);
  if (shape.empty() || shape.size() > kMaxRank) throw_invalid_index("rank must be 1..4");
  t.rank = static_cast<std::uint32_t>(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) t.shape[d] = shape[d];
  return t;
}

template <Arithmetic T>
struct Codec<NdView<T>> {
  static ValueType type(const NdView<T>& v) {
    if (!v.contiguous()) throw_invalid_index("only a contiguous NdView can be stored; materialize the slice first");
    return ndarray_type<T>(v.shape());
  }
  static std::span<const std::byte> bytes(const NdView<T>& v) { return std::as_bytes(v.flat()); }
};
template <Arithmetic T>
struct Codec<NdArray<T>> {
  static ValueType type(const NdArray<T>& a) { return ndarray_type<T>(a.shape()); }
  static std::span<const std::byte> bytes(const NdArray<T>& a) { return std::as_bytes(a.flat()); }
  static ValueType wanted() { return element_type<T>(ValueKind::NdArray); }
  static bool accepts(const ValueType& t) {
    ValueType want = wanted();
    return t.kind == want.kind && t.elem == want.elem && t.elem_size == want.elem_size;
  }
  static NdArray<T> build(std::span<const std::byte> b, const ValueType& t) {
    const auto* first = reinterpret_cast<const T*>(b.data());  // NOLINT: stored as T
    return NdArray<T>(std::vector<std::uint64_t>(t.shape.begin(), t.shape.begin() + t.rank),
                      std::vector<T>(first, first + b.size() / sizeof(T)));
  }
};

}  // namespace sealstore
