#include "store/session.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "registry/fork_guard.hpp"
#include "registry/process.hpp"
#include "sealstore/error.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

constexpr std::uint32_t kPinBusy = 1U << 31U;
// Waiters re-check the writer's liveness this often while it writes.
constexpr std::chrono::milliseconds kLivenessSlice{100};
// A lookup waits this long for a name slot caught mid-change.
constexpr std::chrono::milliseconds kNameSlotPatience{5};


std::string_view state_name(EntryState s) {
  switch (s) {
    case EntryState::Free: return "free";
    case EntryState::Unfilled: return "unfilled";
    case EntryState::Writing: return "being written";
    case EntryState::Sealed: return "sealed";
    case EntryState::ErasePending: return "erased (free deferred while pinned)";
    case EntryState::Abandoned: return "abandoned by its writer";
  }
  return "?";
}

std::uint64_t name_hash(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h == 0 ? 1 : h;
}

void validate_object_name(std::string_view name) {
  bool ok = !name.empty() && name.size() < kNameBytes;
  for (char c : name) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-' || c == ':' || c == '/';
    ok = ok && allowed;
  }
  if (!ok) {
    throw Error(Errc::InvalidArgument,
                fmt::format("invalid object name '{}': use 1 to {} of letters, digits, '.', '_', '-', ':', '/'", name,
                            kNameBytes - 1));
  }
}

ValueType raw_type(const Entry& e) {
  ValueType t;
  t.kind = static_cast<ValueKind>(e.kind);
  t.elem = static_cast<ElemType>(e.elem);
  t.elem_size = e.elem_size;
  t.type_hash = e.type_hash;
  t.rank = std::min<std::uint32_t>(e.rank, kMaxRank);
  for (std::size_t d = 0; d < kMaxRank; ++d) t.shape[d] = e.shape[d];  // NOLINT
  return t;
}

// Whether `size` bytes can hold a value of type t: what typed views and
// materialize rely on before they read a stored value.
bool type_fits(const ValueType& t, std::uint64_t size) {
  switch (t.kind) {
    case ValueKind::Bytes:
    case ValueKind::String: return true;
    case ValueKind::Scalar: return t.elem_size != 0 && size == t.elem_size;
    case ValueKind::Array: return t.elem_size != 0 && size % t.elem_size == 0;
    case ValueKind::NdArray: {
      if (t.rank == 0 || t.rank > kMaxRank) return false;
      std::uint64_t n = t.elem_size;
      for (std::uint32_t d = 0; d < t.rank; ++d) {
        if (t.shape[d] != 0 && n > UINT64_MAX / t.shape[d]) return false;  // NOLINT
        n *= t.shape[d];                                                   // NOLINT
      }
      return n == size;
    }
  }
  return false;
}

std::uint32_t default_max_objects(std::uint64_t capacity) {
  std::uint64_t n = capacity / (16 * 1024);
  return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(n, 1024, 1U << 20U));
}

}  // namespace

// The segment lock: a robust process-shared mutex. Finding its holder dead
// (EOWNERDEAD), we flag the tables for repair and mark the mutex consistent
// at once, then repair: a repair that fails (or dies) leaves the flag set,
// so the next locker repairs instead, and the lock itself never becomes
// unrecoverable.
class Session::Lock {
 public:
  explicit Lock(const Session& s) : s_(const_cast<Session&>(s)) {  // NOLINT: locking mutates shared state
    Header& h = s_.header();
    pthread_mutex_t* m = &h.lock;
    int rc = pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
      store(h.repair_pending, 1U);
      atomic(h.lock_repairs).fetch_add(1, std::memory_order_relaxed);
      pthread_mutex_consistent(m);
    } else if (rc == ENOTRECOVERABLE) {
      throw Error(Errc::Corrupt,
                  fmt::format("segment '{}' is unrecoverable: its lock was abandoned unrepaired", s_.name_));
    } else if (rc != 0) {
      throw Error(Errc::Corrupt, fmt::format("cannot lock segment '{}': {}", s_.name_, std::strerror(rc)));
    }
    if (load(h.repair_pending) != 0) repair();
  }
  ~Lock() {
    if (!released_) pthread_mutex_unlock(&s_.header().lock);
  }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Validates the tables and rebuilds the derived state now (attach does,
  // so that nothing in the segment is trusted unchecked). Throws
  // Error(Corrupt), the lock released and the flag left set.
  void repair() {
    if (repaired_) return;
    try {
      reaped_ = s_.repair_locked();
    } catch (...) {
      store(s_.header().repair_pending, 1U);
      pthread_mutex_unlock(&s_.header().lock);
      released_ = true;
      throw;
    }
    store(s_.header().repair_pending, 0U);
    repaired_ = true;
  }
  // Dead processes the repair reaped.
  std::size_t reaped() const noexcept { return reaped_; }

 private:
  Session& s_;
  std::size_t reaped_ = 0;
  bool repaired_ = false;
  bool released_ = false;
};

Session::Session(std::string name, Mapping map) : name_(std::move(name)), map_(std::move(map)) {
  fork_epoch_ = process_epoch();
  pid_ = ::getpid();
  pid_ns_ = own_pid_namespace();
}

std::shared_ptr<Session> Session::create(std::string_view name, const CreateOptions& o) {
  validate_segment_name(name);
  if ((o.mode & ~0777U) != 0 || (o.mode & 0600U) != 0600U) {
    throw Error(Errc::InvalidArgument,
                fmt::format("mode {:#o} for segment '{}' must be permission bits that include owner read and write",
                            o.mode, name));
  }
  if ((o.mode & 0002U) != 0) {
    throw Error(Errc::InvalidArgument,
                fmt::format("mode {:#o} would let every user change segment '{}'; share it through a group (0660)",
                            o.mode, name));
  }
  Mapping::CreateParams p{segment_path(name, o.directory),
                          std::string(name),
                          o.capacity,
                          o.max_objects != 0 ? o.max_objects : default_max_objects(o.capacity),
                          o.max_names,
                          o.mode,
                          o.prefault,
                          o.huge_pages};
  Mapping m = Mapping::create(p);
  std::shared_ptr<Session> s(new Session(std::string(name), std::move(m)));
  s->join(Role::Owner, 0);
  return s;
}

std::shared_ptr<Session> Session::attach(std::string_view name, const AttachOptions& o) {
  validate_segment_name(name);
  Mapping::OpenParams p{segment_path(name, o.directory), std::string(name), o.observer, o.prefault, o.huge_pages,
                        o.trusted_owners};
  Mapping m = Mapping::open(p);
  std::shared_ptr<Session> s(new Session(std::string(name), std::move(m)));
  if (!o.observer) s->join(o.role, o.id);
  return s;
}

