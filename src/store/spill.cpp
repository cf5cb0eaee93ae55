// Spilling: when a write needs space the segment does not have, sealed
// objects nobody pins are written to files in the segment's spill folder
// and their extents freed; a fetch of a spilled ref reads it back.
//
// An object is always wholly in the segment, wholly in its file, or both:
//   Sealed --(file written, word -> Spilled, extent freed)--> Spilled
//   Spilled --(extent allocated, word -> Restoring)--> Restoring
//   Restoring --(file read, word -> Sealed)--> Sealed
// Each arrow is one step under the lock; files are written and read
// between them, without it. The spiller pins the object while it writes its
// file (so an erase defers the free to it), and commits Dekker-style
// against fetchers: it stores Spilled, then reads the pins, and puts the
// word back if anyone else pinned it meanwhile. The restorer pins it while
// it reads (so an erase cannot free the extent under it), and a restorer
// that dies leaves it Restoring in its slot, which the reap turns back into
// Spilled. A file, once complete, stays with its object until it is
// erased: spilling the object again costs no write.
//
// Victims are picked by a clock over the table: a fetch sets an entry's
// `touched` bit, the hand clears it as it passes, and takes the first
// sealed, unpinned entry whose bit is clear (an approximation of least
// recently fetched, which costs a fetch no shared write once the bit is set).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "sealstore/error.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

constexpr std::size_t kIoChunk = std::size_t{1} << 30U;
[[noreturn]] void throw_io(int err, std::string_view what, const std::string& path) {
  Errc code = Errc::OutOfMemory;  // a spill that cannot be written frees nothing
  if (err == EACCES || err == EPERM || err == EROFS) code = Errc::PermissionDenied;
  throw Error(code, fmt::format("cannot {} spill file {}: {}", what, path, std::strerror(err)));
}

void write_file(const std::string& path, const std::byte* data, std::uint64_t size, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) throw_io(errno, "create", path);
  ::fchmod(fd, mode);  // exactly the segment's access, whatever the umask
  std::uint64_t done = 0;
  while (done < size) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size - done, kIoChunk));
    ssize_t w = ::pwrite(fd, data + done, n, static_cast<off_t>(done));  // NOLINT
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int err = w < 0 ? errno : ENOSPC;
      ::close(fd);
      throw_io(err, "write", path);
    }
    done += static_cast<std::uint64_t>(w);
  }
  if (::close(fd) != 0) throw_io(errno, "write", path);
}

void read_file(const std::string& path, std::byte* data, std::uint64_t size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    throw Error(Errc::Corrupt,
                fmt::format("cannot open spill file {}: {}; the object is lost", path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != size) {
    ::close(fd);
    throw Error(Errc::Corrupt,
                fmt::format("spill file {} is not the {} bytes of its object; the object is lost", path, size));
  }
  std::uint64_t done = 0;
  while (done < size) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size - done, kIoChunk));
    ssize_t r = ::pread(fd, data + done, n, static_cast<off_t>(done));  // NOLINT
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = r < 0 ? errno : EIO;
      ::close(fd);
      throw Error(Errc::Corrupt, fmt::format("cannot read spill file {}: {}", path, std::strerror(err)));
    }
    done += static_cast<std::uint64_t>(r);
  }
  ::close(fd);
}

}  // namespace

std::string Session::spill_path(std::uint32_t index, std::uint32_t gen) const {
  return fmt::format("{}/{}.{}", map_.spill().dir, index, gen);
}

bool Session::spill(const RemoteRef& ref) {
  check_writable();
  if (!spills_) {
    throw Error(Errc::InvalidArgument, fmt::format("segment '{}' does not spill: create it with "
                                                   "CreateOptions::spill_directory set",
                                                   name_));
  }
  std::uint32_t index = index_of(ref);
  auto gen = static_cast<std::uint32_t>(ref.id() >> 32U);
  Entry& e = entry(index);
  std::uint64_t w = load(e.word);
  if (word_gen(w) != gen || !word_valid(w)) throw_gone(ref, e, w);
  EntryState st = word_state(w);
  if (st == EntryState::ErasePending || st == EntryState::Free || st == EntryState::Reserved) throw_not_found(ref, w);
  if (st != EntryState::Sealed || field(e.extent) == 0) return false;
  return spill_entry(index, w) == SpillOutcome::Spilled;
}

