// This program's table of registered functions, filled by static
// initialisers (SEALSTORE_REGISTER) before main() and only read after.
// Thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sealstore/pool.hpp"

namespace sealstore::detail {

// The entry registered under name, or nullptr. Entries never move or go.
const FunctionEntry* find_function(std::string_view name);
// Up to `limit` registered names, sorted, for messages.
std::vector<std::string> function_names(std::size_t limit);
// Throws Error(InvalidArgument) naming every failed registration.
void check_registrations();
// Throws Error(InvalidArgument) unless name is a valid function name.
void validate_function_name(std::string_view name);
// The pool workers attached to store's own segment, ascending.
std::vector<WorkerId> local_workers(const Store& store);

}  // namespace sealstore::detail
