#include "snapshot.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <system_error>

namespace sealstore::memstat {

std::uint64_t unix_now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace {

std::string user_name(uid_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  std::array<char, 4096> buf{};
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) return found->pw_name;
  return std::to_string(uid);
}

std::string group_name(gid_t gid) {
  group gr{};
  group* found = nullptr;
  std::array<char, 4096> buf{};
  if (::getgrgid_r(gid, &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) return found->gr_name;
  return std::to_string(gid);
}

AttachOptions observer_options(const std::string& directory) {
  AttachOptions o;
  o.observer = true;
  o.directory = directory;
  return o;
}

}  // namespace

std::optional<FileFacts> file_facts(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  FileFacts f;
  f.id = FileId{major(st.st_dev), minor(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
  f.uid = st.st_uid;
  f.gid = st.st_gid;
  f.mode = st.st_mode & 07777U;
  f.size = static_cast<std::uint64_t>(st.st_size);
  f.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
  f.change_unix_ns =
      static_cast<std::uint64_t>(st.st_ctim.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(st.st_ctim.tv_nsec);
  f.owner = user_name(st.st_uid);
  f.group = group_name(st.st_gid);
  return f;
}

const ProcessRow* Snapshot::process_by_id(WorkerId id) const {
  for (const auto& p : processes) {
    if (p.info.id == id) return &p;
  }
  return nullptr;
}

Inspector::Inspector(const std::string& name, const std::string& directory)
    : name_(name),
      directory_(directory),
      path_(Store::path_of(name, directory)),
      store_(Store::attach(name, observer_options(directory))) {
  // Memory is attributed by the file's identity: make sure the file the
  // name leads to now is the one we mapped (it may have been replaced
  // between the attach and the stat).
  for (int attempt = 0;; ++attempt) {
    auto facts = file_facts(path_);
    if (!facts) {
      throw Error(Errc::SegmentMissing,
                  fmt::format("segment '{}' was removed while attaching (no file {})", name, path_));
    }
    file_ = *facts;
    if (process_maps_file(::getpid(), file_.id)) break;
    if (attempt == 3) {
      throw Error(Errc::Corrupt, fmt::format("segment '{}' keeps being replaced while attaching", name));
    }
    store_ = Store::attach(name, observer_options(directory));
  }
}

Snapshot Inspector::take(bool with_memory) const {
  Snapshot s;
  s.time_unix_ns = unix_now_ns();
  s.taken = std::chrono::steady_clock::now();
  s.segment = store_.info();
  auto now = file_facts(path_);
  s.removed = !now || now->id != file_.id;
  s.file = s.removed ? file_ : *now;
  s.objects = store_.objects();
  s.with_memory = with_memory;
  ResidentPages all(s.segment.file_size);
  bool all_exact = true;
  for (const ProcessInfo& info : store_.processes()) {
    ProcessRow row;
    row.info = info;
    row.stat = read_proc_stat(info.pid);
    bool same = row.stat && row.stat->start_time == info.start_time && row.stat->state != 'Z' &&
                row.stat->state != 'X' && row.stat->state != 'x';
    if (same && with_memory) {
      try {
        row.memory = read_process_memory(info.pid, file_.id, s.segment.file_size);
      } catch (const std::system_error& e) {
        row.memory_error = e.code() == std::errc::permission_denied
                               ? fmt::format("permission denied reading /proc/{}/smaps", info.pid)
                               : e.what();
      }
      // The pid may have been reused while we read: check it again.
      auto again = read_proc_stat(info.pid);
      same = again && again->start_time == info.start_time && again->state != 'Z';
      if (same) row.stat = again;
    }
    row.alive = same;
    if (!row.alive) {
      row.memory.reset();
      row.memory_error.clear();
      row.stat.reset();
    } else {
      row.cpu_percent_since_start = cpu_percent_since_start(*row.stat);
      if (row.memory) {
        if (row.memory->segment_resident_exact) {
          all.merge(row.memory->segment_pages);
        } else {
          all_exact = false;
        }
      } else if (with_memory) {
        all_exact = false;
      }
    }
    s.processes.push_back(std::move(row));
  }
  if (with_memory && all_exact) s.segment_resident_total = all.bytes();
  return s;
}

}  // namespace sealstore::memstat
