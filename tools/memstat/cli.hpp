// memstat's command line: the options, their parsing and the help text,
// and the exit codes (documented in docs/memstat.md and --help).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "sealstore/stats.hpp"

namespace sealstore::memstat {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,       // anything not listed below (an I/O error, a bug)
  kExitUsage = 2,         // bad flag or value, or no segment chosen among several
  kExitMissing = 3,       // the segment (or any segment) does not exist
  kExitIncompatible = 4,  // another layout version or build
  kExitPermission = 5,    // the segment's mode or /proc does not admit us
  kExitCorrupt = 6,       // the segment fails validation (e.g. never initialised)
  kExitInUse = 7,         // --gc --segment NAME: the segment is in use, kept
};

enum class View { Processes, Objects, Segment, Replicas };
enum class Mode { Show, List, Gc };
enum class SortBy { Age, Size };

struct Options {
  Mode mode = Mode::Show;
  View view = View::Processes;
  std::optional<std::string> segment;  // --segment, else SEALSTORE_SEGMENT
  std::string directory;               // --dir; empty: the library's default
  bool json = false;
  std::optional<double> watch_seconds;
  SortBy sort = SortBy::Age;
  std::optional<std::string> name_glob;
  std::optional<ObjectState> state;
  bool yes = false;
  double min_age_seconds = 10;  // --gc: spare segments younger than this
  std::string spill_dir;        // --gc --spill-dir: also remove spill folders whose segment is gone
  bool help = false;
  bool version = false;
};

// A bad command line; what() says what is wrong and how to fix it.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses argv[1..]. Throws UsageError.
Options parse_options(const std::vector<std::string>& args);

std::string help_text();

}  // namespace sealstore::memstat
