// sealstore::Error, the one exception type every sealstore call throws, and
// its closed set of codes. Codes are chosen by what the caller does next; the
// message names the ref, segment, sizes or errno text involved.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace sealstore {

enum class Errc : int {
  NotFound = 1,         // no such ref, name, worker or function (or it was erased)
  AlreadySealed,        // the ref was filled already (or is being filled)
  NotSealed,            // the operation needs a sealed object, or a finished write
  Timeout,              // a bounded wait ran out
  OutOfMemory,          // the segment, its tables or the mount are too small
  TypeMismatch,         // the stored value is of another type or shape
  InvalidArgument,      // malformed input: ref text, name, size, option
  SegmentMissing,       // no segment of that name
  IncompatibleSegment,  // a segment of another layout version or build
  Corrupt,              // the segment's contents fail validation
  PermissionDenied,     // the segment's mode does not admit this process
  WorkerFailed,         // a process died, or a remote function threw
  AlreadyExists,        // create() of a segment that exists
};

// "NotFound", "AlreadySealed", ...
std::string_view to_string(Errc code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message);
  Errc code() const noexcept { return code_; }

 private:
  Errc code_;
};

}  // namespace sealstore
