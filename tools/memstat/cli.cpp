#include "cli.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <string_view>

namespace sealstore::memstat {

namespace {

double parse_seconds(std::string_view flag, std::string_view text, double min, double max) {
  double v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size() || !std::isfinite(v) || v < min || v > max) {
    throw UsageError(fmt::format("{} takes a number of seconds from {} to {}, not '{}'", flag, min, max, text));
  }
  return v;
}

std::optional<ObjectState> parse_state(std::string_view s) {
  for (auto st : {ObjectState::Unfilled, ObjectState::Writing, ObjectState::Sealed, ObjectState::ErasePending,
                  ObjectState::Abandoned}) {
    if (s == to_string(st)) return st;
  }
  return std::nullopt;
}

}  // namespace

Options parse_options(const std::vector<std::string>& args) {
  Options o;
  bool view_given = false;
  std::vector<std::string> object_flags;  // flags that only the objects view takes
  std::vector<std::string> gc_flags;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::optional<std::string> inline_value;
    if (arg.starts_with("--")) {
      if (auto eq = arg.find('='); eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg.resize(eq);
      }
    }
    auto take_value = [&](std::string_view example) -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw UsageError(fmt::format("{} needs a value, e.g. {} {}", arg, arg, example));
      return args[++i];
    };
    auto no_value = [&] {
      if (inline_value) throw UsageError(fmt::format("{} takes no value", arg));
    };
    if (arg == "-h" || arg == "--help") {
      no_value();
      o.help = true;
    } else if (arg == "--version") {
      no_value();
      o.version = true;
    } else if (arg == "-s" || arg == "--segment") {
      o.segment = take_value("demo");
      if (o.segment->empty()) throw UsageError("--segment needs a non-empty name");
    } else if (arg == "-d" || arg == "--dir") {
      o.directory = take_value("/dev/hugepages");
      if (o.directory.empty()) throw UsageError("--dir needs a non-empty directory");
    } else if (arg == "-j" || arg == "--json") {
      no_value();
      o.json = true;
    } else if (arg == "-w" || arg == "--watch") {
      o.watch_seconds = parse_seconds(arg, take_value("2"), 0.05, 86400);
    } else if (arg == "--sort") {
      std::string v = take_value("size");
      if (v == "size") {
        o.sort = SortBy::Size;
      } else if (v == "age") {
        o.sort = SortBy::Age;
      } else {
        throw UsageError(fmt::format("--sort takes 'size' or 'age', not '{}'", v));
      }
      object_flags.push_back(arg);
    } else if (arg == "--name") {
      o.name_glob = take_value("'model/*'");
      object_flags.push_back(arg);
    } else if (arg == "--state") {
      std::string v = take_value("erase-pending");
      o.state = parse_state(v);
      if (!o.state) {
        throw UsageError(
            fmt::format("--state takes unfilled, writing, sealed, erase-pending or abandoned, not '{}'", v));
      }
      object_flags.push_back(arg);
    } else if (arg == "-l" || arg == "--list") {
      no_value();
      if (o.mode == Mode::Gc) throw UsageError("--list and --gc do not go together");
      o.mode = Mode::List;
    } else if (arg == "--gc") {
      no_value();
      if (o.mode == Mode::List) throw UsageError("--list and --gc do not go together");
      o.mode = Mode::Gc;
    } else if (arg == "-y" || arg == "--yes") {
      no_value();
      o.yes = true;
      gc_flags.push_back(arg);
    } else if (arg == "--min-age") {
      o.min_age_seconds = parse_seconds(arg, take_value("60"), 0, 1e9);
      gc_flags.push_back(arg);
    } else if (arg == "--spill-dir") {
      o.spill_dir = take_value("/var/tmp/jobs-spill");
      if (o.spill_dir.empty()) throw UsageError("--spill-dir needs a directory");
      gc_flags.push_back(arg);
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError(fmt::format("unknown flag '{}'", args[i]));
    } else {
      if (view_given) throw UsageError(fmt::format("one view at a time: '{}' follows another view", arg));
      view_given = true;
      if (arg == "processes") {
        o.view = View::Processes;
      } else if (arg == "objects") {
        o.view = View::Objects;
      } else if (arg == "segment") {
        o.view = View::Segment;
      } else if (arg == "replicas") {
        o.view = View::Replicas;
      } else {
        throw UsageError(fmt::format("unknown view '{}': use processes, objects, segment or replicas", arg));
      }
    }
  }
  if (o.help || o.version) return o;
  if (o.mode != Mode::Show && view_given) {
    throw UsageError(fmt::format("{} shows no view: drop the view name", o.mode == Mode::List ? "--list" : "--gc"));
  }
  if (o.mode != Mode::Show && o.watch_seconds) {
    throw UsageError("--watch refreshes a view (processes, objects, segment or replicas), not --list or --gc");
  }
  if (o.mode == Mode::List && o.segment) throw UsageError("--list shows every segment: drop --segment");
  if (!object_flags.empty() && (o.mode != Mode::Show || o.view != View::Objects)) {
    throw UsageError(fmt::format("{} applies to the objects view only", object_flags.front()));
  }
  if (!gc_flags.empty() && o.mode != Mode::Gc) {
    throw UsageError(fmt::format("{} applies to --gc only", gc_flags.front()));
  }
  return o;
}

