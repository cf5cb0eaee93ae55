// Running one task: in a worker, or in the pool's own process (worker 1).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "sealstore/pool.hpp"

namespace sealstore::detail {

struct ContextAccess {
  static Context make(Store& store, const RemoteRef& result, std::string_view function) noexcept {
    return {store, result, function};
  }
};

// True in a process running Pool::worker_main: a function it runs may
// make a pool of its own.
bool in_worker_main() noexcept;

// Runs the registered function fn on args and seals its result under
// result, or fails result with the reason (an exception's message, an
// unregistered name) so that fetchers get WorkerFailed. Never throws.
void run_task(Store& store, const RemoteRef& result, std::string_view fn, std::span<const std::byte> args) noexcept;

}  // namespace sealstore::detail
