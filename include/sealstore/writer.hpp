// sealstore::Writer, the one mutable state in sealstore: space in the segment
// that its process fills in place, then publishes with seal(). Dropping a
// writer unsealed aborts it and frees its space. Move-only; use one writer
// from one thread at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "sealstore/ref.hpp"
#include "sealstore/value.hpp"

namespace sealstore {

namespace detail {
class Session;
struct ThreadCache;
}  // namespace detail

class Writer {
 public:
  Writer() noexcept = default;
  Writer(Writer&& other) noexcept;
  Writer& operator=(Writer&& other) noexcept;
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer();  // aborts an unsealed writer

  bool empty() const noexcept { return session_ == nullptr; }
  // The ref the object will be sealed under. Fetchers of it wait for seal().
  const RemoteRef& ref() const noexcept { return ref_; }
  std::span<std::byte> bytes() const noexcept { return bytes_; }
  template <Element T>
  std::span<T> as_span() const noexcept {
    return {reinterpret_cast<T*>(bytes_.data()), bytes_.size() / sizeof(T)};  // NOLINT: aligned to 64
  }

  // Publishes the bytes: from now on they never change, and every waiting
  // fetch wakes. Consumes the writer. Does not block.
  RemoteRef seal() &&;
  // Gives the space back; a ref made with make_ref() returns to unfilled.
  void abort() && noexcept;

 private:
  friend class Store;
  Writer(detail::Session* session, detail::ThreadCache* hold, std::uint32_t index, RemoteRef ref,
         std::span<std::byte> bytes) noexcept
      : session_(session), hold_(hold), index_(index), ref_(ref), bytes_(bytes) {}
  // Gives back the hold on the session; the writer becomes empty.
  void release() noexcept;

  // The attachment, kept alive by a handle (see View).
  detail::Session* session_ = nullptr;
  detail::ThreadCache* hold_ = nullptr;
  std::uint32_t index_ = 0;
  RemoteRef ref_;
  std::span<std::byte> bytes_;
};

}  // namespace sealstore