std::string help_text() {
  return R"(Usage: sealstore-memstat [--segment NAME] [processes|objects|segment|replicas] [--json] [--watch SECONDS]
       sealstore-memstat --list [--json]
       sealstore-memstat --gc [--segment NAME] [--yes] [--min-age SECONDS] [--spill-dir DIR] [--json]

Shows where the memory of a sealstore segment is: per attached process, the
segment's pages it maps (shared, counted once however many processes read
them) apart from its own private memory; every object; the segment itself.
It only reads: it takes no process slot, pins nothing and locks nothing.

Views:
  processes        every attached process (the default): pid, worker id, role,
                   alive or dead, segment-resident and private memory, PSS, %CPU,
                   pins and objects created
                     sealstore-memstat --segment demo
  objects          every object: ref, name, size, type, state, creator, pins, age;
                   erased objects still pinned say who pins them
                     sealstore-memstat --segment demo objects
  segment          capacity, used, free, largest free block, layout, backing file
                     sealstore-memstat --segment demo segment
  replicas         on a host of a cluster: the copies of other hosts' objects held
                   here, the host each came from, and the bytes received
                     sealstore-memstat --segment job.host1 replicas

Options:
  -s, --segment NAME   the segment; default $SEALSTORE_SEGMENT, else the only one
                       in the directory
                         sealstore-memstat --segment demo objects
  -d, --dir DIR        where the backing files are (default /dev/shm)
                         sealstore-memstat --dir /dev/hugepages --list
  -j, --json           print JSON (schema "sealstore-memstat", version 1, see
                       docs/memstat.md) instead of tables
                         sealstore-memstat --json | python3 -m json.tool
  -w, --watch SECONDS  refresh every SECONDS until Ctrl-C, showing changes since
                       the previous refresh; %CPU is then over the interval (one
                       JSON document per line with --json)
                         sealstore-memstat --watch 2
      --sort size|age  objects: largest first, or oldest first (the default)
                         sealstore-memstat objects --sort size
      --name GLOB      objects: only those with a name matching GLOB
                         sealstore-memstat objects --name 'model/*'
      --state STATE    objects: only those in STATE (unfilled, writing, sealed,
                       erase-pending, abandoned)
                         sealstore-memstat objects --state erase-pending
  -l, --list           every segment in the directory: size, owner, live attached
                       processes, lock holders, state
                         sealstore-memstat --list
      --gc             remove the segments no live process is attached to (those
                       whose file lock nobody holds), asking first; with
                       --segment, only that one
                         sealstore-memstat --gc
  -y, --yes            --gc: do not ask
                         sealstore-memstat --gc --yes
      --min-age SECONDS
                       --gc: spare segments created less than SECONDS ago
                       (default 10), which may still be being set up
                         sealstore-memstat --gc --min-age 3600
      --spill-dir DIR  --gc: also remove the spill folders in DIR (a segment's
                       CreateOptions::spill_directory) whose segment is gone
                       from the directory or is another incarnation (a
                       segment removed while in use, whose last process died)
                         sealstore-memstat --gc --spill-dir /var/tmp/jobs-spill
  -h, --help           this text
                         sealstore-memstat --help
      --version        the sealstore version
                         sealstore-memstat --version

%CPU is the average since each process started (as ps shows it) for a single
report, and the use over the last interval with --watch.

Exit codes:
  0  success
  1  another failure (an I/O error)
  2  bad flag or value, or several segments and none chosen
  3  the segment does not exist (the message lists those that do)
  4  the segment is of another layout version or build
  5  permission denied (the segment's mode, or another user's /proc)
  6  the segment is corrupt (e.g. its creator died while creating it)
  7  --gc --segment NAME: the segment is in use and was kept
)";
}

}  // namespace sealstore::memstat
