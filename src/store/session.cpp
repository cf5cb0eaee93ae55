// Attaching and detaching, the segment lock, and the accessors every other
// part of the session uses to reach the tables at this process's geometry.
#include "store/session.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "registry/fork_guard.hpp"
#include "registry/process.hpp"
#include "sealstore/error.hpp"
#include "store/entry_view.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"
#include "sync/segment_lock.hpp"

namespace sealstore::detail {

namespace {

static_assert(std::endian::native == std::endian::little, "the futex word is the low half of an entry's head word");

// The spill directory's path must leave room, in the header's 256 bytes,
// for nothing; in file names, for the segment's folder and the files in it.
constexpr std::size_t kMaxSpillDirectory = 200;

std::uint32_t default_max_objects(std::uint64_t capacity) {
  std::uint64_t n = capacity / (std::uint64_t{16} << 10U);
  return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(n, 1024, 1U << 20U));
}

}  // namespace

// What the segment lock asks about other processes.
class Session::Peers final : public LockPeers {
 public:
  explicit Peers(Session& s) : s_(s) {}
  bool alive(std::uint32_t s) override { return s_.slot_alive(s); }
  std::uint32_t claim(std::uint32_t s) override { return load(s_.slot(s).lock_seq, std::memory_order_relaxed); }
  void set_claim(std::uint32_t count) override { store(s_.slot(s_.slot_).lock_seq, count); }

 private:
  Session& s_;
};

Session::Lock::Lock(const Session& s) : s_(const_cast<Session&>(s)) {  // NOLINT: locking mutates shared state
  if (s_.slot_ == kNoSlot) {
    throw Error(Errc::InvalidArgument,
                fmt::format("segment '{}' is attached as an observer: it cannot change the store", s_.name_));
  }
  local_ = std::unique_lock(s_.lock_mu_);
  Peers peers(s_);
  LockResult r = lock_segment(s_.header().lock_word, s_.slot_, peers);
  Header& h = s_.header();
  if (r.taken_over) {
    store(h.repair_pending, 1U);
    atomic(h.lock_repairs).fetch_add(1, std::memory_order_relaxed);
  }
  if (load(h.repair_pending) != 0) repair();
}

Session::Lock::~Lock() { release(); }

void Session::Lock::release() noexcept {
  if (released_) return;
  released_ = true;
  Peers peers(s_);
  unlock_segment(s_.header().lock_word, s_.slot_, peers);
  if (local_.owns_lock()) local_.unlock();
}

void Session::Lock::repair() {
  try {
    reaped_ = s_.repair_locked();
  } catch (...) {
    store(s_.header().repair_pending, 1U);
    Peers peers(s_);
    unlock_segment(s_.header().lock_word, s_.slot_, peers);
    released_ = true;
    throw;
  }
  store(s_.header().repair_pending, 0U);
}

