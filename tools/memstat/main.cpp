// sealstore-memstat: shows where the memory of a sealstore segment is, per
// process (segment pages versus private pages), per object and for the
// segment; lists every segment on the host and removes unused ones. It uses
// the public API only, attaching as an observer.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "render.hpp"
#include "sealstore/sealstore.hpp"
#include "segments.hpp"
#include "snapshot.hpp"

namespace sealstore::memstat {
namespace {

constexpr const char* kProgram = "sealstore-memstat";

// Writes all of text to stdout; false when stdout is gone (a closed pipe).
bool emit(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return std::ferror(stdout) == 0;
}

// The error's message without the "Code: " prefix what() carries.
std::string message_of(const Error& e) {
  std::string_view what = e.what();
  std::string prefix = std::string(to_string(e.code())) + ": ";
  if (what.starts_with(prefix)) what.remove_prefix(prefix.size());
  return std::string(what);
}

// "a, b, c", at most `limit` of them.
std::string name_list(const std::vector<std::string>& names, std::size_t limit = 20) {
  std::string list;
  for (std::size_t i = 0; i < names.size() && i < limit; ++i) list += (i == 0 ? "" : ", ") + names[i];
  if (names.size() > limit) list += fmt::format(" and {} more (see --list)", names.size() - limit);
  return list;
}

std::string directory_shown(const std::string& directory) {
  std::string path = Store::path_of("x", directory);
  return path.substr(0, path.rfind('/'));
}

std::string existing_segments_text(const std::string& directory) {
  std::vector<std::string> names;
  try {
    names = Store::list(directory);
  } catch (const Error&) {
    return {};
  }
  std::string dir = directory_shown(directory);
  if (names.empty()) return fmt::format("There are no sealstore segments in {}.", dir);
  return fmt::format("Segments in {}: {}", dir, name_list(names));
}

// --segment, else $SEALSTORE_SEGMENT, else the only segment there is.
std::string resolve_segment(const Options& o) {
  if (o.segment) return *o.segment;
  if (const char* env = std::getenv("SEALSTORE_SEGMENT"); env != nullptr && *env != '\0') return env;
  auto names = Store::list(o.directory);
  std::string dir = directory_shown(o.directory);
  if (names.empty()) {
    throw Error(Errc::SegmentMissing,
                fmt::format("there are no sealstore segments in {} (and SEALSTORE_SEGMENT is not set)", dir));
  }
  if (names.size() > 1) {
    throw UsageError(fmt::format("{} segments in {}; choose one with --segment NAME or SEALSTORE_SEGMENT: {}",
                                 names.size(), dir, name_list(names)));
  }
  return names.front();
}

int exit_code_of(Errc code) {
  switch (code) {
    case Errc::InvalidArgument: return kExitUsage;
    case Errc::SegmentMissing: return kExitMissing;
    case Errc::IncompatibleSegment: return kExitIncompatible;
    case Errc::PermissionDenied: return kExitPermission;
    case Errc::Corrupt: return kExitCorrupt;
    default: return kExitFailure;
  }
}

int show(const Options& o) {
  std::string name = resolve_segment(o);
  Store::path_of(name, o.directory);  // a bad name is a usage error, before anything else
  std::optional<Inspector> inspector;
  try {
    inspector.emplace(name, o.directory);
  } catch (const Error& e) {
    if (e.code() != Errc::SegmentMissing) throw;
    throw Error(Errc::SegmentMissing, fmt::format("{}\n{}", message_of(e), existing_segments_text(o.directory)));
  }
  bool with_memory = o.view == View::Processes;
  if (!o.watch_seconds) {
    Snapshot s = inspector->take(with_memory);
    emit(o.json ? render_view_json(o, s, nullptr, true, 0) : render_view_text(o, s, nullptr));
    return kExitOk;
  }

  // Refresh until Ctrl-C (or SIGTERM): the signals are blocked and taken
  // synchronously between refreshes, so a refresh is never cut in half.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  bool tty = ::isatty(STDOUT_FILENO) == 1;
  std::optional<Snapshot> prev;
  for (std::uint64_t seq = 0;; ++seq) {
    Snapshot s = inspector->take(with_memory);
    const Snapshot* p = prev ? &*prev : nullptr;
    std::string text;
    if (o.json) {
      text = render_view_json(o, s, p, false, seq);
    } else if (tty) {
      text = "\x1b[H\x1b[2J" + render_view_text(o, s, p);  // home, clear: refresh in place
    } else {
      text = (seq > 0 ? "\n" : "") + render_view_text(o, s, p);
    }
    if (!emit(text)) return kExitFailure;
    prev = std::move(s);
    auto wait_ns = static_cast<std::int64_t>(*o.watch_seconds * 1e9);
    timespec timeout{static_cast<std::time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    int sig = 0;
    do {
      sig = ::sigtimedwait(&stop, nullptr, &timeout);
    } while (sig < 0 && errno == EINTR);
    if (sig > 0) return kExitOk;
  }
}

int list(const Options& o) {
  auto segments = list_segments(o.directory);
  std::string dir = directory_shown(o.directory);
  emit(o.json ? render_list_json(segments, dir) : render_list_text(segments, dir));
  return kExitOk;
}

int gc(const Options& o) {
  std::string dir = directory_shown(o.directory);
  std::vector<SegmentListing> segments;
  if (o.segment) {
    Store::path_of(*o.segment, o.directory);  // validates the name
    SegmentListing l = inspect_segment(*o.segment, o.directory);
    if (l.status == SegmentStatus::Gone) {
      throw Error(Errc::SegmentMissing, fmt::format("{}\n{}", l.error, existing_segments_text(o.directory)));
    }
    segments.push_back(std::move(l));
  } else {
    segments = list_segments(o.directory);
  }
  auto decisions = plan_gc(std::move(segments), o.min_age_seconds);
  std::size_t candidates = 0;
  for (const auto& d : decisions) candidates += d.remove ? 1 : 0;

  bool asked = false;
  bool confirmed = o.yes;
  if (candidates > 0 && !o.yes) {
    if (!o.json) emit(render_gc_text(decisions, false) + "\n");
    std::fprintf(stderr, "Remove %zu unused segment%s? [y/N] ", candidates, candidates == 1 ? "" : "s");
    std::fflush(stderr);
    std::string answer;
    std::getline(std::cin, answer);
    confirmed = !answer.empty() && (answer[0] == 'y' || answer[0] == 'Y');
    asked = true;
  }
  if (candidates > 0 && confirmed) {
    for (auto& d : decisions) remove_if_unused(d);
  }
  // Spill folders left by segments that are gone: found after the
  // segments' own removal (which takes their folders along).
  std::vector<std::string> orphans;
  if (!o.spill_dir.empty() && (confirmed || candidates == 0)) {
    orphans = orphan_spill_folders(o.spill_dir, o.directory);
    if (!orphans.empty() && !o.yes) {
      if (!o.json) {
        std::string list;
        for (const auto& f : orphans) list += "  " + f + "\n";
        emit("Spill folders whose segment is gone:\n" + list);
      }
      std::fprintf(stderr, "Remove %zu spill folder%s? [y/N] ", orphans.size(), orphans.size() == 1 ? "" : "s");
      std::fflush(stderr);
      std::string answer;
      std::getline(std::cin, answer);
      if (answer.empty() || (answer[0] != 'y' && answer[0] != 'Y')) orphans.clear();
      asked = true;
    }
    for (const auto& f : orphans) remove_spill_folder(f);
  }
  if (o.json) {
    emit(render_gc_json(decisions, dir, asked, confirmed || candidates == 0, orphans));
  } else if (candidates > 0 && !confirmed) {
    emit("Nothing removed.\n");
  } else {
    emit(render_gc_text(decisions, true));
  }
  if (!o.json) {
    for (const auto& f : orphans) emit(fmt::format("Removed spill folder {} (its segment is gone)\n", f));
  }
  if (o.segment && !decisions.front().remove && !(asked && !confirmed)) {
    return decisions.front().segment.status == SegmentStatus::NoAccess ? kExitPermission : kExitInUse;
  }
  return kExitOk;
}

int run(const std::vector<std::string>& args) {
  Options o;
  try {
    o = parse_options(args);
    if (o.help) {
      emit(help_text());
      return kExitOk;
    }
    if (o.version) {
      emit(fmt::format("{} {}\n", kProgram, SEALSTORE_VERSION));
      return kExitOk;
    }
    switch (o.mode) {
      case Mode::List: return list(o);
      case Mode::Gc: return gc(o);
      case Mode::Show: return show(o);
    }
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", kProgram, e.what(), kProgram);
    return kExitUsage;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return exit_code_of(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return kExitFailure;
  }
  return kExitFailure;
}

}  // namespace
}  // namespace sealstore::memstat

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return sealstore::memstat::run(args);
}