Session::SpillOutcome Session::spill_entry(std::uint32_t index, std::uint64_t w) {
  Entry& e = entry(index);
  std::uint32_t gen = word_gen(w);
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  struct Unpin {  // outside the lock: the last unpin of an erased object frees it, under the lock
    Session& s;
    std::uint32_t index, gen;
    bool armed = false;
    ~Unpin() {
      if (armed) s.unpin(index, gen);
    }
  } unpin_later{*this, index, gen};
  {
    Lock lock(*this);
    if (load(e.word) != w || pinned_anywhere(index)) return SpillOutcome::Busy;
    std::uint32_t flags = field(e.flags);
    if ((flags & kSpillValid) != 0) {  // its file has it already
      return commit_spill_locked(index, w, false) ? SpillOutcome::Spilled : SpillOutcome::Busy;
    }
    // Ours, while we write: pinned first, then the word read again (as a
    // fetch pins), so that an erase (which takes no lock) either sees our
    // pin and leaves the free to our unpin, or has already begun and we
    // back off. Only then is the entry marked as having a file.
    pin(index);
    unpin_later.armed = true;
    if (load(e.word) != w || pinned_by_others(index)) return SpillOutcome::Busy;
    offset = field(e.offset);
    size = field(e.size);
    if (offset > geo().capacity || size > geo().capacity - offset) {
      store(header().repair_pending, 1U);
      corrupt(fmt::format("entry {} points outside the data region", index));
    }
    store(e.flags, field(e.flags) | kSpillFile, std::memory_order_relaxed);
  }
  auto mode = static_cast<mode_t>(0600U | (field(header().mode) & 0060U));
  write_file(spill_path(index, gen), map_.data_ro() + offset, size, mode);
  Lock lock(*this);
  if (load(e.word) != w) return SpillOutcome::Busy;  // erased meanwhile: the free removes the file
  store(e.flags, field(e.flags) | kSpillValid, std::memory_order_relaxed);
  return commit_spill_locked(index, w, true) ? SpillOutcome::Spilled : SpillOutcome::Busy;
}

bool Session::commit_spill_locked(std::uint32_t index, std::uint64_t w, bool own_pin) {
  Entry& e = entry(index);
  std::uint32_t gen = word_gen(w);
  // seq_cst, then the pins: pairs with pin()'s bit (or count), then word.
  if (!atomic(e.word).compare_exchange_strong(w, make_word(EntryState::Spilled, kNoOwner, gen))) return false;
  if (own_pin ? pinned_by_others(index) : pinned_anywhere(index) || local_pins_[index].load() != 0) {  // NOLINT
    store(e.word, w);  // a fetch pinned it first and reads it now: the spill is off
    return false;
  }
  std::uint64_t size = field(e.size);
  release_extent_locked(e, true);  // the object keeps its size; only its extent goes
  Header& h = header();
  store(h.spills, field(h.spills) + 1, std::memory_order_relaxed);
  store(h.spilled_objects, field(h.spilled_objects) + 1, std::memory_order_relaxed);
  store(h.spilled_bytes, field(h.spilled_bytes) + size, std::memory_order_relaxed);
  publish_alloc_stats_locked();
  return true;
}

bool Session::above_high_water(std::uint64_t bytes) const noexcept {
  if (!spills_) return false;
  std::uint64_t free_bytes = std::min(field(header().free_bytes), geo().capacity);
  std::uint64_t used = geo().capacity - free_bytes;
  return used + bytes > map_.spill().high;
}

std::string Session::make_room(std::uint64_t bytes) {
  const SpillConfig& c = map_.spill();
  // Down to the low mark; an object too big for that, to the high mark; one
  // bigger still, until it fits.
  std::uint64_t limit = bytes <= c.low ? c.low : bytes <= c.high ? c.high : geo().capacity;
  // Bounded: every pass over the table clears what it finds touched, so
  // two passes see every unpinned sealed object.
  std::uint64_t budget = 2 * std::uint64_t{geo().max_objects} + 8;
  for (std::uint64_t tries = 0; tries < budget; ++tries) {
    std::optional<std::pair<std::uint32_t, std::uint64_t>> victim;
    {
      Lock lock(*this);
      ExtentAllocator alloc = allocator();
      std::uint64_t used = geo().capacity - alloc.free_bytes();
      if (alloc.largest_free() >= bytes && used + bytes <= limit) return {};
      victim = pick_victim_locked();
    }
    if (!victim) return {};
    try {
      spill_entry(victim->first, victim->second);
    } catch (const Error& e) {
      // The spill directory cannot take it (full, unwritable): stop, and let
      // the write take what room there is.
      if (e.code() != Errc::OutOfMemory && e.code() != Errc::PermissionDenied) throw;
      return e.what();
    }
  }
  return {};
}