Session::Session(std::string name, Mapping map)
    : name_(std::move(name)), map_(std::move(map)), caches_(std::make_shared<CacheRegistry>()) {
  fork_epoch_ = process_epoch();
  spills_ = map_.spill().enabled();
  pid_ = ::getpid();
  pid_ns_ = own_pid_namespace();
  // A batch moves at most 16 KiB (less in a small segment) and a 64th of
  // the table: what a process holds back from the others stays small (and
  // one short of space takes it back).
  const Geometry& g = geo();
  std::uint64_t bytes = std::min<std::uint64_t>(16 << 10, g.capacity / 256);
  std::uint64_t entries = std::max<std::uint64_t>(1, g.max_objects / 64);
  for (std::uint32_t c = 0; c < kClasses; ++c) {
    batch_[c] = static_cast<std::uint32_t>(
        std::clamp<std::uint64_t>(bytes / class_bytes(c), 1, std::min<std::uint64_t>(32, entries)));
  }
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
                          o.huge_pages,
                          {},
                          0,
                          0,
                          o.first_worker_id};
  if (o.first_worker_id == 0 || o.first_worker_id > kMaxFirstWorkerId) {
    throw Error(Errc::InvalidArgument, fmt::format("first_worker_id {} for segment '{}' is out of range (1 to {})",
                                                   o.first_worker_id, name, kMaxFirstWorkerId));
  }
  if (!o.spill_directory.empty()) {
    if (!(o.spill_low_water > 0.0 && o.spill_low_water <= o.spill_high_water && o.spill_high_water <= 1.0)) {
      throw Error(Errc::InvalidArgument,
                  fmt::format("spill watermarks low {} and high {} for segment '{}' must satisfy 0 < low <= high <= 1",
                              o.spill_low_water, o.spill_high_water, name));
    }
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::absolute(o.spill_directory, ec).lexically_normal();
    std::string text = dir.string();
    while (text.size() > 1 && text.back() == '/') text.pop_back();
    if (ec || text.size() > kMaxSpillDirectory || text.find('\0') != std::string::npos) {
      throw Error(Errc::InvalidArgument, fmt::format("spill directory '{}' for segment '{}' must be a path of at most "
                                                     "{} bytes",
                                                     o.spill_directory, name, kMaxSpillDirectory));
    }
    std::uint64_t capacity = round_up(o.capacity, kPageSize);
    p.spill_dir = text;
    p.spill_high = static_cast<std::uint64_t>(static_cast<double>(capacity) * o.spill_high_water);
    p.spill_low = std::min(p.spill_high, static_cast<std::uint64_t>(static_cast<double>(capacity) * o.spill_low_water));
  }
  Mapping m = Mapping::create(p);
  std::unique_ptr<Session> s(new Session(std::string(name), std::move(m)));
  s->join(Role::Owner, 0);
  return owned(s.release());
}

std::shared_ptr<Session> Session::attach(std::string_view name, const AttachOptions& o) {
  validate_segment_name(name);
  Mapping::OpenParams p{
      segment_path(name, o.directory), std::string(name), o.observer, o.prefault, o.huge_pages, o.trusted_owners};
  Mapping m = Mapping::open(p);
  std::unique_ptr<Session> s(new Session(std::string(name), std::move(m)));
  if (!o.observer) s->join(o.role, o.id);
  return owned(s.release());
}

