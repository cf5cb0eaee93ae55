// memstat's output: each view as tables for people or as JSON (schema
// "sealstore-memstat", version 1, documented in docs/memstat.md). Pure
// functions of the snapshots given.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli.hpp"
#include "segments.hpp"
#include "snapshot.hpp"

namespace sealstore::memstat {

inline constexpr int kSchemaVersion = 1;

// prev: the previous refresh under --watch (deltas and %CPU over the
// interval), else nullptr.
std::string render_view_text(const Options& o, const Snapshot& now, const Snapshot* prev);
// pretty: indented (a single report); else one line (--watch).
std::string render_view_json(const Options& o, const Snapshot& now, const Snapshot* prev, bool pretty,
                             std::uint64_t sequence);

std::string render_list_text(const std::vector<SegmentListing>& segments, const std::string& directory);
std::string render_list_json(const std::vector<SegmentListing>& segments, const std::string& directory);

std::string render_gc_text(const std::vector<GcDecision>& decisions, bool done);
// spill_folders: the orphaned spill folders removed (--spill-dir).
std::string render_gc_json(const std::vector<GcDecision>& decisions, const std::string& directory, bool asked,
                           bool confirmed, const std::vector<std::string>& spill_folders = {});

}  // namespace sealstore::memstat
