#include "segments.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "table.hpp"

namespace sealstore::memstat {

std::string_view to_string(SegmentStatus s) {
  switch (s) {
    case SegmentStatus::Ok: return "ok";
    case SegmentStatus::BeingCreated: return "being-created";
    case SegmentStatus::Incompatible: return "incompatible";
    case SegmentStatus::Corrupt: return "corrupt";
    case SegmentStatus::NoAccess: return "no-access";
    case SegmentStatus::Gone: return "gone";
    case SegmentStatus::Error: return "error";
  }
  return "?";
}

SegmentListing inspect_segment(const std::string& name, const std::string& directory) {
  SegmentListing l;
  l.name = name;
  l.path = Store::path_of(name, directory);
  l.file = file_facts(l.path);
  if (!l.file) {
    l.status = SegmentStatus::Gone;
    l.error = fmt::format("segment '{}' does not exist (no file {})", name, l.path);
    return l;
  }
  l.created_unix_ns = l.file->change_unix_ns;
  l.lock_holders = flock_holders(l.file->id);
  // An observer attach waits while the creator initialises: do not wait.
  if (std::any_of(l.lock_holders.begin(), l.lock_holders.end(), [](const FlockHolder& h) { return h.exclusive; })) {
    l.status = SegmentStatus::BeingCreated;
    l.error = fmt::format("segment '{}' is being created (its creator holds the exclusive lock)", name);
    return l;
  }
  try {
    AttachOptions o;
    o.observer = true;
    o.directory = directory;
    Store s = Store::attach(name, o);
    l.info = s.info();
    for (const auto& p : s.processes()) (p.alive ? l.alive : l.dead) += 1;
    l.created_unix_ns = l.info->created_unix_ns;
  } catch (const Error& e) {
    l.error = e.what();
    if (std::string prefix = std::string(to_string(e.code())) + ": "; l.error.starts_with(prefix)) {
      l.error.erase(0, prefix.size());
    }
    switch (e.code()) {
      case Errc::IncompatibleSegment: l.status = SegmentStatus::Incompatible; break;
      case Errc::Corrupt: l.status = SegmentStatus::Corrupt; break;
      case Errc::PermissionDenied: l.status = SegmentStatus::NoAccess; break;
      case Errc::SegmentMissing: l.status = SegmentStatus::Gone; break;
      default: l.status = SegmentStatus::Error; break;
    }
  }
  return l;
}

std::vector<SegmentListing> list_segments(const std::string& directory) {
  std::vector<SegmentListing> out;
  for (const auto& name : Store::list(directory)) {
    SegmentListing l = inspect_segment(name, directory);
    if (l.status != SegmentStatus::Gone) out.push_back(std::move(l));
  }
  return out;
}

std::vector<GcDecision> plan_gc(std::vector<SegmentListing> segments, double min_age_seconds) {
  std::vector<GcDecision> out;
  std::uint64_t now = unix_now_ns();
  for (auto& s : segments) {
    GcDecision d;
    double age = s.created_unix_ns < now ? static_cast<double>(now - s.created_unix_ns) / 1e9 : 0;
    if (s.status == SegmentStatus::Gone) {
      d.reason = "already removed";
    } else if (s.status == SegmentStatus::NoAccess) {
      d.reason = "permission denied";
    } else if (s.status == SegmentStatus::BeingCreated) {
      d.reason = "being created";
    } else if (!s.lock_holders.empty()) {
      std::string pids;
      for (const auto& h : s.lock_holders) pids += fmt::format("{}{}", pids.empty() ? "" : ", ", h.pid);
      d.reason = fmt::format("in use: attached processes hold its lock (pid {})", pids);
    } else if (s.alive > 0) {
      d.reason = fmt::format("in use: {} live process{} attached", s.alive, s.alive == 1 ? "" : "es");
    } else if (age < min_age_seconds) {
      d.reason = fmt::format("created {} ago, under --min-age {}s", human_age(age), min_age_seconds);
    } else {
      d.remove = true;
      if (s.status == SegmentStatus::Ok) {
        d.reason = s.dead == 0   ? "unused: no process attached"
                   : s.dead == 1 ? "unused: its attached process died"
                                 : fmt::format("unused: its {} attached processes died", s.dead);
      } else {
        d.reason = fmt::format("unused and {}", to_string(s.status));
      }
    }
    d.segment = std::move(s);
    out.push_back(std::move(d));
  }
  return out;
}

// The spill files in folder (regular files only; nothing below), then it.
void remove_spill_folder(const std::string& folder) {
  int dfd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return;
  DIR* dir = ::fdopendir(dfd);
  if (dir == nullptr) {
    ::close(dfd);
    return;
  }
  while (const dirent* e = ::readdir(dir)) {
    std::string_view n = e->d_name;                            // NOLINT
    if (n != "." && n != "..") ::unlinkat(dfd, e->d_name, 0);  // NOLINT
  }
  ::closedir(dir);
  ::rmdir(folder.c_str());
}

std::vector<std::string> orphan_spill_folders(const std::string& spill_dir, const std::string& directory) {
  std::vector<std::string> out;
  DIR* dir = ::opendir(spill_dir.c_str());
  if (dir == nullptr) {
    throw Error(errno == EACCES ? Errc::PermissionDenied : Errc::InvalidArgument,
                fmt::format("cannot read spill directory {}: {}", spill_dir, std::strerror(errno)));
  }
  std::string root = spill_dir;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  while (const dirent* e = ::readdir(dir)) {
    std::string entry = e->d_name;  // NOLINT
    // sealstore.NAME.TAG, TAG eight hex digits
    constexpr std::string_view kPrefix = "sealstore.";
    if (!entry.starts_with(kPrefix) || entry.size() < kPrefix.size() + 10 || entry[entry.size() - 9] != '.') continue;
    std::string tag = entry.substr(entry.size() - 8);
    if (tag.find_first_not_of("0123456789abcdef") != std::string::npos) continue;
    std::string name = entry.substr(kPrefix.size(), entry.size() - kPrefix.size() - 9);
    try {
      Store::path_of(name);  // validates the name
    } catch (const Error&) {
      continue;
    }
    std::string folder = root;
    folder += "/";
    folder += entry;
    struct stat st {};
    if (::lstat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (Store::spill_folder(name, directory) != folder) out.push_back(folder);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

void remove_if_unused(GcDecision& d) {
  if (!d.remove) return;
  d.remove = false;
  const std::string& path = d.segment.path;
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    d.reason = errno == ENOENT ? "already removed" : fmt::format("cannot open {}: {}", path, std::strerror(errno));
    return;
  }
  // Attached processes hold LOCK_SH for as long as they are attached; a
  // process now opening the file waits for our lock, then finds it removed.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    d.reason = errno == EWOULDBLOCK ? "in use: a process attached since it was listed"
                                    : fmt::format("cannot lock {}: {}", path, std::strerror(errno));
    ::close(fd);
    return;
  }
  struct stat held {};
  struct stat named {};
  if (::fstat(fd, &held) != 0 || ::lstat(path.c_str(), &named) != 0 || held.st_dev != named.st_dev ||
      held.st_ino != named.st_ino) {
    d.reason = "replaced by another segment since it was listed";
    ::close(fd);
    return;
  }
  if (d.segment.file &&
      (held.st_ino != d.segment.file->id.inode || major(held.st_dev) != d.segment.file->id.dev_major ||
       minor(held.st_dev) != d.segment.file->id.dev_minor)) {
    d.reason = "replaced by another segment since it was listed";
    ::close(fd);
    return;
  }
  std::string folder = Store::spill_folder(d.segment.name, path.substr(0, path.rfind('/')));
  if (::unlink(path.c_str()) != 0) {
    d.reason = fmt::format("cannot remove {}: {}", path, std::strerror(errno));
    ::close(fd);
    return;
  }
  ::close(fd);
  d.remove = true;
  if (!folder.empty()) remove_spill_folder(folder);
}

}  // namespace sealstore::memstat