std::optional<std::pair<std::uint32_t, std::uint64_t>> Session::pick_victim_locked() {
  Header& h = header();
  std::uint32_t n = geo().max_objects;
  std::uint64_t hand = field(h.spill_hand) % n;
  for (std::uint64_t step = 0; step < 2 * std::uint64_t{n}; ++step) {
    auto i = static_cast<std::uint32_t>((hand + step) % n);
    Entry& e = entry(i);
    std::uint64_t w = load(e.word);
    if (!word_valid(w) || word_state(w) != EntryState::Sealed || field(e.extent) == 0 || pinned_anywhere(i)) continue;
    if (field(e.touched) != 0) {
      store(e.touched, std::uint8_t{0}, std::memory_order_relaxed);
      continue;
    }
    store(h.spill_hand, std::uint64_t{i} + 1, std::memory_order_relaxed);
    return std::pair{i, w};
  }
  store(h.spill_hand, hand, std::memory_order_relaxed);
  return std::nullopt;
}

bool Session::restore(const RemoteRef& ref, std::uint32_t index, std::uint64_t w) {
  Entry& e = entry(index);
  std::uint32_t gen = word_gen(w);
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::string spill_failed;  // why making room failed, if it did
  for (int attempt = 0;; ++attempt) {
    Lock lock(*this);
    if (load(e.word) != w) return false;  // restored, or erased, by someone else: the caller looks again
    size = field(e.size);
    if (size == 0 || size > geo().capacity) {  // a spilled object has bytes (one of none is never spilled)
      corrupt(fmt::format("{} is spilled with a size of {} bytes, which cannot be", ref.to_string(), size));
    }
    std::uint64_t bytes = footprint(size);
    ExtentAllocator alloc = allocator();
    auto got = alloc.allocate(bytes);
    if (!got && steal_reserved_locked() > 0) got = alloc.allocate(bytes);
    if (!got) {
      if (attempt < kRoomAttempts) {
        lock.release();
        std::string why = make_room(bytes);
        if (!why.empty()) spill_failed = why;
        continue;
      }
      throw Error(
          Errc::OutOfMemory,
          fmt::format("cannot restore {} ({} bytes) from its spill file: segment '{}' has {} of {} bytes free "
                      "(the largest free block {} bytes) and nothing more to spill: {}{}",
                      ref.to_string(), size, name_, alloc.free_bytes(), geo().capacity, alloc.largest_free(),
                      pinned_report_locked(), spill_failed.empty() ? "" : "; spilling failed: " + spill_failed));
    }
    // Ours to restore: others wait on the word. The pin keeps an erase from
    // freeing the extent while we fill it, and a spill from taking it back
    // before our caller has its View.
    if (!atomic(e.word).compare_exchange_strong(w, make_word(EntryState::Restoring, slot_, gen))) {
      alloc.release(*got);
      return false;
    }
    offset = got->offset;
    store(e.offset, got->offset, std::memory_order_relaxed);
    store(e.extent, got->bytes, std::memory_order_relaxed);
    store(e.block, got->block, std::memory_order_relaxed);
    pin(index);
    publish_alloc_stats_locked();
    break;
  }
  struct Unpin {
    Session& s;
    std::uint32_t index, gen;
    bool armed = true;
    ~Unpin() {
      if (armed) s.unpin(index, gen);
    }
  } unpin_later{*this, index, gen};
  std::uint64_t restoring = make_word(EntryState::Restoring, slot_, gen);
  try {
    read_file(spill_path(index, gen), map_.data_rw() + offset, size);
  } catch (...) {
    Lock lock(*this);
    if (load(e.word) == restoring) undo_restore_locked(index, restoring);
    throw;
  }
  Lock lock(*this);
  std::uint32_t restores = field(e.restores) + 1;
  store(e.restores, restores, std::memory_order_relaxed);
  // seq_cst, then the waiters: as in seal().
  if (!atomic(e.word).compare_exchange_strong(restoring, sealed_word(gen, restores))) {
    return false;  // erased while we read: our unpin frees it
  }
  Header& h = header();
  store(h.restores, field(h.restores) + 1, std::memory_order_relaxed);
  uncount_spilled_locked(size);
  store(e.touched, std::uint8_t{1}, std::memory_order_relaxed);
  if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
  unpin_later.armed = false;  // the caller's View takes our pin over
  return true;
}

