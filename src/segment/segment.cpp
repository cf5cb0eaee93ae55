#include "segment/segment.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/version.hpp>
#include <cerrno>
#include <algorithm>
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

void init_robust_mutex(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  if (rc != 0) throw Error(Errc::OutOfMemory, "pthread_mutex_init failed: " + errno_text(rc));
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
      path_(std::move(o.path_)) {}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    data_ro_ = std::exchange(o.data_ro_, nullptr);
    data_ro_size_ = std::exchange(o.data_ro_size_, 0);
    path_ = std::move(o.path_);
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
  h->entries_offset = g.entries_offset;
  h->pins_offset = g.pins_offset;
  h->names_offset = g.names_offset;
  h->alloc_offset = g.alloc_offset;
  h->alloc_bytes = g.alloc_bytes;
  h->data_offset = g.data_offset;
  h->created_ns = unix_now_ns();
  h->creator_pid = ::getpid();
  h->next_worker_id = 1;
  init_robust_mutex(&h->lock);
  // The tables are zero (a fresh file): every entry Free, every slot Free,
  // every name empty. The allocator's state is derived from them.
  auto* entries = reinterpret_cast<const Entry*>(m.base_ + g.entries_offset);  // NOLINT
  ExtentAllocator alloc(m.base_ + g.alloc_offset, g.capacity, g.max_objects);
  alloc.rebuild(entries);
  h->largest_free = alloc.largest_free();
  h->free_extents = alloc.free_extents();

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
  validate_header(m.header(), file_size, name);
  const Header& h = m.header();
  m.data_ro_size_ = h.capacity;
  m.data_ro_ = map_aligned(m.fd_, h.capacity, h.data_offset, PROT_READ, p.prefault, p.huge_pages);
  if (m.data_ro_ == nullptr)
    throw Error(Errc::OutOfMemory, fmt::format("cannot map segment '{}': {}", name, errno_text(errno)));
  if (observer) ::flock(m.fd_, LOCK_UN);
  return m;
}

Geometry compute_geometry(std::uint64_t capacity, std::uint32_t max_objects, std::uint32_t max_names) {
  constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 46U;  // 64 TiB
  if (capacity == 0 || capacity > kMaxCapacity) {
    throw Error(Errc::InvalidArgument, fmt::format("capacity {} bytes is out of range (1 byte to 64 TiB)", capacity));
  }
  if (max_objects == 0 || max_objects > (1U << 24U)) {
    throw Error(Errc::InvalidArgument, fmt::format("max_objects {} is out of range (1 to 16777216)", max_objects));
  }
  if (max_names == 0 || max_names > (1U << 20U)) {
    throw Error(Errc::InvalidArgument, fmt::format("max_names {} is out of range (1 to 1048576)", max_names));
  }
  Geometry g{};
  g.capacity = round_up(capacity, kPageSize);
  g.max_objects = max_objects;
  g.max_names = max_names;
  g.name_slots = 16;
  while (g.name_slots < 2 * max_names) g.name_slots *= 2;
  g.pin_words = static_cast<std::uint32_t>(round_up((max_objects + 63) / 64, 8));
  g.slots_offset = kPageSize;
  g.entries_offset = round_up(g.slots_offset + sizeof(ProcessSlot) * kMaxProcesses, kPageSize);
  g.pins_offset = round_up(g.entries_offset + sizeof(Entry) * std::uint64_t{max_objects}, kPageSize);
  g.names_offset = round_up(g.pins_offset + std::uint64_t{g.pin_words} * 8 * kMaxProcesses, kPageSize);
  g.alloc_offset = round_up(g.names_offset + sizeof(NameSlot) * std::uint64_t{g.name_slots}, kPageSize);
  g.alloc_bytes = ExtentAllocator::area_bytes(max_objects);
  g.data_offset = round_up(g.alloc_offset + g.alloc_bytes, kDataRegionAlign);
  g.file_size = g.data_offset + g.capacity;
  return g;
}

std::uint64_t layout_fingerprint() {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h = (h ^ ((v >> (8U * static_cast<unsigned>(i))) & 0xffU)) * 0x100000001b3ULL;
    }
  };
  mix(sizeof(Header));
  mix(offsetof(Header, lock));
  mix(sizeof(pthread_mutex_t));
  mix(sizeof(Entry));
  mix(offsetof(Entry, shape));
  mix(sizeof(ProcessSlot));
  mix(sizeof(NameSlot));
  mix(kMaxProcesses);
  mix(kMaxRank);
  mix(ExtentAllocator::area_bytes(1000));
  mix(BOOST_VERSION);  // the allocator's trees are Boost.Intrusive structures
  return h;
}

void validate_header(const Header& h, std::uint64_t file_size, std::string_view name) {
  std::uint64_t magic = load(h.magic, std::memory_order_acquire);
  if (magic == 0) {
    throw Error(Errc::Corrupt, fmt::format("segment '{}' was never initialised (its creator died while creating it); "
                                           "remove it",
                                           name));
  }
  if (magic != kMagic) {
    throw Error(Errc::IncompatibleSegment,
                fmt::format("'{}' is not a sealstore segment (magic {:#018x})", name, magic));
  }
  if (h.layout_version != kLayoutVersion) {
    throw Error(Errc::IncompatibleSegment,
                fmt::format("segment '{}' has layout version {}, this build reads version {}", name, h.layout_version,
                            kLayoutVersion));
  }
  if (h.header_bytes != sizeof(Header) || h.fingerprint != layout_fingerprint()) {
    throw Error(Errc::IncompatibleSegment,
                fmt::format("segment '{}' was made by a build with another layout (fingerprint {:#x}, ours {:#x})",
                            name, h.fingerprint, layout_fingerprint()));
  }
  Geometry g{};
  try {
    g = compute_geometry(h.capacity, h.max_objects, h.max_names);
  } catch (const Error& e) {
    throw Error(Errc::Corrupt, fmt::format("segment '{}' has a corrupt header: {}", name, e.what()));
  }
  bool ok = g.capacity == h.capacity && g.name_slots == h.name_slots && g.pin_words == h.pin_words &&
            g.slots_offset == h.slots_offset && g.entries_offset == h.entries_offset &&
            g.pins_offset == h.pins_offset && g.names_offset == h.names_offset && g.alloc_offset == h.alloc_offset &&
            g.alloc_bytes == h.alloc_bytes && g.data_offset == h.data_offset && g.file_size == h.file_size;
  if (!ok)
    throw Error(Errc::Corrupt, fmt::format("segment '{}' has a corrupt header: its geometry does not add up", name));
  if (h.file_size != file_size) {
    throw Error(Errc::Corrupt,
                fmt::format("segment '{}' header says {} bytes but the file has {}", name, h.file_size, file_size));
  }
}

}  // namespace sealstore::detail
