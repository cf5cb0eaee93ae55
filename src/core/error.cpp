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

Error::Error(Errc code, const std::string& message)
    : std::runtime_error(std::string(to_string(code)) + ": " + message), code_(code) {}

}  // namespace sealstore