// The extent goes first, while the word still says Restoring: a holder
// killed in between leaves a Restoring entry of a dead owner and no
// extent, which the repair turns into Spilled like any other (never a
// Spilled entry still holding a half-read extent, which the repair would
// take for a spill's commit cut short).
void Session::undo_restore_locked(std::uint32_t index, std::uint64_t w) noexcept {
  Entry& e = entry(index);
  if (load(e.word) != w) return;  // nothing else moves a Restoring entry without the lock
  release_extent_locked(e, true);
  publish_alloc_stats_locked();
  if (!atomic(e.word).compare_exchange_strong(w, make_word(EntryState::Spilled, kNoOwner, word_gen(w)))) return;
  if (load(e.waiters) != 0) futex_wake_all(futex_word(e));
}

void Session::uncount_spilled_locked(std::uint64_t size) noexcept {
  Header& h = header();
  std::uint64_t objects = field(h.spilled_objects);
  std::uint64_t bytes = field(h.spilled_bytes);
  store(h.spilled_objects, objects - std::min<std::uint64_t>(1, objects), std::memory_order_relaxed);
  store(h.spilled_bytes, bytes - std::min(size, bytes), std::memory_order_relaxed);
}

void Session::recount_spilled_locked() noexcept {
  std::uint64_t objects = 0;
  std::uint64_t bytes = 0;
  for (std::uint32_t i = 0; i < geo().max_objects; ++i) {
    std::uint64_t w = load(entry(i).word);
    if (!word_valid(w)) continue;
    if (word_state(w) == EntryState::Spilled || word_state(w) == EntryState::Restoring) {
      objects += 1;
      bytes += std::min(field(entry(i).size), geo().capacity);
    }
  }
  store(header().spilled_objects, objects, std::memory_order_relaxed);
  store(header().spilled_bytes, bytes, std::memory_order_relaxed);
}

std::string Session::pinned_report_locked() const {
  struct Held {
    std::uint64_t pinned = 0;
    std::uint64_t writing = 0;
  };
  std::map<std::uint32_t, Held> by_slot;
  std::uint64_t pinned = 0;
  std::uint64_t writing = 0;
  for (std::uint32_t i = 0; i < geo().max_objects; ++i) {
    const Entry& e = entry(i);
    std::uint64_t w = load(e.word);
    if (!word_valid(w)) continue;
    EntryState st = word_state(w);
    std::uint64_t extent = std::min(field(e.extent), geo().capacity);
    if (st == EntryState::Writing || st == EntryState::Restoring) {
      writing += extent;
      if (word_owner(w) < kMaxProcesses) by_slot[word_owner(w)].writing += extent;
      continue;
    }
    if (!holds_extent(st) || st == EntryState::Reserved) continue;
    bool any = false;
    for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
      if ((load(pins(i).bits[s / 64], std::memory_order_relaxed) & (std::uint64_t{1} << (s % 64))) == 0)
        continue;  // NOLINT
      if (static_cast<SlotState>(load(slot(s).state)) != SlotState::Live) continue;
      by_slot[s].pinned += extent;
      any = true;
    }
    if (any) pinned += extent;
  }
  std::string who;
  for (const auto& [s, held] : by_slot) {
    if (!who.empty()) who += ", ";
    who += fmt::format("worker {} (pid {}) pins {} and writes {} bytes", field(slot(s).worker_id), field(slot(s).pid),
                       held.pinned, held.writing);
  }
  return fmt::format("{} bytes are pinned and {} being written{}{}", pinned, writing, who.empty() ? "" : ": ", who);
}

// The folder's path came from a header a peer may have rewritten: it is
// opened without following links (it and its parent), must belong to the
// segment's owner, and only the regular files directly in it go.
void Session::remove_spill_folder(const std::string& folder, uid_t owner) noexcept {
  auto slash = folder.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string parent = folder.substr(0, slash);
  std::string leaf = folder.substr(slash + 1);
  int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0) return;
  int dfd = ::openat(pfd, leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st {};
  if (dfd < 0 || ::fstat(dfd, &st) != 0 || st.st_uid != owner) {
    if (dfd >= 0) ::close(dfd);
    ::close(pfd);
    return;
  }
  DIR* d = ::fdopendir(dfd);
  if (d == nullptr) {
    ::close(dfd);
    ::close(pfd);
    return;
  }
  while (dirent* ent = ::readdir(d)) {
    struct stat f {};
    if (::fstatat(dfd, ent->d_name, &f, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(f.st_mode)) continue;  // NOLINT
    ::unlinkat(dfd, ent->d_name, 0);                                                                 // NOLINT
  }
  ::closedir(d);
  ::unlinkat(pfd, leaf.c_str(), AT_REMOVEDIR);
  ::close(pfd);
}

}  // namespace sealstore::detail
