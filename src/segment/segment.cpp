#include "segment/segment.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "alloc/extent_allocator.hpp"
#include "registry/process.hpp"
#include "sealstore/error.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void throw_open_error(int err, const std::string& path, std::string_view what) {
  switch (err) {
    case EACCES:
    case EPERM:
      throw Error(Errc::PermissionDenied, fmt::format("cannot {} segment file {}: {}", what, path, errno_text(err)));
    case ENOENT: throw Error(Errc::SegmentMissing, fmt::format("segment file {} does not exist", path));
    case ELOOP:
      throw Error(Errc::IncompatibleSegment, fmt::format("{} is a symbolic link, not a segment; sealstore does not "
                                                         "follow links there",
                                                         path));
    case EEXIST:
      throw Error(Errc::AlreadyExists,
                  fmt::format("segment file {} already exists; attach to it or remove it first", path));
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      throw Error(Errc::OutOfMemory, fmt::format("cannot {} segment file {}: {}", what, path, errno_text(err)));
    default:
      throw Error(Errc::InvalidArgument, fmt::format("cannot {} segment file {}: {}", what, path, errno_text(err)));
  }
}

// Maps `size` bytes of fd at file offset `offset` at a 2 MiB-aligned
// address, so the data region can use huge pages where the mount allows.
std::byte* map_aligned(int fd, std::uint64_t size, std::uint64_t offset, int prot, bool populate, bool huge) {
  const std::uint64_t slack = kDataRegionAlign;
  void* reserve = ::mmap(nullptr, size + slack, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) return nullptr;
  auto raw = reinterpret_cast<std::uintptr_t>(reserve);
  std::uintptr_t aligned = (raw + slack - 1) / slack * slack;
  int flags = MAP_SHARED | MAP_FIXED | (populate ? MAP_POPULATE : 0);
  void* p = ::mmap(reinterpret_cast<void*>(aligned), size, prot, flags, fd, static_cast<off_t>(offset));  // NOLINT
  if (p == MAP_FAILED) {
    ::munmap(reserve, size + slack);
    return nullptr;
  }
  if (aligned > raw) ::munmap(reserve, aligned - raw);
  std::uintptr_t end = aligned + size;
  std::uintptr_t rend = raw + size + slack;
  if (rend > end) ::munmap(reinterpret_cast<void*>(end), rend - end);  // NOLINT
  if (huge) ::madvise(p, size, MADV_HUGEPAGE);
  return static_cast<std::byte*>(p);
}

// Tables this large or larger are put on huge pages at creation.
constexpr std::uint64_t kHugeTablesMin = std::uint64_t{8} << 20U;

// Puts the segment's tables (everything before the data region, which
// starts on a huge page) on 2 MiB pages, when they are large and the file is
// on a tmpfs. A fetch in random order among many objects otherwise takes a
// TLB miss per entry and per pin mask, which a virtualised host pays dearly
// (two-level page walks): on this project's VM, a third of fetch_many's
// time. MADV_COLLAPSE (Linux 6.1) does it whatever the mount's huge= option
// and the sysfs shmem_enabled setting say, unless that says deny. It copies
// populated pages only, so the tables are populated first. Every process
// that maps the file later maps those pages with one PMD each.
// Best effort: on an older kernel, another file system or under memory
// pressure, the tables stay on 4 KiB pages and nothing else changes.
void collapse_tables(int fd, std::byte* base, std::uint64_t bytes) {
  constexpr int kCollapse = 25;  // MADV_COLLAPSE (Linux 6.1), which glibc 2.36 does not name
  struct statfs fs {};
  if (bytes < kHugeTablesMin || ::fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC) return;
  if (::madvise(base, bytes, MADV_POPULATE_WRITE) == 0) ::madvise(base, bytes, kCollapse);
}

std::uint32_t random_tag() {
  std::uint32_t tag = 0;
  while (tag == 0) {
    if (::getrandom(&tag, sizeof tag, 0) != static_cast<ssize_t>(sizeof tag)) {
      tag = static_cast<std::uint32_t>(unix_now_ns() ^ static_cast<std::uint64_t>(::getpid()));
    }
  }
  return tag;
}

}  // namespace

void validate_segment_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 200 && name.front() != '.';
  for (char c : name) {
    bool allowed =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    ok = ok && allowed;
  }
  if (!ok) {
    throw Error(Errc::InvalidArgument,
                fmt::format("invalid segment name '{}': use 1 to 200 of letters, digits, '.', '_', '-', "
                            "not starting with '.'",
                            name));
  }
}

std::string segment_path(std::string_view name, std::string_view directory) {
  std::string dir(directory.empty() ? kDefaultDirectory : directory);
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return fmt::format("{}/{}{}", dir, kFilePrefix, name);
}