void Session::join(Role role, WorkerId id) {
  auto st = read_proc_stat(pid_);
  if (!st) throw Error(Errc::InvalidArgument, "cannot read /proc/self/stat: sealstore needs procfs");
  local_pins_bytes_ = round_up(sizeof(std::uint32_t) * header().max_objects, kPageSize);
  void* p =
      ::mmap(nullptr, local_pins_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw Error(Errc::OutOfMemory, "cannot map the pin table: " + std::string(std::strerror(errno)));
  local_pins_ = static_cast<std::atomic<std::uint32_t>*>(p);

  Lock lock(*this);
  // Nothing read from the segment is trusted unchecked: validate its tables
  // and rebuild the derived state from them (this also reaps the dead).
  lock.repair();
  Header& h = header();
  std::uint32_t free_slot = kNoSlot;
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    if (static_cast<SlotState>(load(slot(s).state)) == SlotState::Free) {
      // The slot's lock byte is ours while we are attached; one still held
      // (by a forked child of a process that died there) is skipped.
      if (free_slot == kNoSlot && lock_byte(map_.fd(), slot_lock_byte(s))) free_slot = s;
    } else if (id != 0 && slot(s).worker_id == id) {
      throw Error(Errc::InvalidArgument,
                  fmt::format("worker id {} is already attached to segment '{}' (pid {})", id, name_, slot(s).pid));
    }
  }
  if (free_slot == kNoSlot) {
    throw Error(Errc::OutOfMemory,
                fmt::format("all {} process slots of segment '{}' are in use", kMaxProcesses, name_));
  }
  struct Unlock {  // until the slot is ours
    int fd;
    std::uint32_t slot;
    bool armed = true;
    ~Unlock() {
      if (armed) unlock_byte(fd, slot_lock_byte(slot));
    }
  } unlock{map_.fd(), free_slot};
  constexpr WorkerId kLastId = std::numeric_limits<WorkerId>::max();
  if (id == 0) {
    id = h.next_worker_id;
    if (id == kLastId) {
      throw Error(Errc::OutOfMemory, fmt::format("segment '{}' has given out all its worker ids", name_));
    }
  } else if (id == kLastId) {
    throw Error(Errc::InvalidArgument, fmt::format("worker id {} is out of range", id));
  }
  h.next_worker_id = std::max(h.next_worker_id, id + 1);
  ProcessSlot& ps = slot(free_slot);
  ps.pid = pid_;
  ps.start_time = st->start_time;
  ps.pid_ns = pid_ns_;
  ps.worker_id = id;
  ps.role = static_cast<std::uint32_t>(role);
  ps.attached_ns = unix_now_ns();
  store(ps.objects_created, std::uint64_t{0}, std::memory_order_relaxed);
  std::memset(pin_row(free_slot), 0, std::size_t{h.pin_words} * 8);
  store(ps.state, static_cast<std::uint32_t>(SlotState::Live));
  atomic(h.live_slots[free_slot / 64]).fetch_or(std::uint64_t{1} << (free_slot % 64));
  unlock.armed = false;
  slot_ = free_slot;
  id_ = id;
}

Session::~Session() {
  leave();
  if (local_pins_ != nullptr) ::munmap(local_pins_, local_pins_bytes_);
}

void Session::leave() noexcept {
  if (slot_ == kNoSlot || !usable()) return;  // observers and forked children leave nothing
  try {
    Lock lock(*this);
    reap_slot_locked(slot_, false);
  } catch (...) {  // NOLINT(bugprone-empty-catch): nothing to do in a destructor; recover() will
  }
  // Explicitly: a forked child may share our open file, and with it the lock.
  unlock_byte(map_.fd(), slot_lock_byte(slot_));
  slot_ = kNoSlot;
}

// Alive while its lock byte is held and (where its pid means something
// here) its process has a thread left. The lock byte goes when the process
// dies or execs, in any pid namespace; the pid check catches a forked child
// that kept the descriptor, and so the lock, after its parent died.
bool Session::slot_alive(std::uint32_t s) const {
  if (s == slot_) return true;  // our own lock byte looks free through our own descriptor
  const ProcessSlot& ps = slot(s);
  if (byte_lock_state(map_.fd(), slot_lock_byte(s)) == ByteLock::Free) return false;
  std::uint64_t ns = load(ps.pid_ns, std::memory_order_relaxed);
  if (ns != 0 && ns != pid_ns_) return true;  // its pid means another process here
  return process_alive(load(ps.pid, std::memory_order_relaxed), load(ps.start_time, std::memory_order_relaxed));
}

bool Session::usable() const noexcept { return fork_epoch_ == process_epoch(); }

void Session::check_writable() const {
  if (slot_ == kNoSlot) {
    throw Error(Errc::InvalidArgument, fmt::format("segment '{}' is attached as an observer: it cannot change "
                                                   "the store",
                                                   name_));
  }
  if (!usable()) {
    throw Error(
        Errc::InvalidArgument,
        fmt::format("this handle on segment '{}' was inherited across fork(); attach again in the child", name_));
  }
}

Entry& Session::entry(std::uint32_t i) const noexcept {
  return reinterpret_cast<Entry*>(map_.base() + header().entries_offset)[i];  // NOLINT
}
ProcessSlot& Session::slot(std::uint32_t s) const noexcept {
  return reinterpret_cast<ProcessSlot*>(map_.base() + header().slots_offset)[s];  // NOLINT
}
std::uint64_t* Session::pin_row(std::uint32_t s) const noexcept {
  return reinterpret_cast<std::uint64_t*>(map_.base() + header().pins_offset) +  // NOLINT
         std::size_t{s} * header().pin_words;
}
NameSlot& Session::name_slot(std::uint32_t i) const noexcept {
  return reinterpret_cast<NameSlot*>(map_.base() + header().names_offset)[i];  // NOLINT
}
ExtentAllocator Session::allocator() const noexcept {
  return ExtentAllocator(map_.base() + header().alloc_offset, header().capacity, header().max_objects);
}

std::uint32_t Session::index_of(const RemoteRef& ref) const {
  if (ref.is_null()) throw Error(Errc::InvalidArgument, "the null ref names no object");
  if (ref.segment_tag() != header().segment_tag) {
    throw Error(Errc::NotFound, fmt::format("{} belongs to another segment, not '{}' (tag {:08x})", ref.to_string(),
                                            name_, header().segment_tag));
  }
  auto index = static_cast<std::uint32_t>(ref.id() & 0xffffffffU);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  if (index >= header().max_objects || gen == 0) {
    throw Error(Errc::NotFound, fmt::format("{} names no object of segment '{}': no such ref was ever issued (it never existed)",
                                            ref.to_string(), name_));
  }
  return index;
}

RemoteRef Session::ref_of(std::uint32_t index) const {
  const Entry& e = entry(index);
  return RemoteRef(header().segment_tag, (std::uint64_t{load(e.gen, std::memory_order_relaxed)} << 32U) | index,
                   load(e.where, std::memory_order_relaxed), load(e.whence, std::memory_order_relaxed));
}

