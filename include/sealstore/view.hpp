// sealstore::View, a pinned read-only window onto one sealed object, where it
// lies in the segment. While a View lives, no process can free or change the
// object. Keep the View, not pointers taken from it. A View may be used from
// any thread; one View is not to be moved and read at once from two threads.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "sealstore/ref.hpp"
#include "sealstore/value.hpp"

namespace sealstore {

namespace detail {
class Session;
}

class View {
 public:
  View() noexcept = default;  // empty: holds nothing
  View(View&& other) noexcept;
  View& operator=(View&& other) noexcept;
  View(const View&) = delete;
  View& operator=(const View&) = delete;
  ~View();  // releases the pin (and completes a deferred erase if it was the last)

  bool empty() const noexcept { return session_ == nullptr; }
  const RemoteRef& ref() const noexcept { return ref_; }
  std::size_t size() const noexcept { return bytes_.size(); }
  // The object's bytes, mapped read-only in this process.
  std::span<const std::byte> bytes() const noexcept { return bytes_; }
  // The stored value's type, as it was when fetch() pinned the object.
  // Errors: InvalidArgument (empty view), Corrupt (the stored type cannot
  // describe the object's size).
  ValueType type() const;

  // Typed access, no copy. Each throws Error(TypeMismatch) naming both types
  // when the stored value is not of the asked-for type, and Error(Corrupt)
  // when the stored type does not fit the object's size.
  template <Element T>
  const T& as() const {
    check(element_type<T>(ValueKind::Scalar));
    return *reinterpret_cast<const T*>(bytes_.data());  // NOLINT: stored as T, aligned to 64
  }
  template <Element T>
  std::span<const T> as_span() const {  // an Array of T, or the elements of an NdArray of T
    check_elements(element_type<T>(ValueKind::Array));
    return {reinterpret_cast<const T*>(bytes_.data()), bytes_.size() / sizeof(T)};  // NOLINT
  }
  std::string_view as_string() const;
  template <Arithmetic T>
  NdView<T> as_ndarray() const {
    ValueType t = check_ndarray(element_type<T>(ValueKind::NdArray));
    return NdView<T>(reinterpret_cast<const T*>(bytes_.data()), std::span(t.shape.data(), t.rank));  // NOLINT
  }

  // Drops the pin now; the view becomes empty.
  void reset() noexcept;

 private:
  friend class Store;
  View(std::shared_ptr<detail::Session> session, std::uint32_t index, RemoteRef ref, std::span<const std::byte> bytes,
       const ValueType& type, bool type_fits) noexcept
      : session_(std::move(session)), index_(index), ref_(ref), bytes_(bytes), type_(type), type_fits_(type_fits) {}
  void check(const ValueType& want) const;
  void check_elements(const ValueType& want) const;
  ValueType check_ndarray(const ValueType& want) const;

  std::shared_ptr<detail::Session> session_;
  std::uint32_t index_ = 0;
  RemoteRef ref_;
  std::span<const std::byte> bytes_;
  // The stored type, read with the bytes when the object was pinned; never
  // re-read, so indexing is bounded by what was fetched.
  ValueType type_;
  bool type_fits_ = false;
};

}  // namespace sealstore