Mapping::Mapping(Mapping&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      data_ro_(std::exchange(o.data_ro_, nullptr)),
      data_ro_size_(std::exchange(o.data_ro_size_, 0)),
      path_(std::move(o.path_)),
      geo_(o.geo_),
      spill_(std::move(o.spill_)) {}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    data_ro_ = std::exchange(o.data_ro_, nullptr);
    data_ro_size_ = std::exchange(o.data_ro_size_, 0);
    path_ = std::move(o.path_);
    geo_ = o.geo_;
    spill_ = std::move(o.spill_);
  }
  return *this;
}

Mapping::~Mapping() { reset(); }

void Mapping::reset() noexcept {
  if (data_ro_ != nullptr) ::munmap(const_cast<std::byte*>(data_ro_), data_ro_size_);  // NOLINT
  if (base_ != nullptr) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);  // also drops our flock
  fd_ = -1;
  base_ = nullptr;
  data_ro_ = nullptr;
}

std::string spill_folder(std::string_view root, std::string_view name, std::uint32_t tag) {
  return fmt::format("{}/{}{}.{:08x}", root, kFilePrefix, name, tag);
}

namespace {

// The spill configuration from the header, checked as the geometry is.
SpillConfig read_spill_config(const Header& h, const Geometry& g, std::string_view name) {
  std::array<char, kSpillDirBytes> text{};
  for (std::size_t k = 0; k < kSpillDirBytes; ++k) text[k] = load(h.spill_dir[k], std::memory_order_relaxed);  // NOLINT
  text.back() = '\0';
  std::string root(text.data());
  if (root.empty()) return {};
  std::uint64_t high = load(h.spill_high, std::memory_order_relaxed);
  std::uint64_t low = load(h.spill_low, std::memory_order_relaxed);
  if (root.front() != '/' || root.find("/../") != std::string::npos || root.ends_with("/..") || high > g.capacity ||
      low > high) {
    throw Error(Errc::Corrupt,
                fmt::format("segment '{}' has a corrupt header: its spill settings do not add up", name));
  }
  return SpillConfig{root, spill_folder(root, name, g.segment_tag), high, low};
}

}  // namespace

std::string spill_folder_of(int fd, std::string_view name) {
  Header h{};
  if (::pread(fd, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h)) || h.magic != kMagic ||
      h.layout_version != kLayoutVersion) {
    return {};
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {};
  try {
    Geometry g = validate_header(h, static_cast<std::uint64_t>(st.st_size), name);
    return read_spill_config(h, g, name).dir;
  } catch (const Error&) {
    return {};
  }
}

