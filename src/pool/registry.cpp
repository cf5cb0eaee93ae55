#include "pool/registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "pool/control.hpp"
#include "sealstore/error.hpp"
#include "store/cluster_link.hpp"

namespace sealstore::detail {

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, std::unique_ptr<FunctionEntry>, std::less<>> functions;
  std::vector<std::string> errors;
};

// Constructed on first use: registrations run during static
// initialisation, in an order across files that nobody controls.
Registry& registry() {
  static Registry r;
  return r;
}

bool valid_function_name(std::string_view name) {
  if (name.empty() || name.size() >= kFunctionNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == ':' || c == '/';
  });
}

}  // namespace

void validate_function_name(std::string_view name) {
  if (!valid_function_name(name)) {
    throw Error(Errc::InvalidArgument,
                fmt::format("invalid function name '{}': use 1 to {} of letters, digits, '.', '_', '-', ':', '/'", name,
                            kFunctionNameBytes - 1));
  }
}

bool register_entry(FunctionEntry entry) noexcept {
  try {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    if (!valid_function_name(entry.name)) {
      r.errors.push_back(fmt::format("invalid function name '{}'", entry.name));
      return false;
    }
    if (r.functions.count(entry.name) != 0) {
      r.errors.push_back(fmt::format("function '{}' is registered twice", entry.name));
      return false;
    }
    std::string name = entry.name;
    r.functions.emplace(std::move(name), std::make_unique<FunctionEntry>(std::move(entry)));
    return true;
  } catch (...) {  // out of memory during static initialisation: nothing sensible to report it to
    return false;
  }
}

const FunctionEntry* find_function(std::string_view name) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.functions.find(name);
  return it == r.functions.end() ? nullptr : it->second.get();
}

std::vector<std::string> function_names(std::size_t limit) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [name, entry] : r.functions) {
    if (out.size() == limit) break;
    out.push_back(name);
  }
  return out;
}

void check_registrations() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  if (r.errors.empty()) return;
  throw Error(Errc::InvalidArgument, fmt::format("function registration failed: {}", fmt::join(r.errors, "; ")));
}

// ---- arguments

std::string describe(const ArgSig& sig) {
  switch (sig.kind) {
    case ArgKind::String: return "string";
    case ArgKind::Ref: return "RemoteRef";
    case ArgKind::Value: {
      ValueType t;
      t.kind = ValueKind::Scalar;
      t.elem = sig.elem;
      t.elem_size = sig.size;
      t.type_hash = sig.type_hash;
      return t.describe();
    }
  }
  return "?";
}

std::span<const std::byte> ArgReader::next(const ArgSig& want) {
  std::size_t index = index_++;
  if (bytes_.size() - pos_ < sizeof(ArgHeader)) {
    throw Error(Errc::InvalidArgument,
                fmt::format("'{}' takes more arguments than the {} given: argument {} ({}) is missing", function_,
                            index, index + 1, describe(want)));
  }
  ArgHeader h{};
  std::memcpy(&h, bytes_.data() + pos_, sizeof h);
  std::size_t padded = (std::size_t{h.size} + 7) & ~std::size_t{7};
  if (bytes_.size() - pos_ - sizeof h < padded) {
    throw Error(Errc::InvalidArgument, fmt::format("argument {} of '{}' is truncated", index + 1, function_));
  }
  ArgSig got{h.kind, h.elem, h.kind == ArgKind::String ? 0 : h.size, h.type_hash};
  if (!(got == want)) {
    throw Error(Errc::TypeMismatch, fmt::format("argument {} of '{}' is {}, but '{}' takes {}", index + 1, function_,
                                                describe(got), function_, describe(want)));
  }
  std::span<const std::byte> payload = bytes_.subspan(pos_ + sizeof h, h.size);
  pos_ += sizeof h + padded;
  return payload;
}

void ArgReader::finish() const {
  if (pos_ != bytes_.size()) {
    throw Error(Errc::InvalidArgument, fmt::format("'{}' takes {} arguments; more were given", function_, index_));
  }
}

// ---- results

void seal_empty_result(Context& cx) {
  try {
    cx.store().put_bytes(cx.result(), ValueType{}, {});
  } catch (const Error& e) {
    if (e.code() != Errc::AlreadySealed) throw;  // the function filled its result itself
  }
}

void seal_result_writer(Context& cx, Writer&& w) {
  if (w.empty() || !(w.ref() == cx.result())) {
    throw Error(Errc::InvalidArgument, fmt::format("'{}' returned a Writer that is not for its result {}: make it with "
                                                   "Context::result_writer()",
                                                   cx.function(), cx.result().to_string()));
  }
  std::move(w).seal();
}

}  // namespace sealstore::detail

namespace sealstore {

namespace detail {
std::vector<WorkerId> local_workers(const Store& store) {
  std::vector<WorkerId> out;
  for (const ProcessInfo& p : store.processes()) {
    if (p.role == Role::Worker && p.alive) out.push_back(p.id);
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace detail

std::vector<WorkerId> workers(const Store& store) {
  if (detail::cluster::cluster_of(store) == nullptr) return detail::local_workers(store);
  // One host of a cluster: its serving process asks every host.
  std::vector<std::byte> answer = detail::cluster::ask(const_cast<Store&>(store),  // NOLINT: asks, changes nothing
                                                       detail::cluster::Kind::Workers, {});
  std::vector<WorkerId> out(answer.size() / sizeof(WorkerId));
  if (!out.empty()) std::memcpy(out.data(), answer.data(), out.size() * sizeof(WorkerId));
  return out;
}

}  // namespace sealstore
