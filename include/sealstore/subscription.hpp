// sealstore::Subscription: the seals of a store, as they happen, in every
// attached process. Store::subscribe() makes one; next() returns the seals
// that came after it, one at a time, in the store's seal order.
//
// Events live in a ring in the segment (4096 of them). Sealers never wait
// for subscribers: one that falls more than the ring behind loses the
// oldest events, and the next event it gets says how many (`missed`);
// Store::objects() then tells it what it missed. Waiting sleeps on a futex
// and uses no CPU. Move-only; use one Subscription from one thread at a
// time. A Subscription keeps its store's attachment, as a Store does.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "sealstore/ref.hpp"
#include "sealstore/value.hpp"

namespace sealstore {

namespace detail {
class Session;
}

struct SealEvent {
  // Its place in the store's seal order: one more than the previous
  // event's, across every process.
  std::uint64_t sequence = 0;
  // Events lost just before this one: the subscriber fell a whole ring
  // behind, or a sealer died while publishing. Those objects are sealed
  // all the same; Store::objects() lists them.
  std::uint64_t missed = 0;
  RemoteRef ref{};
  ValueType type{};
  std::uint64_t size = 0;  // bytes
  WorkerId sealed_by = 0;  // the worker that sealed it
  std::int32_t sealed_by_pid = 0;
};

class Subscription {
 public:
  Subscription() noexcept = default;
  Subscription(Subscription&& other) noexcept;
  Subscription& operator=(Subscription&& other) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription();

  bool empty() const noexcept { return session_ == nullptr; }
  // The next seal event, waiting (asleep) up to timeout for one; an empty
  // optional if none came. spin: poll this long before sleeping, as
  // FetchOptions::spin. Errors: InvalidArgument (empty, inherited across
  // fork, or a negative timeout).
  std::optional<SealEvent> next(std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max(),
                                std::chrono::nanoseconds spin = std::chrono::nanoseconds{0});
  // Never waits.
  std::optional<SealEvent> try_next() { return next(std::chrono::nanoseconds{0}); }
  // The sequence number of the next event next() will return (if it has
  // not been lost by then).
  std::uint64_t position() const noexcept { return position_; }
  // Events lost so far, in all.
  std::uint64_t missed() const noexcept { return missed_; }

 private:
  friend class Store;
  Subscription(std::shared_ptr<detail::Session> s, std::uint64_t position) noexcept
      : session_(std::move(s)), position_(position) {}
  void release() noexcept;

  std::shared_ptr<detail::Session> session_;
  std::uint64_t position_ = 0;
  std::uint64_t missed_ = 0;
  std::uint64_t pending_ = 0;  // lost, not yet reported in an event's `missed`
};

}  // namespace sealstore