Mapping Mapping::create(const CreateParams& p) {
  Geometry g = compute_geometry(p.capacity, p.max_objects, p.max_names);
  Mapping m;
  m.path_ = p.path;
  // The file is made unnamed (O_TMPFILE) and linked under its name only
  // once complete: nobody can see a half-made segment, a creator that dies
  // leaves nothing behind, and a fresh segment is never unlocked in the
  // open (memstat --gc). Where the mount cannot make unnamed files, it is
  // created under its name and guarded by an exclusive flock instead.
  std::string dir = p.path.substr(0, p.path.rfind('/'));
  if (::access(p.path.c_str(), F_OK) == 0) throw_open_error(EEXIST, p.path, "create");  // fail fast
  m.fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, p.mode & 07777U);
  bool unnamed = m.fd_ >= 0;
  if (!unnamed) {
    if (errno == ENOENT || errno == ENOTDIR) {
      throw Error(Errc::InvalidArgument, fmt::format("cannot create segment '{}': no directory {}", p.name, dir));
    }
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) throw_open_error(errno, dir, "create a file in");
    m.fd_ = ::open(p.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, p.mode & 07777U);
    if (m.fd_ < 0) throw_open_error(errno, p.path, "create");
  }
  // From here on, any failure removes the half-made named file.
  struct Unlinker {
    const std::string& path;
    bool armed;
    ~Unlinker() {
      if (armed) ::unlink(path.c_str());
    }
  } unlinker{p.path, !unnamed};
  struct FolderRemover {  // the spill folder, once made
    std::string path;
    ~FolderRemover() {
      if (!path.empty()) ::rmdir(path.c_str());
    }
  } folder;

  // A named file: attachers wait on this lock until the header is complete
  // (and get it at once if we die, seeing no magic).
  if (!unnamed) ::flock(m.fd_, LOCK_EX);
  ::fchmod(m.fd_, p.mode & 07777U);  // exactly the mode asked for, whatever the umask

  int rc = ::posix_fallocate(m.fd_, 0, static_cast<off_t>(g.file_size));
  if (rc != 0) {
    struct statvfs vfs {};
    std::uint64_t avail = ::statvfs(dir.c_str(), &vfs) == 0 ? std::uint64_t{vfs.f_bavail} * vfs.f_frsize : 0;
    throw Error(rc == ENOSPC ? Errc::OutOfMemory : Errc::InvalidArgument,
                fmt::format("cannot reserve {} bytes for segment '{}' ({} bytes of data plus tables) on {}: {} "
                            "({} bytes available there)",
                            g.file_size, p.name, g.capacity, dir, errno_text(rc), avail));
  }
  m.size_ = g.file_size;
  m.base_ = map_aligned(m.fd_, g.file_size, 0, PROT_READ | PROT_WRITE, p.prefault, p.huge_pages);
  if (m.base_ == nullptr)
    throw Error(Errc::OutOfMemory, fmt::format("cannot map segment '{}': {}", p.name, errno_text(errno)));
  collapse_tables(m.fd_, m.base_, g.data_offset);

  auto* h = new (m.base_) Header{};
  h->layout_version = kLayoutVersion;
  h->header_bytes = sizeof(Header);
  h->fingerprint = layout_fingerprint();
  h->segment_tag = random_tag();
  h->mode = p.mode & 07777U;
  h->file_size = g.file_size;
  h->capacity = g.capacity;
  h->max_objects = g.max_objects;
  h->max_names = g.max_names;
  h->name_slots = g.name_slots;
  h->pin_words = g.pin_words;
  h->slots_offset = g.slots_offset;
  h->stats_offset = g.stats_offset;
  h->entries_offset = g.entries_offset;
  h->pins_offset = g.pins_offset;
  h->names_offset = g.names_offset;
  h->alloc_offset = g.alloc_offset;
  h->alloc_bytes = g.alloc_bytes;
  h->data_offset = g.data_offset;
  h->events_offset = g.events_offset;
  h->created_ns = unix_now_ns();
  h->creator_pid = ::getpid();
  std::memcpy(h->spill_dir, p.spill_dir.data(), std::min(p.spill_dir.size(), kSpillDirBytes - 1));
  h->spill_high = p.spill_high;
  h->spill_low = p.spill_low;
  h->next_worker_id = p.first_worker_id;
  // The tables are zero (a fresh file): every entry Free, every slot Free,
  // every name empty. The allocator's state is derived from them.
  auto* entries = reinterpret_cast<Entry*>(m.base_ + g.entries_offset);  // NOLINT
  ExtentAllocator alloc(m.base_ + g.alloc_offset, g.capacity, g.max_objects);
  alloc.rebuild(entries);
  h->free_entries = alloc.free_entries();
  h->free_bytes = alloc.free_bytes();
  h->largest_free = alloc.largest_free();
  h->free_extents = alloc.free_blocks();
  g.segment_tag = h->segment_tag;
  m.geo_ = g;
  if (!p.spill_dir.empty()) {
    m.spill_ = SpillConfig{p.spill_dir, spill_folder(p.spill_dir, p.name, g.segment_tag), p.spill_high, p.spill_low};
    // The directory (made if missing) and the segment's own folder in it,
    // with the segment's access: owner-only unless shared with the group.
    auto dir_mode = static_cast<mode_t>(0700U | ((p.mode & 0060U) != 0 ? 0070U : 0U));
    auto fail = [&](const std::string& path) {
      int err = errno;
      Errc code = err == EACCES || err == EPERM    ? Errc::PermissionDenied
                  : err == ENOSPC || err == EDQUOT ? Errc::OutOfMemory
                                                   : Errc::InvalidArgument;
      throw Error(
          code, fmt::format("cannot create the spill directory {} of segment '{}': {}", path, p.name, errno_text(err)));
    };
    if (::mkdir(p.spill_dir.c_str(), dir_mode) != 0 && errno != EEXIST) fail(p.spill_dir);
    // A directory that was there already must be one nobody else can
    // rearrange under us: not a link, ours or root's, and if every user
    // may write it, sticky (as /tmp is), so nobody can replace our folder.
    struct stat root {};
    if (::lstat(p.spill_dir.c_str(), &root) != 0) fail(p.spill_dir);
    if (!S_ISDIR(root.st_mode) || (root.st_uid != ::geteuid() && root.st_uid != 0) ||
        ((root.st_mode & S_IWOTH) != 0 && (root.st_mode & S_ISVTX) == 0)) {
      throw Error(Errc::PermissionDenied,
                  fmt::format("spill directory {} of segment '{}' must be a directory (not a link) owned by this "
                              "user or root, and sticky if every user may write it",
                              p.spill_dir, p.name));
    }
    if (::mkdir(m.spill_.dir.c_str(), dir_mode) != 0) fail(m.spill_.dir);
    folder.path = m.spill_.dir;
    ::chmod(m.spill_.dir.c_str(), dir_mode);
  }

  m.data_ro_size_ = g.capacity;
  m.data_ro_ = map_aligned(m.fd_, g.capacity, g.data_offset, PROT_READ, false, p.huge_pages);
  if (m.data_ro_ == nullptr)
    throw Error(Errc::OutOfMemory, fmt::format("cannot map segment '{}': {}", p.name, errno_text(errno)));

  store(h->magic, kMagic, std::memory_order_release);
  ::flock(m.fd_, LOCK_SH);  // attached: memstat --gc sees us
  if (unnamed) {
    // Publish: link the complete file under its name; EEXIST if another
    // process created the name meanwhile (our unnamed file then vanishes).
    std::string self = fmt::format("/proc/self/fd/{}", m.fd_);
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, p.path.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      throw_open_error(errno, p.path, "create");
    }
  }
  unlinker.armed = false;
  folder.path.clear();
  return m;
}