void Session::throw_gone(const RemoteRef& ref, const Entry& e, EntryState st) const {
  if (st == EntryState::Abandoned && (load(e.flags, std::memory_order_relaxed) & kFailed) != 0) {
    throw_failed(ref);
  }
  if (st == EntryState::Abandoned) {
    throw Error(Errc::WorkerFailed, fmt::format("{}: its writer (pid {}) died before sealing it", ref.to_string(),
                                                load(e.creator_pid, std::memory_order_relaxed)));
  }
  throw_not_found(ref, e);
}

// NotFound for ref, whose entry is e: erased (the entry has moved on to a
// later generation, or is free), or never issued (a generation the entry
// has not reached).
void Session::throw_not_found(const RemoteRef& ref, const Entry& e) const {
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  auto now = load(e.gen, std::memory_order_relaxed);
  if (static_cast<std::int32_t>(gen - now) > 0) {
    throw Error(Errc::NotFound,
                fmt::format("{} names no object of segment '{}': no such ref was ever issued (it never existed)", ref.to_string(),
                            name_));
  }
  throw Error(Errc::NotFound, fmt::format("{} is not in segment '{}': it was erased", ref.to_string(), name_));
}

// The reason lies in the data region, which an erase may free and reuse:
// it is read under the lock, after checking the entry is still this ref's.
void Session::throw_failed(const RemoteRef& ref) const {
  std::string reason;
  {
    Lock lock(*this);
    const Entry& e = entry(static_cast<std::uint32_t>(ref.id() & 0xffffffffU));
    if (e.gen != static_cast<std::uint32_t>(ref.id() >> 32U) ||
        static_cast<EntryState>(e.state) != EntryState::Abandoned) {
      throw Error(Errc::NotFound, fmt::format("{} is not in segment '{}': it was erased", ref.to_string(), name_));
    }
    if (e.size > 0 && e.offset <= header().capacity && e.size <= header().capacity - e.offset) {
      reason.assign(reinterpret_cast<const char*>(map_.data_ro() + e.offset), e.size);  // NOLINT: bytes of chars
    } else {
      reason = fmt::format("failed by worker {} (pid {}); the reason did not fit in the segment", e.creator_id,
                           e.creator_pid);
    }
  }
  throw Error(Errc::WorkerFailed, fmt::format("{}: {}", ref.to_string(), reason));
}

void Session::fail(const RemoteRef& ref, std::string_view reason) {
  check_writable();
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  reason = reason.substr(0, kMaxFailureReason);
  Lock lock(*this);
  Header& h = header();
  Entry& e = entry(index);
  auto st = static_cast<EntryState>(e.state);
  if (e.gen != gen || st == EntryState::Free || st == EntryState::ErasePending) {
    throw Error(Errc::NotFound,
                fmt::format("cannot fail {}: it is not in segment '{}' (erased)", ref.to_string(), name_));
  }
  ExtentAllocator alloc = allocator();
  if (st == EntryState::Writing) {
    std::uint32_t ws = e.writer_slot;
    if (ws < kMaxProcesses && slot_alive(ws)) {
      throw Error(Errc::AlreadySealed, fmt::format("cannot fail {}: worker {} (pid {}) is filling it", ref.to_string(),
                                                   e.creator_id, e.creator_pid));
    }
    // Its writer died: roll the write back as recovery would, then fail it.
    std::uint64_t bytes = footprint(e.size);
    if (bytes > 0) alloc.release(e.offset, bytes);
    h.used -= bytes;
    e.size = 0;
    e.writer_slot = kNoSlot;
  } else if (st == EntryState::Sealed) {
    throw Error(Errc::AlreadySealed, fmt::format("cannot fail {}: it is already sealed", ref.to_string()));
  } else if (st == EntryState::Abandoned && (e.flags & kFailed) != 0) {
    throw Error(Errc::AlreadySealed, fmt::format("cannot fail {}: it has failed already", ref.to_string()));
  }
  // Unfilled, or abandoned by a dead writer (no data held).
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  if (!reason.empty()) {
    if (auto got = alloc.allocate(footprint(reason.size()))) {
      offset = *got;
      size = reason.size();
      std::memcpy(map_.data_rw() + offset, reason.data(), size);
      h.used += footprint(size);
    }
  }
  e.offset = offset;
  e.size = size;
  e.writer_slot = kNoSlot;
  e.creator_id = id_;
  e.creator_pid = pid_;
  e.kind = static_cast<std::uint8_t>(ValueKind::String);
  e.elem = static_cast<std::uint8_t>(ElemType::None);
  e.rank = 0;
  e.elem_size = 1;
  e.type_hash = 0;
  for (auto& d : e.shape) d = 0;
  e.sealed_ns = unix_now_ns();
  store(e.flags, e.flags | kFailed);
  store(e.state, static_cast<std::uint32_t>(EntryState::Abandoned));
  publish_alloc_stats_locked();
  if (load(e.waiters) != 0) futex_wake_all(&e.state);
}

RemoteRef Session::make_ref(WorkerId where) {
  check_writable();
  Lock lock(*this);
  ExtentAllocator alloc = allocator();
  auto index = alloc.pop_entry();
  if (!index) {
    throw Error(Errc::OutOfMemory, fmt::format("the object table of segment '{}' is full ({} objects); create it with "
                                               "a larger max_objects",
                                               name_, header().max_objects));
  }
  check_claim_locked(*index, 0, 0);
  Entry& e = entry(*index);
  std::uint32_t gen = e.gen + 1 == 0 ? 1 : e.gen + 1;
  store(e.gen, gen);
  e.flags = 0;
  e.offset = 0;
  e.size = 0;
  e.writer_slot = kNoSlot;
  e.names = 0;
  e.where = where;
  e.whence = id_;
  e.maker_pid = pid_;
  e.creator_id = 0;
  e.creator_pid = 0;
  e.created_ns = unix_now_ns();
  e.kind = 0;
  e.rank = 0;
  store(e.state, static_cast<std::uint32_t>(EntryState::Unfilled));
  header().objects += 1;
  return ref_of(*index);
}