// Attaching costs the same whatever the segment's size: nothing in the
// tables is validated up front (each call bounds what it touches), and only
// processes whose lock byte is gone are reaped on the way in.
void Session::join(Role role, WorkerId id) {
  auto st = read_proc_stat(pid_);
  if (!st) throw Error(Errc::InvalidArgument, "cannot read /proc/self/stat: sealstore needs procfs");
  local_pins_bytes_ = round_up(sizeof(std::uint32_t) * geo().max_objects, kPageSize);
  void* p =
      ::mmap(nullptr, local_pins_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw Error(Errc::OutOfMemory, "cannot map the pin table: " + std::string(std::strerror(errno)));
  local_pins_ = static_cast<std::atomic<std::uint32_t>*>(p);

  // The lock needs a slot to name as its holder: take a free one first
  // (its lock byte makes it ours against other joiners), then lock.
  std::uint32_t mine = kNoSlot;
  for (std::uint32_t s = 0; s < kMaxProcesses && mine == kNoSlot; ++s) {
    if (static_cast<SlotState>(load(slot(s).state)) != SlotState::Free) continue;
    // A lock byte still held (a forked child of a process that died there,
    // or another joiner) means the slot is not ours to take.
    if (lock_byte(map_.fd(), slot_lock_byte(s))) mine = s;
  }
  // None free: a slot still marked live whose lock byte we can take was
  // left by a dead process. Ours, once we have cleaned up after it below.
  bool stale = false;
  for (std::uint32_t s = 0; s < kMaxProcesses && mine == kNoSlot; ++s) {
    if (static_cast<SlotState>(load(slot(s).state)) != SlotState::Live) continue;
    if (lock_byte(map_.fd(), slot_lock_byte(s))) {
      mine = s;
      stale = true;
    }
  }
  struct Unlock {  // until the slot is ours
    int fd;
    std::uint32_t s;
    bool armed = true;
    ~Unlock() {
      if (armed && s != kNoSlot) unlock_byte(fd, slot_lock_byte(s));
    }
  } unlock{map_.fd(), mine};
  if (mine == kNoSlot) {
    throw Error(Errc::OutOfMemory,
                fmt::format("all {} process slots of segment '{}' are in use", kMaxProcesses, name_));
  }
  // Who we are, before we take the lock by this slot: a process waiting
  // for the lock judges whether its holder lives by these.
  ProcessSlot& ps = slot(mine);
  store(ps.pid, static_cast<std::int32_t>(pid_));
  store(ps.start_time, st->start_time);
  store(ps.pid_ns, pid_ns_);
  slot_ = mine;
  struct Release {  // if anything below throws, the slot was never ours
    Session& s;
    bool armed = true;
    ~Release() {
      if (armed) s.slot_ = kNoSlot;
    }
  } release{*this};

  Lock lock(*this);
  Header& h = header();
  if (stale && static_cast<SlotState>(load(slot(mine).state)) == SlotState::Live) reap_slot_locked(mine, true);
  if (static_cast<SlotState>(load(slot(mine).state)) != SlotState::Free) {
    throw Error(Errc::Corrupt, fmt::format("process slot {} of segment '{}' was taken while we joined", mine, name_));
  }
  reap_dead_locked(false);
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    if (s != mine && id != 0 && static_cast<SlotState>(load(slot(s).state)) == SlotState::Live &&
        load(slot(s).worker_id, std::memory_order_relaxed) == id) {
      throw Error(Errc::InvalidArgument, fmt::format("worker id {} is already attached to segment '{}' (pid {})", id,
                                                     name_, load(slot(s).pid, std::memory_order_relaxed)));
    }
  }
  constexpr WorkerId kLastId = std::numeric_limits<WorkerId>::max();
  std::uint32_t next = std::max<std::uint32_t>(1, load(h.next_worker_id, std::memory_order_relaxed));
  if (id == 0) {
    id = next;
    if (id == kLastId) {
      throw Error(Errc::OutOfMemory, fmt::format("segment '{}' has given out all its worker ids", name_));
    }
  } else if (id == kLastId) {
    throw Error(Errc::InvalidArgument, fmt::format("worker id {} is out of range", id));
  }
  store(h.next_worker_id, std::max(next, id + 1));
  store(ps.worker_id, id);
  store(ps.role, static_cast<std::uint32_t>(role));
  store(ps.attached_ns, unix_now_ns());
  store(ps.publishing, 0U);
  store(ps.event_waiting, 0U);
  for (std::uint32_t l = 0; l < kStatLines; ++l) std::memset(&stats_line(mine, l), 0, sizeof(SlotStats));
  store(ps.state, static_cast<std::uint32_t>(SlotState::Live));
  atomic(h.live_slots[mine / 64]).fetch_or(std::uint64_t{1} << (mine % 64));
  unlock.armed = false;
  release.armed = false;
  id_ = id;
}

std::shared_ptr<Session> Session::owned(Session* s) {
  return std::shared_ptr<Session>(s, [](Session* p) { p->owners_released(); });
}

// The Stores' part ends: the session goes now, or with its last handle.
// Both sides first publish their change, then look at the other's (seq_cst
// both): at least one of them sees the session unheld, and one claim wins.
void Session::owners_released() noexcept {
  owners_gone_.store(true);
  end_if_unheld();
}

void Session::release_handle(ThreadCache* h) noexcept {
  h->handles.fetch_sub(1);
  if (owners_gone_.load()) end_if_unheld();
}

void Session::end_if_unheld() noexcept {
  if (caches_->handles() != 0) return;
  if (ending_.exchange(true)) return;
  delete this;
}