Mapping Mapping::open(const OpenParams& p) {
  const std::string& path = p.path;
  const std::string& name = p.name;
  bool observer = p.observer;
  Mapping m;
  m.path_ = path;
  // O_NONBLOCK: something other than a file planted at the path (a FIFO)
  // must not block the open.
  m.fd_ = ::open(path.c_str(), (observer ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (m.fd_ < 0) {
    if (errno == ENOENT) {
      throw Error(Errc::SegmentMissing, fmt::format("segment '{}' does not exist (no file {})", name, path));
    }
    throw_open_error(errno, path, "open");
  }
  struct stat first {};
  if (::fstat(m.fd_, &first) != 0) throw_open_error(errno, path, "stat");
  if (!S_ISREG(first.st_mode)) {
    throw Error(Errc::IncompatibleSegment, fmt::format("{} is not a sealstore segment: not a regular file", path));
  }
  // Anyone could have written into it, before us or while we use it.
  if ((first.st_mode & S_IWOTH) != 0) {
    throw Error(Errc::PermissionDenied, fmt::format("segment file {} is writable by every user (mode {:#o}); sealstore "
                                                    "does not use it",
                                                    path, first.st_mode & 07777U));
  }
  // Its owner wrote every byte of it: a file someone else made may have
  // been planted for us to use. Observers only read, bounds-checked.
  uid_t me = ::geteuid();
  bool trusted = first.st_uid == me || first.st_uid == 0 ||
                 std::find(p.trusted_owners.begin(), p.trusted_owners.end(), first.st_uid) != p.trusted_owners.end();
  if (!observer && !trusted) {
    throw Error(Errc::PermissionDenied,
                fmt::format("segment file {} is owned by uid {}, not by this process's uid {} or root; to attach to "
                            "another user's segment, name its owner in AttachOptions::trusted_owners",
                            path, first.st_uid, me));
  }
  // Blocks while the creator holds LOCK_EX during initialisation. Observers
  // take a shared lock only for this moment; attached processes keep it.
  if (::flock(m.fd_, LOCK_SH) != 0) throw_open_error(errno, path, "lock");
  struct stat st {};
  if (::fstat(m.fd_, &st) != 0) throw_open_error(errno, path, "stat");
  if (st.st_nlink == 0) throw Error(Errc::SegmentMissing, fmt::format("segment '{}' was removed", name));
  auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < sizeof(Header)) {
    throw Error(Errc::IncompatibleSegment,
                fmt::format("{} is not a sealstore segment: {} bytes, less than a header", path, file_size));
  }
  m.size_ = file_size;
  int prot = observer ? PROT_READ : PROT_READ | PROT_WRITE;
  m.base_ = map_aligned(m.fd_, file_size, 0, prot, false, p.huge_pages);
  if (m.base_ == nullptr)
    throw Error(Errc::OutOfMemory, fmt::format("cannot map segment '{}': {}", name, errno_text(errno)));
  m.geo_ = validate_header(m.header(), file_size, name);
  m.spill_ = read_spill_config(m.header(), m.geo_, name);
  m.data_ro_size_ = m.geo_.capacity;
  m.data_ro_ = map_aligned(m.fd_, m.geo_.capacity, m.geo_.data_offset, PROT_READ, p.prefault, p.huge_pages);
  if (m.data_ro_ == nullptr)
    throw Error(Errc::OutOfMemory, fmt::format("cannot map segment '{}': {}", name, errno_text(errno)));
  if (observer) ::flock(m.fd_, LOCK_UN);
  return m;
}

}  // namespace sealstore::detail