Session::Claim Session::begin_write(const RemoteRef* target, std::uint64_t size, const ValueType& type) {
  check_writable();
  if (type.kind > ValueKind::NdArray || type.elem > ElemType::Trivial) {
    throw Error(Errc::InvalidArgument, fmt::format("value kind {} / element type {} is not one sealstore knows",
                                                   static_cast<int>(type.kind), static_cast<int>(type.elem)));
  }
  if (type.kind == ValueKind::NdArray) {
    if (type.rank == 0 || type.rank > kMaxRank) {
      throw Error(Errc::InvalidArgument, fmt::format("an n-d array needs rank 1 to {}, not {}", kMaxRank, type.rank));
    }
    std::uint64_t n = type.elem_size;
    for (std::uint32_t d = 0; d < type.rank; ++d) {
      if (type.shape[d] != 0 && n > UINT64_MAX / type.shape[d]) {
        throw Error(Errc::InvalidArgument, fmt::format("the shape {} overflows 64 bits", type.describe()));
      }
      n *= type.shape[d];
    }
    if (n != size) {
      throw Error(Errc::InvalidArgument, fmt::format("{} takes {} bytes, not the {} given", type.describe(), n, size));
    }
  } else if (type.kind != ValueKind::Bytes && type.kind != ValueKind::String &&
             (type.elem_size == 0 || size % type.elem_size != 0 ||
              (type.kind == ValueKind::Scalar && size != type.elem_size))) {
    throw Error(Errc::InvalidArgument, fmt::format("{} bytes is not a whole number of {}-byte elements for {}", size,
                                                   type.elem_size, type.describe()));
  }
  if (size > header().capacity) {
    throw Error(Errc::OutOfMemory, fmt::format("an object of {} bytes cannot fit in segment '{}' of capacity {} bytes",
                                               size, name_, header().capacity));
  }
  std::uint32_t target_index = target != nullptr ? index_of(*target) : 0;

  Lock lock(*this);
  ExtentAllocator alloc = allocator();
  Header& h = header();
  std::uint32_t index = 0;
  if (target != nullptr) {
    index = target_index;
    Entry& e = entry(index);
    auto gen = static_cast<std::uint32_t>(target->id() >> 32U);
    auto st = static_cast<EntryState>(e.state);
    if (e.gen != gen || st == EntryState::Free) throw_gone(*target, e, EntryState::Free);
    if (st == EntryState::Writing) {
      throw Error(Errc::AlreadySealed, fmt::format("{} is already being filled by worker {} (pid {})",
                                                   target->to_string(), e.creator_id, e.creator_pid));
    }
    if (st != EntryState::Unfilled) {
      throw Error(Errc::AlreadySealed,
                  fmt::format("{} is already filled ({}); a ref is filled once", target->to_string(), state_name(st)));
    }
  }
  std::uint64_t offset = 0;
  std::uint64_t bytes = footprint(size);
  if (bytes > 0) {
    auto got = alloc.allocate(bytes);
    if (!got) {
      throw Error(Errc::OutOfMemory,
                  fmt::format("an object of {} bytes does not fit in segment '{}': {} of {} bytes free, the largest "
                              "free block is {} bytes",
                              size, name_, h.capacity - h.used, h.capacity, alloc.largest_free()));
    }
    offset = *got;
  }
  if (target == nullptr) {
    auto got = alloc.pop_entry();
    if (!got) {
      if (bytes > 0) alloc.release(offset, bytes);
      throw Error(Errc::OutOfMemory,
                  fmt::format("the object table of segment '{}' is full ({} objects); create it with a larger "
                              "max_objects",
                              name_, h.max_objects));
    }
    index = *got;
  }
  check_claim_locked(target == nullptr ? index : 0, offset, bytes);
  Entry& e = entry(index);
  if (target == nullptr) {
    std::uint32_t gen = e.gen + 1 == 0 ? 1 : e.gen + 1;
    store(e.gen, gen);
    e.flags = kFresh;
    e.names = 0;
    e.where = id_;
    e.whence = id_;
    e.maker_pid = pid_;
    e.created_ns = unix_now_ns();
    h.objects += 1;
  } else {
    e.flags = 0;
  }
  e.offset = offset;
  e.size = size;
  e.writer_slot = slot_;
  e.creator_id = id_;
  e.creator_pid = pid_;
  e.kind = static_cast<std::uint8_t>(type.kind);
  e.elem = static_cast<std::uint8_t>(type.elem);
  e.rank = static_cast<std::uint8_t>(type.rank);
  e.elem_size = type.elem_size;
  e.type_hash = type.type_hash;
  for (std::size_t d = 0; d < kMaxRank; ++d) e.shape[d] = type.shape[d];
  // Committing the state last makes the entry (and so the space) ours even
  // if we die right after: recovery finds it Writing in our slot.
  store(e.state, static_cast<std::uint32_t>(EntryState::Writing));
  h.used += bytes;
  publish_alloc_stats_locked();
  return Claim{index, ref_of(index), std::span<std::byte>(map_.data_rw() + offset, size)};
}

// What the allocator hands out lies inside the tables and the data region;
// if not, its state was changed behind our back: the next locker repairs it.
void Session::check_claim_locked(std::uint32_t index, std::uint64_t offset, std::uint64_t bytes) {
  const Header& h = header();
  if (index < h.max_objects && offset <= h.capacity && bytes <= h.capacity - offset) return;
  store(header().repair_pending, 1U);
  throw Error(Errc::Corrupt, fmt::format("the allocator of segment '{}' gave out entry {} and {} bytes at offset {}, "
                                         "outside its tables; it will be rebuilt",
                                         name_, index, bytes, offset));
}

void Session::seal(std::uint32_t index, std::uint32_t gen) {
  // A writer inherited across fork is the parent's to seal, not the child's.
  check_writable();
  Entry& e = entry(index);
  if (load(e.gen) != gen || load(e.writer_slot) != slot_) {
    throw Error(Errc::Corrupt, fmt::format("{} is no longer this writer's to seal (segment '{}' changed under it)",
                                           ref_of(index).to_string(), name_));
  }
  e.sealed_ns = unix_now_ns();
  auto expected = static_cast<std::uint32_t>(EntryState::Writing);
  if (!atomic(e.state).compare_exchange_strong(expected, static_cast<std::uint32_t>(EntryState::Sealed))) {
    throw Error(Errc::Corrupt, fmt::format("{} changed state while being written ({})", ref_of(index).to_string(),
                                           state_name(static_cast<EntryState>(expected))));
  }
  atomic(slot(slot_).objects_created).fetch_add(1, std::memory_order_relaxed);
  if (load(e.waiters) != 0) futex_wake_all(&e.state);
}

void Session::abort(std::uint32_t index) noexcept {
  if (!usable()) return;
  try {
    Lock lock(*this);
    Entry& e = entry(index);
    if (static_cast<EntryState>(e.state) != EntryState::Writing || e.writer_slot != slot_) return;
    if ((e.flags & kFresh) != 0) {
      free_entry_locked(index);
      return;
    }
    release_data_locked(e);
    e.size = 0;
    e.writer_slot = kNoSlot;
    store(e.state, static_cast<std::uint32_t>(EntryState::Unfilled));
    publish_alloc_stats_locked();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a failed lock leaves it to recovery
  }
}

