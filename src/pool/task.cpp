#include "pool/task.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <string>

#include "pool/registry.hpp"

namespace sealstore::detail {

void run_task(Store& store, const RemoteRef& result, std::string_view fn, std::span<const std::byte> args) noexcept {
  std::string reason;
  try {
    const FunctionEntry* f = find_function(fn);
    if (f == nullptr) {
      throw Error(Errc::NotFound, fmt::format("no function '{}' is registered in this program", fn));
    }
    Context cx = ContextAccess::make(store, result, fn);
    f->invoke(cx, args);
    return;
  } catch (const std::exception& e) {  // a sealstore::Error's text starts with its code's name
    reason = e.what();
  } catch (...) {
    reason = "an exception of unknown type";
  }
  try {
    store.fail(result, fmt::format("worker {} (pid {}) failed running '{}': {}", store.myid(), ::getpid(), fn, reason));
  } catch (...) {  // NOLINT(bugprone-empty-catch): AlreadySealed: the function sealed its result, then threw
  }
}

}  // namespace sealstore::detail