Session::~Session() {
  leave();
  if (local_pins_ != nullptr) ::munmap(local_pins_, local_pins_bytes_);
}

void Session::leave() noexcept {
  if (slot_ == kNoSlot || !usable()) return;  // observers and forked children leave nothing
  try {
    std::vector<CachedExtent> cached = caches_->take_all();
    Lock lock(*this);
    drain_locked(cached);
    reap_slot_locked(slot_, false);
    // The last process out of a removed segment takes its spill files along.
    if (spills_ && no_live_slots()) {
      struct stat st {};
      if (::fstat(map_.fd(), &st) == 0 && st.st_nlink == 0) remove_spill_folder(map_.spill().dir, st.st_uid);
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): nothing to do in a destructor; recover() will
  }
  // Explicitly: a forked child may share our open file, and with it the lock.
  unlock_byte(map_.fd(), slot_lock_byte(slot_));
  slot_ = kNoSlot;
}

void Session::throw_not_writable() const {
  if (slot_ == kNoSlot) {
    throw Error(Errc::InvalidArgument,
                fmt::format("segment '{}' is attached as an observer: it cannot change the store", name_));
  }
  throw Error(Errc::InvalidArgument,
              fmt::format("this handle on segment '{}' was inherited across fork(); attach again in the child", name_));
}

bool Session::no_live_slots() const noexcept {
  for (const std::uint64_t& bits : header().live_slots) {
    if (load(bits) != 0) return false;
  }
  return true;
}

bool Session::slot_lock_held(std::uint32_t s) const {
  if (s == slot_) return true;  // our own lock byte looks free through our own descriptor
  return byte_lock_state(map_.fd(), slot_lock_byte(s)) != ByteLock::Free;
}

// Alive while its lock byte is held and (where its pid means something
// here) its process has a thread left. The lock byte goes when the process
// dies or execs, in any pid namespace; the pid check catches a forked child
// that kept the descriptor, and so the lock, after its parent died.
bool Session::slot_alive(std::uint32_t s) const {
  if (s >= kMaxProcesses) return false;
  if (s == slot_) return true;
  if (!slot_lock_held(s)) return false;
  const ProcessSlot& ps = slot(s);
  std::uint64_t ns = load(ps.pid_ns, std::memory_order_relaxed);
  if (ns != 0 && ns != pid_ns_) return true;  // its pid means another process here
  return process_alive(load(ps.pid, std::memory_order_relaxed), load(ps.start_time, std::memory_order_relaxed));
}

void Session::lock_for_test() {
  lock_mu_.lock();
  Peers peers(*this);
  if (lock_segment(header().lock_word, slot_, peers).taken_over) store(header().repair_pending, 1U);
}

void Session::unlock_for_test() noexcept {
  Peers peers(*this);
  unlock_segment(header().lock_word, slot_, peers);
  lock_mu_.unlock();
}

// ---- the tables

ExtentAllocator Session::allocator() const noexcept {
  return ExtentAllocator(map_.base() + geo().alloc_offset, geo().capacity, geo().max_objects, &header().repair_pending);
}
std::uint32_t* Session::futex_word(Entry& e) noexcept { return reinterpret_cast<std::uint32_t*>(&e.word); }  // NOLINT

void Session::add_reserved(std::uint32_t line, std::int64_t entries, std::int64_t bytes) noexcept {
  SlotStats& st = stats_line(slot_, line);
  atomic(st.reserved).fetch_add(reserved_word(entries, bytes), std::memory_order_relaxed);
}

void Session::add_reserved(const ThreadCache& tc, std::int64_t entries, std::int64_t bytes) noexcept {
  SlotStats& st = stats_line(slot_, tc.line);
  if (tc.own_line) {
    // (No locked instruction on every put and erase; readers see either
    // value, as they would with an add.)
    store(st.reserved, load(st.reserved, std::memory_order_relaxed) + reserved_word(entries, bytes),
          std::memory_order_relaxed);
    return;
  }
  atomic(st.reserved).fetch_add(reserved_word(entries, bytes), std::memory_order_relaxed);
}