std::optional<Session::Pinned> Session::fetch(const RemoteRef& ref,
                                              std::optional<std::chrono::steady_clock::time_point> deadline, bool wait,
                                              std::chrono::nanoseconds spin) {
  check_writable();
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  Entry& e = entry(index);
  for (;;) {
    auto st = static_cast<EntryState>(load(e.state));
    // State before gen: a reused entry bumps gen before its state moves.
    if (load(e.gen) != gen) throw_gone(ref, e, EntryState::Free);
    if (st == EntryState::Sealed) {
      pin(index);
      // Pinned: from here the object cannot be freed, unless erase got in
      // first, which the re-read shows.
      if (static_cast<EntryState>(load(e.state)) == EntryState::Sealed && load(e.gen) == gen) {
        // The extent and type are read once, here, under the pin: the View
        // keeps them. A peer that rewrites the entry later cannot widen it.
        std::uint64_t offset = load(e.offset, std::memory_order_relaxed);
        std::uint64_t size = load(e.size, std::memory_order_relaxed);
        if (offset > header().capacity || size > header().capacity - offset) {
          unpin(index);
          throw Error(Errc::Corrupt,
                      fmt::format("{} points outside the data region of segment '{}'", ref.to_string(), name_));
        }
        ValueType t = raw_type(e);
        bool fits = type_fits(t, size);
        return Pinned{index, {map_.data_ro() + offset, size}, t, fits};
      }
      unpin(index);
      continue;
    }
    if (st == EntryState::Unfilled || st == EntryState::Writing) {
      if (!wait) return std::nullopt;
      bool settled = spin > std::chrono::nanoseconds::zero() && spin_until_settled(e, spin, deadline);
      spin = {};  // one bounded spin per fetch; after it, sleep
      if (settled) continue;
      wait_for_change(e, static_cast<std::uint32_t>(st), ref, deadline);
      continue;
    }
    throw_gone(ref, e, st);
  }
}

