#include "sealstore/error.hpp"

#include <string>

namespace sealstore {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::NotFound: return "NotFound";
    case Errc::AlreadySealed: return "AlreadySealed";
    case Errc::NotSealed: return "NotSealed";
    case Errc::Timeout: return "Timeout";
    case Errc::OutOfMemory: return "OutOfMemory";
    case Errc::TypeMismatch: return "TypeMismatch";
    case Errc::InvalidArgument: return "InvalidArgument";
    case Errc::SegmentMissing: return "SegmentMissing";
    case Errc::IncompatibleSegment: return "IncompatibleSegment";
    case Errc::Corrupt: return "Corrupt";
    case Errc::PermissionDenied: return "PermissionDenied";
    case Errc::WorkerFailed: return "WorkerFailed";
    case Errc::AlreadyExists: return "AlreadyExists";
  }
  return "Unknown";
}

namespace {

// "Code: message". Built by appends: GCC 12 at -O3 warns (-Wrestrict, a
// false positive) on the operator+ chain.
std::string compose(Errc code, const std::string& message) {
  std::string_view name = to_string(code);
  std::string text;
  text.reserve(name.size() + 2 + message.size());
  text.append(name).append(": ").append(message);
  return text;
}

}  // namespace

Error::Error(Errc code, const std::string& message) : std::runtime_error(compose(code, message)), code_(code) {}

}  // namespace sealstore
