// sealstore::View, a pinned read-only window onto one sealed object, where it
// lies in the segment. While a View lives, no process can free or change the
// object. Keep the View, not pointers taken from it. A View may be used from
// any thread; one View is not to be moved and read at once from two threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "sealstore/ref.hpp"
#include "sealstore/value.hpp"

namespace sealstore {

namespace detail {
class Session;
struct ThreadCache;
// What a fetch pinned: the entry, its bytes, and its stored type as it lies
// in the segment (decoded by View::type()). Written by the store in place.
struct PinnedObject {
  std::uint32_t index = 0;
  std::span<const std::byte> bytes;
  std::array<std::uint64_t, 2 + kMaxRank> type;  // not zeroed: written before it is read
};
}  // namespace detail

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
  std::size_t size() const noexcept { return pin_.bytes.size(); }
  // The object's bytes, mapped read-only in this process.
  std::span<const std::byte> bytes() const noexcept { return pin_.bytes; }
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
    return *reinterpret_cast<const T*>(pin_.bytes.data());  // NOLINT: stored as T, aligned to 64
  }
  template <Element T>
  std::span<const T> as_span() const {  // an Array of T, or the elements of an NdArray of T
    check_elements(element_type<T>(ValueKind::Array));
    return {reinterpret_cast<const T*>(pin_.bytes.data()), pin_.bytes.size() / sizeof(T)};  // NOLINT
  }
  std::string_view as_string() const;
  template <Arithmetic T>
  NdView<T> as_ndarray() const {
    ValueType t = check_ndarray(element_type<T>(ValueKind::NdArray));
    return NdView<T>(reinterpret_cast<const T*>(pin_.bytes.data()), std::span(t.shape.data(), t.rank));  // NOLINT
  }

  // Drops the pin now; the view becomes empty.
  void reset() noexcept;

 private:
  friend class Store;

  void check(const ValueType& want) const;
  void check_elements(const ValueType& want) const;
  ValueType check_ndarray(const ValueType& want) const;

  // The attachment, kept alive by a handle counted on the line of the
  // thread that fetched (not by a reference count every thread shares).
  detail::Session* session_ = nullptr;
  detail::ThreadCache* hold_ = nullptr;
  RemoteRef ref_;
  // The entry, extent and stored type, copied when the object was pinned;
  // never re-read: the type is checked against the bytes fetched, so typed
  // access is bounded by what was fetched.
  detail::PinnedObject pin_;
};

}  // namespace sealstore