bool Session::spin_until_settled(const Entry& e, std::chrono::nanoseconds spin,
                                 std::optional<std::chrono::steady_clock::time_point> deadline) {
  auto until = std::chrono::steady_clock::now() + spin;
  if (deadline && *deadline < until) until = *deadline;
  for (unsigned i = 1;; ++i) {
    auto st = static_cast<EntryState>(load(e.state, std::memory_order_acquire));
    if (st != EntryState::Unfilled && st != EntryState::Writing) return true;
    // Reading the clock costs more than a poll: look at it every 64 polls.
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

void Session::wait_for_change(Entry& e, std::uint32_t seen, const RemoteRef& ref,
                              std::optional<std::chrono::steady_clock::time_point> deadline) {
  using clock = std::chrono::steady_clock;
  atomic(e.waiters).fetch_add(1);
  struct Leave {
    Entry& e;
    ~Leave() { atomic(e.waiters).fetch_sub(1); }
  } leave{e};
  // Registered as a waiter before this re-read: a sealer that stored the new
  // state before we registered is seen here; one after, sees us and wakes.
  // The entry may be erased and reused while we sleep: a changed
  // generation ends the wait as surely as a changed state.
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  while (load(e.state) == seen && load(e.gen) == gen) {
    auto slice = std::chrono::nanoseconds(kLivenessSlice);
    if (deadline) {
      auto now = clock::now();
      if (now >= *deadline) {
        throw Error(Errc::Timeout, fmt::format("fetch of {} from segment '{}' timed out: it is still {}",
                                               ref.to_string(), name_, state_name(static_cast<EntryState>(seen))));
      }
      slice = std::min(slice, std::chrono::nanoseconds(*deadline - now));
    }
    bool woken = futex_wait(&e.state, seen, slice);
    if (!woken && static_cast<EntryState>(seen) == EntryState::Writing) {
      std::uint32_t ws = load(e.writer_slot, std::memory_order_relaxed);
      if (ws < kMaxProcesses && !slot_alive(ws)) recover();
    }
  }
}

void Session::pin(std::uint32_t index) noexcept {
  std::atomic<std::uint32_t>& w = local_pins_[index];  // NOLINT
  std::uint64_t& word = pin_row(slot_)[index / 64];    // NOLINT
  std::uint64_t bit = std::uint64_t{1} << (index % 64);
  std::uint32_t c = w.load(std::memory_order_relaxed);
  for (unsigned spins = 0;; ++spins) {
    if ((c & kPinBusy) != 0) {  // another thread of ours is mid-transition
      if (spins > 64) sched_yield();
      c = w.load(std::memory_order_relaxed);
      continue;
    }
    if (c > 0) {
      if (w.compare_exchange_weak(c, c + 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
      continue;
    }
    if (w.compare_exchange_weak(c, kPinBusy, std::memory_order_acquire, std::memory_order_relaxed)) {
      atomic(word).fetch_or(bit);  // seq_cst: pairs with erase's state store then pin reads
      w.store(1, std::memory_order_release);
      return;
    }
  }
}

void Session::unpin(std::uint32_t index) noexcept {
  std::atomic<std::uint32_t>& w = local_pins_[index];  // NOLINT
  std::uint32_t c = w.load(std::memory_order_relaxed);
  for (unsigned spins = 0;; ++spins) {
    if ((c & kPinBusy) != 0) {
      if (spins > 64) sched_yield();
      c = w.load(std::memory_order_relaxed);
      continue;
    }
    if (c > 1) {
      if (w.compare_exchange_weak(c, c - 1, std::memory_order_release, std::memory_order_relaxed)) return;
      continue;
    }
    if (w.compare_exchange_weak(c, kPinBusy, std::memory_order_acquire, std::memory_order_relaxed)) {
      if (!usable()) {  // a View inherited across fork: the pin is the parent's
        w.store(0, std::memory_order_release);
        return;
      }
      std::uint64_t& word = pin_row(slot_)[index / 64];  // NOLINT
      atomic(word).fetch_and(~(std::uint64_t{1} << (index % 64)));
      bool pending = static_cast<EntryState>(load(entry(index).state)) == EntryState::ErasePending;
      w.store(0, std::memory_order_release);
      if (pending) free_if_unpinned(index);
      return;
    }
  }
}

bool Session::pinned_anywhere(std::uint32_t index) const noexcept {
  std::uint64_t bit = std::uint64_t{1} << (index % 64);
  for (std::uint32_t w = 0; w < kMaxProcesses / 64; ++w) {
    std::uint64_t live = load(header().live_slots[w]);
    while (live != 0) {
      std::uint32_t s = w * 64 + static_cast<std::uint32_t>(std::countr_zero(live));
      live &= live - 1;
      if ((load(pin_row(s)[index / 64]) & bit) != 0) return true;  // NOLINT
    }
  }
  return false;
}

void Session::free_if_unpinned(std::uint32_t index) noexcept {
  try {
    Lock lock(*this);
    if (static_cast<EntryState>(entry(index).state) == EntryState::ErasePending && !pinned_anywhere(index)) {
      free_entry_locked(index);
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): the next erase or recover() frees it
  }
}

void Session::free_entry_locked(std::uint32_t index) noexcept {
  Entry& e = entry(index);
  Header& h = header();
  auto st = static_cast<EntryState>(e.state);
  if (st == EntryState::Free) return;
  if (e.names != 0) unbind_entry_locked(index);
  store(e.state, static_cast<std::uint32_t>(EntryState::Free));
  if (holds_data(st)) release_data_locked(e);
  e.size = 0;
  e.writer_slot = kNoSlot;
  allocator().push_entry(index);
  h.objects -= 1;
  publish_alloc_stats_locked();
  if (load(e.waiters) != 0) futex_wake_all(&e.state);
}

void Session::publish_alloc_stats_locked() noexcept {
  ExtentAllocator alloc = allocator();
  store(header().largest_free, alloc.largest_free(), std::memory_order_relaxed);
  store(header().free_extents, alloc.free_extents(), std::memory_order_relaxed);
}

void Session::throw_misfit(const RemoteRef& ref, const ValueType& t, std::uint64_t size) const {
  throw Error(Errc::Corrupt, fmt::format("{} in segment '{}' says it holds {} in {} bytes, which cannot be",
                                         ref.to_string(), name_, t.describe(), size));
}

bool Session::extent_fits(const Entry& e) const noexcept {
  std::uint64_t cap = header().capacity;
  return e.offset % kDataAlign == 0 && e.offset <= cap && e.size <= cap - e.offset;
}

// Gives an entry's data back to the allocator. An extent outside the data
// region (the table was changed behind our back) is not released: the next
// locker validates the tables and reports Corrupt.
void Session::release_data_locked(Entry& e) noexcept {
  std::uint64_t bytes = footprint(e.size);
  if (bytes == 0) return;
  if (!extent_fits(e)) {
    store(header().repair_pending, 1U);
    return;
  }
  allocator().release(e.offset, bytes);
  header().used -= bytes;
}

// Rolls back a write whose writer died: the data was never published, so
// nobody reads it; waiters wake and get WorkerFailed.
void Session::abandon_locked(Entry& e) noexcept {
  store(e.state, static_cast<std::uint32_t>(EntryState::Abandoned));
  release_data_locked(e);
  e.size = 0;
  e.writer_slot = kNoSlot;
  if (load(e.waiters) != 0) futex_wake_all(&e.state);
}

void Session::erase(const RemoteRef& ref) {
  check_writable();
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  Lock lock(*this);
  Entry& e = entry(index);
  auto st = static_cast<EntryState>(e.state);
  if (e.gen != gen || st == EntryState::Free || st == EntryState::ErasePending) {
    throw Error(Errc::NotFound, fmt::format("{} is not in segment '{}': it was erased", ref.to_string(), name_));
  }
  if (st == EntryState::Writing) {
    throw Error(Errc::NotSealed, fmt::format("cannot erase {}: worker {} (pid {}) is still writing it", ref.to_string(),
                                             e.creator_id, e.creator_pid));
  }
  if (st == EntryState::Sealed) {
    store(e.state, static_cast<std::uint32_t>(EntryState::ErasePending));  // seq_cst: then read pins
    if (pinned_anywhere(index)) return;                                    // the last unpin frees it
  }
  free_entry_locked(index);
}

bool Session::contains(const RemoteRef& ref) const {
  if (ref.is_null() || ref.segment_tag() != header().segment_tag) return false;
  auto index = static_cast<std::uint32_t>(ref.id() & 0xffffffffU);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  if (index >= header().max_objects) return false;
  const Entry& e = entry(index);
  auto st = static_cast<EntryState>(load(e.state));
  return load(e.gen) == gen && st != EntryState::Free && st != EntryState::ErasePending;
}

// ---- names

// Lock-free probe (names are written as seqlocks). A slot that stays
// mid-change beyond kNameSlotPatience is skipped and *stuck set: its writer
// may have died holding the lock, and only the next locker repairs it.
std::optional<Session::NameHit> Session::find_name(std::string_view name, std::uint64_t hash, bool* stuck) const {
  std::uint32_t mask = header().name_slots - 1;
  std::array<std::uint64_t, kNameBytes / 8> want{};
  std::memcpy(want.data(), name.data(), name.size());
  for (std::uint32_t i = 0, pos = static_cast<std::uint32_t>(hash) & mask; i <= mask; ++i, pos = (pos + 1) & mask) {
    const NameSlot& n = name_slot(pos);
    std::optional<std::chrono::steady_clock::time_point> odd_since;
    for (unsigned spins = 0;; ++spins) {
      std::uint32_t seq = load(n.seq);
      if ((seq & 1U) != 0) {
        if (spins % 64 == 63) {
          auto now = std::chrono::steady_clock::now();
          if (!odd_since) odd_since = now;
          if (now - *odd_since > kNameSlotPatience) {
            if (stuck != nullptr) *stuck = true;
            break;
          }
        }
        sched_yield();
        continue;
      }
      // Everything a hit returns is read inside the window the sequence
      // number validates: a binding is the name and its object together.
      std::uint32_t state = load(n.state);
      bool match = state == 1 && load(n.hash) == hash;
      for (std::size_t w = 0; match && w < want.size(); ++w) match = load(n.name[w]) == want[w];  // NOLINT
      std::uint32_t index = load(n.index);
      std::uint32_t gen = load(n.gen);
      if (load(n.seq) != seq) continue;
      if (state == 0) return std::nullopt;
      if (match) return NameHit{pos, index, gen};
      break;
    }
  }
  return std::nullopt;
}

void Session::write_name_slot_locked(NameSlot& n, std::uint32_t state, std::uint32_t index, std::uint32_t gen,
                                     std::uint64_t hash, std::string_view name) noexcept {
  std::array<std::uint64_t, kNameBytes / 8> words{};
  if (!name.empty()) std::memcpy(words.data(), name.data(), std::min(name.size(), kNameBytes - 1));
  atomic(n.seq).fetch_add(1);
  store(n.index, index);
  store(n.gen, gen);
  store(n.hash, hash);
  for (std::size_t w = 0; w < words.size(); ++w) store(n.name[w], words[w]);  // NOLINT
  store(n.state, state);
  atomic(n.seq).fetch_add(1);
}

void Session::bind(std::string_view name, const RemoteRef& ref) {
  check_writable();
  validate_object_name(name);
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  std::uint64_t hash = name_hash(name);
  Lock lock(*this);
  Entry& e = entry(index);
  auto st = static_cast<EntryState>(e.state);
  if (e.gen != gen || st == EntryState::Free || st == EntryState::ErasePending) {
    throw Error(Errc::NotFound, fmt::format("cannot bind '{}' to {}: it was erased", name, ref.to_string()));
  }
  Header& h = header();
  if (auto hit = find_name(name, hash, nullptr)) {
    NameSlot& n = name_slot(hit->pos);
    std::uint32_t old = n.index;
    if (old == index && n.gen == gen) return;
    if (old < h.max_objects && entry(old).gen == n.gen && entry(old).names > 0) entry(old).names -= 1;
    write_name_slot_locked(n, 1, index, gen, hash, name);
    e.names += 1;
    return;
  }
  if (h.names_bound >= h.max_names) {
    throw Error(Errc::OutOfMemory,
                fmt::format("cannot bind '{}': all {} names of segment '{}' are bound", name, h.max_names, name_));
  }
  std::uint32_t mask = h.name_slots - 1;
  std::uint32_t pos = static_cast<std::uint32_t>(hash) & mask;
  for (std::uint32_t i = 0; name_slot(pos).state == 1; ++i, pos = (pos + 1) & mask) {
    if (i == mask) {  // names_bound < max_names <= half the slots: only corruption gets here
      store(h.repair_pending, 1U);
      throw Error(Errc::Corrupt, fmt::format("the name table of segment '{}' is full though it counts {} of {} names",
                                             name_, h.names_bound, h.max_names));
    }
  }
  write_name_slot_locked(name_slot(pos), 1, index, gen, hash, name);
  h.names_bound += 1;
  e.names += 1;
}

std::optional<RemoteRef> Session::lookup(std::string_view name) const {
  validate_object_name(name);
  std::uint64_t hash = name_hash(name);
  bool stuck = false;
  auto hit = find_name(name, hash, &stuck);
  if (!hit && stuck && !observer()) {
    // Taking the lock repairs a slot whose writer died mid-change, or waits
    // for a live writer to finish. Observers cannot lock: they skip it.
    Lock lock(*this);
    hit = find_name(name, hash, nullptr);
  }
  if (!hit) return std::nullopt;
  std::uint32_t index = hit->index;
  std::uint32_t gen = hit->gen;
  if (index >= header().max_objects) return std::nullopt;
  const Entry& e = entry(index);
  auto st = static_cast<EntryState>(load(e.state));
  if (load(e.gen) != gen || st == EntryState::Free || st == EntryState::ErasePending) return std::nullopt;
  return RemoteRef(header().segment_tag, (std::uint64_t{gen} << 32U) | index, load(e.where, std::memory_order_relaxed),
                   load(e.whence, std::memory_order_relaxed));
}

bool Session::unbind(std::string_view name) {
  check_writable();
  validate_object_name(name);
  std::uint64_t hash = name_hash(name);
  Lock lock(*this);
  auto hit = find_name(name, hash, nullptr);
  if (!hit) return false;
  NameSlot& n = name_slot(hit->pos);
  if (n.index < header().max_objects) {
    Entry& e = entry(n.index);
    if (e.gen == n.gen && e.names > 0) e.names -= 1;
  }
  write_name_slot_locked(n, 2, 0, 0, 0, {});
  header().names_bound -= 1;
  return true;
}

void Session::unbind_entry_locked(std::uint32_t index) noexcept {
  Entry& e = entry(index);
  for (std::uint32_t i = 0; i < header().name_slots && e.names > 0; ++i) {
    NameSlot& n = name_slot(i);
    if (n.state == 1 && n.index == index && n.gen == e.gen) {
      write_name_slot_locked(n, 2, 0, 0, 0, {});
      header().names_bound -= 1;
      e.names -= 1;
    }
  }
  e.names = 0;
}

// ---- recovery

std::size_t Session::recover() {
  check_writable();
  Lock lock(*this);
  return lock.reaped() + reap_dead_locked();
}

std::size_t Session::reap_dead_locked() {
  std::size_t reaped = 0;
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    if (s == slot_ || static_cast<SlotState>(slot(s).state) != SlotState::Live) continue;
    if (!slot_alive(s)) {
      reap_slot_locked(s, true);
      ++reaped;
    }
  }
  return reaped;
}

// Idempotent: a reap cut short by our own death is simply redone.
void Session::reap_slot_locked(std::uint32_t s, bool died) {
  Header& h = header();
  for (std::uint32_t i = 0; i < h.max_objects; ++i) {
    Entry& e = entry(i);
    if (static_cast<EntryState>(e.state) == EntryState::Writing && e.writer_slot == s) abandon_locked(e);
  }
  std::uint64_t* row = pin_row(s);
  for (std::uint32_t w = 0; w < h.pin_words; ++w) atomic(row[w]).exchange(0);  // NOLINT
  store(slot(s).state, static_cast<std::uint32_t>(SlotState::Free));
  atomic(h.live_slots[s / 64]).fetch_and(~(std::uint64_t{1} << (s % 64)));
  if (died) {
    // Complete every deferred erase no live process pins any more. Not only
    // those this slot pinned: a process killed in unpin() after clearing its
    // pin bit, before taking the lock to free, left one with no pin at all.
    free_unpinned_erased_locked();
    h.recoveries += 1;
  }
  publish_alloc_stats_locked();
}

void Session::free_unpinned_erased_locked() noexcept {
  for (std::uint32_t i = 0; i < header().max_objects; ++i) {
    if (static_cast<EntryState>(entry(i).state) == EntryState::ErasePending && !pinned_anywhere(i)) {
      free_entry_locked(i);
    }
  }
}

// Every value in the process and name tables that is used as an index or
// a state, checked before anything trusts it. Throws Error(Corrupt) naming
// the first bad one; changes nothing. The object table's states and extents
// are checked by the allocator's rebuild, in the same pass that reads them
// (and it too throws before changing anything); stored types are checked
// where they are used (fetch).
void Session::validate_tables_locked() const {
  const Header& h = header();
  auto corrupt = [this](const std::string& what) {
    return Error(Errc::Corrupt, fmt::format("segment '{}' is corrupt: {}", name_, what));
  };
  if (h.next_worker_id == 0) throw corrupt("its next worker id is 0");
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    const ProcessSlot& ps = slot(s);
    std::uint32_t st = load(ps.state);
    if (st > static_cast<std::uint32_t>(SlotState::Live)) {
      throw corrupt(fmt::format("process slot {} has unknown state {}", s, st));
    }
    if (st == static_cast<std::uint32_t>(SlotState::Live) && ps.pid <= 0) {
      throw corrupt(fmt::format("process slot {} has pid {}", s, ps.pid));
    }
  }
  for (std::uint32_t i = 0; i < h.name_slots; ++i) {
    const NameSlot& n = name_slot(i);
    std::uint32_t st = load(n.state);
    if (st > 2) throw corrupt(fmt::format("name slot {} has unknown state {}", i, st));
    if (st == 1 && load(n.index) >= h.max_objects) {
      throw corrupt(fmt::format("name slot {} names entry {} of {}", i, load(n.index), h.max_objects));
    }
  }
}

// Validates the tables, then recomputes everything derived from the object
// table, the one crash-consistent truth: after a lock holder died inside a
// critical section, and on every attach.
std::size_t Session::repair_locked() {
  validate_tables_locked();
  Header& h = header();
  ExtentAllocator alloc = allocator();
  try {
    alloc.rebuild(&entry(0));  // throws Corrupt, changing nothing, if objects overlap
  } catch (const Error& e) {
    std::string_view what = e.what();
    what.remove_prefix(std::min(what.size(), to_string(e.code()).size() + 2));  // "Corrupt: "
    throw Error(Errc::Corrupt, fmt::format("segment '{}' is corrupt: {}", name_, what));
  }
  for (std::uint32_t w = 0; w < kMaxProcesses / 64; ++w) {
    std::uint64_t live = 0;
    for (std::uint32_t b = 0; b < 64; ++b) {
      if (static_cast<SlotState>(slot(w * 64 + b).state) == SlotState::Live) live |= std::uint64_t{1} << b;
    }
    store(h.live_slots[w], live);
  }
  // Names: a slot caught mid-write (odd seq) is dropped, the rest counted.
  std::vector<std::uint32_t> names(h.max_objects, 0);
  std::uint32_t bound = 0;
  for (std::uint32_t i = 0; i < h.name_slots; ++i) {
    NameSlot& n = name_slot(i);
    if ((n.seq & 1U) != 0) {
      store(n.state, std::uint32_t{2});
      atomic(n.seq).fetch_add(1);
    }
    if (n.state != 1) continue;
    ++bound;
    if (entry(n.index).gen == n.gen) names[n.index] += 1;  // index validated above
  }
  h.names_bound = bound;
  // One pass over the table: name counts; writes whose writer has no slot
  // any more (a reap cut short) rolled back as the reap would have; erased
  // objects nobody pins freed; the rest counted.
  std::uint32_t objects = 0;
  std::uint64_t used = 0;
  for (std::uint32_t i = 0; i < h.max_objects; ++i) {
    Entry& e = entry(i);
    auto st = static_cast<EntryState>(e.state);
    if (st == EntryState::Free) continue;
    e.names = names[i];
    if (st == EntryState::Writing) {
      std::uint32_t ws = e.writer_slot;
      if (ws >= kMaxProcesses || static_cast<SlotState>(slot(ws).state) != SlotState::Live) {
        abandon_locked(e);
        st = EntryState::Abandoned;
      }
    } else if (st == EntryState::ErasePending && !pinned_anywhere(i)) {
      free_entry_locked(i);
      continue;
    }
    ++objects;
    if (holds_data(st)) used += footprint(e.size);
  }
  h.objects = objects;
  h.used = used;
  publish_alloc_stats_locked();
  return reap_dead_locked();
}

// ---- introspection (no lock)

SegmentInfo Session::info() const {
  const Header& h = header();
  SegmentInfo i;
  i.name = name_;
  i.path = map_.path();
  i.layout_version = h.layout_version;
  i.segment_tag = h.segment_tag;
  i.mode = h.mode;
  i.file_size = h.file_size;
  i.capacity = h.capacity;
  i.used = load(h.used, std::memory_order_relaxed);
  i.largest_free = load(h.largest_free, std::memory_order_relaxed);
  i.free_extents = load(h.free_extents, std::memory_order_relaxed);
  i.objects = load(h.objects, std::memory_order_relaxed);
  i.max_objects = h.max_objects;
  std::uint32_t procs = 0;
  for (auto w : h.live_slots) procs += static_cast<std::uint32_t>(std::popcount(load(w, std::memory_order_relaxed)));
  i.processes = procs;
  i.recoveries = load(h.recoveries, std::memory_order_relaxed);
  i.lock_repairs = load(h.lock_repairs, std::memory_order_relaxed);
  i.created_unix_ns = h.created_ns;
  return i;
}

std::vector<ProcessInfo> Session::processes() const {
  std::vector<ProcessInfo> out;
  const Header& h = header();
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    const ProcessSlot& ps = slot(s);
    if (static_cast<SlotState>(load(ps.state, std::memory_order_acquire)) != SlotState::Live) continue;
    ProcessInfo p;
    p.slot = s;
    p.pid = load(ps.pid, std::memory_order_relaxed);
    p.start_time = load(ps.start_time, std::memory_order_relaxed);
    p.id = load(ps.worker_id, std::memory_order_relaxed);
    p.role = static_cast<Role>(load(ps.role, std::memory_order_relaxed));
    p.alive = slot_alive(s);
    p.pid_namespace = load(ps.pid_ns, std::memory_order_relaxed);
    p.objects_created = load(ps.objects_created, std::memory_order_relaxed);
    p.attached_unix_ns = load(ps.attached_ns, std::memory_order_relaxed);
    const std::uint64_t* row = pin_row(s);
    for (std::uint32_t w = 0; w < h.pin_words; ++w) {
      std::uint64_t bits = load(row[w], std::memory_order_relaxed);  // NOLINT
      while (bits != 0) {
        std::uint32_t i = w * 64 + static_cast<std::uint32_t>(std::countr_zero(bits));
        bits &= bits - 1;
        if (i >= h.max_objects) continue;
        p.pinned_objects += 1;
        p.pinned_bytes += load(entry(i).size, std::memory_order_relaxed);
      }
    }
    out.push_back(p);
  }
  std::sort(out.begin(), out.end(), [](const ProcessInfo& a, const ProcessInfo& b) { return a.id < b.id; });
  return out;
}

std::vector<ObjectInfo> Session::objects() const {
  std::vector<ObjectInfo> out;
  const Header& h = header();
  std::vector<std::pair<std::uint32_t, WorkerId>> live;  // slot, worker id
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    if (static_cast<SlotState>(load(slot(s).state, std::memory_order_relaxed)) == SlotState::Live) {
      live.emplace_back(s, load(slot(s).worker_id, std::memory_order_relaxed));
    }
  }
  for (std::uint32_t i = 0; i < h.max_objects; ++i) {
    const Entry& e = entry(i);
    auto st = static_cast<EntryState>(load(e.state));
    if (st == EntryState::Free) continue;
    ObjectInfo o;
    o.ref = ref_of(i);
    switch (st) {
      case EntryState::Unfilled: o.state = ObjectState::Unfilled; break;
      case EntryState::Writing: o.state = ObjectState::Writing; break;
      case EntryState::Sealed: o.state = ObjectState::Sealed; break;
      case EntryState::ErasePending: o.state = ObjectState::ErasePending; break;
      default: o.state = ObjectState::Abandoned; break;
    }
    o.size = load(e.size, std::memory_order_relaxed);
    o.type = raw_type(e);
    o.creator = load(e.whence, std::memory_order_relaxed);
    o.creator_pid = load(e.maker_pid, std::memory_order_relaxed);
    o.sealed_by = load(e.creator_id, std::memory_order_relaxed);
    o.sealed_by_pid = load(e.creator_pid, std::memory_order_relaxed);
    o.created_unix_ns = load(e.created_ns, std::memory_order_relaxed);
    o.waiters = load(e.waiters, std::memory_order_relaxed);
    for (auto [s, id] : live) {
      if ((load(pin_row(s)[i / 64], std::memory_order_relaxed) & (std::uint64_t{1} << (i % 64))) != 0) {  // NOLINT
        o.pinned_by.push_back(id);
      }
    }
    out.push_back(std::move(o));
  }
  // Names, by one pass over the name table.
  for (std::uint32_t n = 0; n < h.name_slots; ++n) {
    const NameSlot& ns = name_slot(n);
    if (load(ns.state) != 1) continue;
    std::uint32_t index = load(ns.index);
    std::uint32_t gen = load(ns.gen);
    std::array<char, kNameBytes> text{};
    for (std::size_t w = 0; w < kNameBytes / 8; ++w) {
      std::uint64_t word = load(ns.name[w]);  // NOLINT
      std::memcpy(text.data() + w * 8, &word, 8);
    }
    text.back() = '\0';
    for (auto& o : out) {
      if ((o.ref.id() & 0xffffffffU) == index && (o.ref.id() >> 32U) == gen) o.names.emplace_back(text.data());
    }
  }
  return out;
}

}  // namespace sealstore::detail
