// Every segment in a directory (--list) and removing the unused ones
// (--gc). Reading takes observer attachments only. Removal is proven safe
// by the file lock: every attached process holds flock(LOCK_SH) on the
// backing file for as long as it is attached (a creator holds LOCK_EX while
// it initialises), so taking LOCK_EX without waiting proves nobody is.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proc_memory.hpp"
#include "sealstore/store.hpp"
#include "snapshot.hpp"

namespace sealstore::memstat {

enum class SegmentStatus {
  Ok,            // attached and read
  BeingCreated,  // its creator holds the exclusive lock
  Incompatible,  // another layout version or build
  Corrupt,       // fails validation, e.g. never initialised
  NoAccess,      // permission denied
  Gone,          // removed while we looked
  Error,         // anything else
};
std::string_view to_string(SegmentStatus s);

struct SegmentListing {
  std::string name;
  std::string path;
  std::optional<FileFacts> file;
  SegmentStatus status = SegmentStatus::Ok;
  std::string error;                // the error's message when not Ok
  std::optional<SegmentInfo> info;  // when Ok
  std::uint32_t alive = 0;          // attached processes running
  std::uint32_t dead = 0;           // slots of dead processes not yet reaped
  std::vector<FlockHolder> lock_holders;
  // When it was made: the header's creation time, else the file's ctime.
  std::uint64_t created_unix_ns = 0;
};

// One segment, by name.
SegmentListing inspect_segment(const std::string& name, const std::string& directory);
// Every segment in directory, by name. Throws sealstore::Error when the
// directory cannot be read.
std::vector<SegmentListing> list_segments(const std::string& directory);

struct GcDecision {
  SegmentListing segment;
  bool remove = false;  // planned, then whether it was removed
  std::string reason;
};
// Which segments are candidates: those nobody holds the lock of, with no
// live process attached, made at least min_age_seconds ago.
std::vector<GcDecision> plan_gc(std::vector<SegmentListing> segments, double min_age_seconds);
// Removes a candidate if, holding its lock exclusively, it is still the
// same file; else keeps it and says why. Never blocks.
void remove_if_unused(GcDecision& d);

// The folders in spill_dir named as a segment's spill folder
// (sealstore.NAME.TAG) whose segment is not in directory, or is another
// incarnation (another tag), or does not spill there.
std::vector<std::string> orphan_spill_folders(const std::string& spill_dir, const std::string& directory);
// Removes a spill folder: the regular files in it, then it.
void remove_spill_folder(const std::string& folder);

}  // namespace sealstore::memstat