std::uint32_t Session::index_of(const RemoteRef& ref) const {
  if (ref.is_null()) throw Error(Errc::InvalidArgument, "the null ref names no object");
  if (ref.segment_tag() != geo().segment_tag) {
    throw Error(Errc::NotFound, fmt::format("{} belongs to another segment, not '{}' (tag {:08x})", ref.to_string(),
                                            name_, geo().segment_tag));
  }
  auto index = static_cast<std::uint32_t>(ref.id() & 0xffffffffU);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  if (index >= geo().max_objects || gen == 0) {
    throw Error(Errc::NotFound, fmt::format("{} names no object of segment '{}': no such ref was ever issued (it "
                                            "never existed)",
                                            ref.to_string(), name_));
  }
  return index;
}

RemoteRef Session::ref_of(std::uint32_t index, std::uint32_t gen) const {
  const Entry& e = entry(index);
  return RemoteRef(geo().segment_tag, (std::uint64_t{gen} << 32U) | index, field(e.where), field(e.whence));
}

void Session::corrupt(const std::string& what) const {
  throw Error(Errc::Corrupt, fmt::format("segment '{}' is corrupt: {}", name_, what));
}

// Why ref cannot be fetched, given its entry's head word.
void Session::throw_gone(const RemoteRef& ref, const Entry& e, std::uint64_t word) const {
  if (!word_valid(word)) corrupt(fmt::format("{} has an invalid head word {:#x}", ref.to_string(), word));
  if (word_gen(word) == static_cast<std::uint32_t>(ref.id() >> 32U) && word_state(word) == EntryState::Abandoned) {
    if ((field(e.flags) & kFailed) != 0) throw_failed(ref);
    throw Error(Errc::WorkerFailed,
                fmt::format("{}: its writer (pid {}) died before sealing it", ref.to_string(), field(e.creator_pid)));
  }
  throw_not_found(ref, word);
}

// NotFound for ref: erased (the entry has moved on to a later generation,
// or is free), or never issued (a generation the entry has not reached).
void Session::throw_not_found(const RemoteRef& ref, std::uint64_t word) const {
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  if (static_cast<std::int32_t>(gen - word_gen(word)) > 0) {
    throw Error(Errc::NotFound, fmt::format("{} names no object of segment '{}': no such ref was ever issued (it "
                                            "never existed)",
                                            ref.to_string(), name_));
  }
  throw Error(Errc::NotFound, fmt::format("{} is not in segment '{}': it was erased", ref.to_string(), name_));
}

// The reason lies in the data region, which an erase may free and reuse:
// it is read under the lock, after checking the entry is still this ref's.
void Session::throw_failed(const RemoteRef& ref) const {
  std::string reason;
  {
    Lock lock(*this);
    const Entry& e = entry(index_of(ref));
    std::uint64_t w = load(e.word);
    if (word_gen(w) != static_cast<std::uint32_t>(ref.id() >> 32U) || word_state(w) != EntryState::Abandoned) {
      throw_not_found(ref, w);
    }
    std::uint64_t offset = field(e.offset);
    std::uint64_t size = std::min<std::uint64_t>(field(e.size), kMaxFailureReason);
    if (size > 0 && offset <= geo().capacity && size <= geo().capacity - offset) {
      reason.assign(reinterpret_cast<const char*>(map_.data_ro() + offset), size);  // NOLINT: bytes of chars
    } else {
      reason = fmt::format("failed by worker {} (pid {}); the reason did not fit in the segment", field(e.creator_id),
                           field(e.creator_pid));
    }
  }
  throw Error(Errc::WorkerFailed, fmt::format("{}: {}", ref.to_string(), reason));
}

}  // namespace sealstore::detail
