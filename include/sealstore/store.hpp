// sealstore::Store, a handle on one shared-memory segment of sealed objects.
// A Store is safe for concurrent use from many threads, and many processes
// may attach to one segment at once. Every call throws sealstore::Error; the
// comment on each call lists its codes. Calls do not block unless they say so.
// A Store inherited across fork() is unusable in the child: attach again.
// A moved-from Store is empty: every call on it throws InvalidArgument
// (assigning another Store to it makes it usable again).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealstore/error.hpp"
#include "sealstore/ref.hpp"
#include "sealstore/stats.hpp"
#include "sealstore/subscription.hpp"
#include "sealstore/value.hpp"
#include "sealstore/view.hpp"
#include "sealstore/writer.hpp"

namespace sealstore {

namespace detail {
class Session;
}

struct CreateOptions {
  // Bytes for object data. The whole backing file (data plus tables) is
  // reserved on the mount at creation, so running out shows here, not later.
  std::uint64_t capacity = std::uint64_t{64} << 20U;
  // How many objects (and made refs) can exist at once; 0 picks
  // capacity / 16 KiB, clamped to [1024, 1 << 20].
  std::uint32_t max_objects = 0;
  // How many store-wide names can be bound at once.
  std::uint32_t max_names = 1024;
  // Permission bits of the backing file: owner-only unless asked otherwise
  // (0660 shares with the group of the creating process). Must include
  // owner read and write; never world-writable.
  std::uint32_t mode = 0600;
  // Touch the whole mapping now (MAP_POPULATE): creation takes longer, and
  // first writes into the segment take no page faults.
  bool prefault = false;
  // Ask for transparent huge pages on the mapping (madvise). Takes effect
  // only on a mount that allows them (tmpfs huge=within_size or the sysfs
  // shmem_enabled setting); harmless elsewhere. The tables do not need it:
  // when they come to 8 MiB or more (about 2^16 max_objects) and the file
  // is on a tmpfs, creation puts them on 2 MiB pages whatever the mount
  // says (Linux 6.1 and later; see docs/architecture.md, "Tables on huge
  // pages"). This option is for the data region: a mount that allows huge
  // pages spares large objects' first-touch faults and TLB misses.
  bool huge_pages = false;
  // Where the backing file lives: "/dev/shm" unless set (another tmpfs, a
  // huge-page tmpfs). The file is DIRECTORY/sealstore.NAME.
  std::string directory{};
  // Spilling: empty (the default) for none, so a full segment answers
  // OutOfMemory. Else a directory on a disk (made if missing, owner-only):
  // when a write needs space the segment does not have, sealed objects
  // nobody pins, least recently fetched first, are written to files there
  // (in a folder of the segment's own, DIRECTORY/sealstore.NAME.TAG) and
  // their space freed; a fetch of one reads it back, under the same ref.
  // At most 200 bytes; a relative path is taken from the working directory.
  // One that exists must not be a link, must belong to this user or root,
  // and must be sticky if every user may write it (else PermissionDenied).
  // See docs/spill.md.
  std::string spill_directory{};
  // Watermarks, as fractions of capacity (0 < low <= high <= 1): a write
  // that would take the bytes objects use above high spills until they use
  // at most low (and the write fits). The defaults spill only what a write
  // needs; a lower low spills ahead, in batches.
  double spill_high_water = 1.0;
  double spill_low_water = 1.0;
  // The creator's worker id; processes attaching later get the ids after
  // it. 1 unless set: a cluster gives host H's segment H * 1000000 + 1, so
  // that ids (and so refs' where and whence) are unique across hosts.
  // At most kMaxFirstWorkerId.
  std::uint32_t first_worker_id = 1;
};
inline constexpr std::uint32_t kMaxFirstWorkerId = 0xf0000000U;

struct AttachOptions {
  // Populate the read-only mapping of the data now, so first reads of
  // objects take no minor faults (attach takes longer).
  bool prefault = false;
  bool huge_pages = false;
  std::string directory{};
  // Observer: map the segment read-only, take no process slot, pin and lock
  // nothing. Only introspection works (info, processes, objects, lookup);
  // the rest throws InvalidArgument. memstat attaches this way.
  bool observer = false;
  // For the worker pool: the role and id this process attaches as.
  Role role = Role::Client;
  WorkerId id = 0;  // 0: the next free id
  // Whose segment files to trust besides this process's own user and root.
  // Whoever owns the file could have written every byte in it, so attach
  // refuses (PermissionDenied) a file owned by anyone else unless its uid
  // is listed here: for example, the creator of a group-shared (0660)
  // segment. Observers, which only read, are not held to this.
  std::vector<std::uint32_t> trusted_owners{};
};

// "Wait for ever": the default for fetch.
inline constexpr std::chrono::nanoseconds kForever = std::chrono::nanoseconds::max();

struct FetchOptions {
  // How long to wait for the seal before failing with Timeout.
  std::chrono::nanoseconds timeout = kForever;
  // Before going to sleep, poll for the seal for up to this long (a bounded
  // spin, burning this CPU meanwhile). A sleeping fetch wakes in the time the
  // kernel takes to wake a process (about 20 us on this kind of VM); a
  // spinning one sees the seal within a few hundred nanoseconds. Worth it
  // only when the seal is expected within the spin and a core is free.
  std::chrono::nanoseconds spin{0};
};

class Store {
 public:
  // Creates segment NAME (letters, digits, '.', '_', '-'; at most 200; not
  // starting with '.') and attaches as its owner, worker id 1.
  // Errors: InvalidArgument (name, options), AlreadyExists, OutOfMemory (the
  // mount cannot hold it: sizes named), PermissionDenied.
  static Store create(std::string_view name, const CreateOptions& options = {});
  // Attaches to an existing segment. Blocks only while another process is
  // creating it. Validates the segment's header (its identity and
  // geometry) and keeps a private copy of the geometry; everything else in
  // the segment is checked by each call as it touches it, so attaching
  // costs the same whatever the segment's size. Cleans up after processes
  // that died. Errors: InvalidArgument, SegmentMissing, IncompatibleSegment
  // (other magic, version or layout; not a regular file), Corrupt (a value
  // in the header out of range; named), PermissionDenied (the file's mode,
  // a file writable by every user, or one owned by a uid that is neither
  // ours, root's nor in trusted_owners), OutOfMemory (all 128 process slots
  // held by live processes).
  static Store attach(std::string_view name, const AttachOptions& options = {});
  // Unlinks the segment's name; processes attached keep using it until they
  // detach. Returns false if there was none. Errors: InvalidArgument,
  // PermissionDenied.
  static bool remove(std::string_view name, std::string_view directory = {});
  static bool exists(std::string_view name, std::string_view directory = {});
  // The backing file's path for NAME.
  static std::string path_of(std::string_view name, std::string_view directory = {});
  // The folder of NAME's spill files, as its header names it; empty if it
  // does not spill (or is not a segment of this version). remove() deletes
  // it with the segment: at once if no process is attached, else when the
  // last one detaches.
  static std::string spill_folder(std::string_view name, std::string_view directory = {});
  // The names of the segments in directory ("/dev/shm" unless given), sorted:
  // every regular file there named as a backing file with a valid segment
  // name. Reads the directory only; opens no segment. Errors:
  // InvalidArgument (the directory does not exist or is not one),
  // PermissionDenied (it cannot be read).
  static std::vector<std::string> list(std::string_view directory = {});

  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // Detaches when the last Store, View and Writer of this attachment are gone.
  ~Store();

  const std::string& name() const;
  // This process's worker id in the store.
  WorkerId myid() const;

  // An unfilled ref that any attached process may fill once. where defaults
  // to this process. Errors: OutOfMemory (object table full).
  RemoteRef make_ref();
  RemoteRef make_ref(WorkerId where);

  // Copies value into the segment and seals it under a new ref. V is any
  // Element T, std::vector<T>, std::span<const T>, std::string(_view),
  // NdArray<T>, a contiguous NdView<T>, or std::span<const std::byte>.
  // Errors: OutOfMemory (sizes and free space named).
  template <class V>
  RemoteRef put(const V& value) {
    using C = Codec<std::remove_cvref_t<V>>;
    return put_bytes(C::type(value), C::bytes(value));
  }
  // Fills ref, made with make_ref(), and seals it. Errors: AlreadySealed (it
  // was filled or is being filled; nothing changes), NotFound, OutOfMemory.
  template <class V>
  void put(const RemoteRef& ref, const V& value) {
    using C = Codec<std::remove_cvref_t<V>>;
    put_bytes(ref, C::type(value), C::bytes(value));
  }
  RemoteRef put_bytes(const ValueType& type, std::span<const std::byte> bytes);
  void put_bytes(const RemoteRef& ref, const ValueType& type, std::span<const std::byte> bytes);

  // Space of `bytes` bytes to fill in place, sealed under a new ref.
  // Errors: OutOfMemory, InvalidArgument (size not a multiple of the element
  // size, or not matching an NdArray's shape).
  Writer create_writer(std::uint64_t bytes, const ValueType& type = {});
  // The same, to fill ref (made with make_ref()). Errors as put(ref, ...).
  Writer create_writer(const RemoteRef& ref, std::uint64_t bytes, const ValueType& type = {});

  // Fills ref, made with make_ref(), with a failure instead of a value:
  // every fetch of it, waiting now or later, fails with WorkerFailed
  // carrying reason (cut to 4 KiB). A ref whose writer died before sealing
  // may be failed too, its reason replacing the generic one. The failed ref
  // stays until erased. Errors: AlreadySealed (sealed, being filled by a
  // live process, or failed already; nothing changes), NotFound,
  // InvalidArgument (null ref).
  void fail(const RemoteRef& ref, std::string_view reason);

  // Waits (sleeping, never spinning) until ref is sealed, then pins it and
  // returns a View. Costs the same for any object size; copies nothing.
  // A spilled object is first read back from its spill file into the
  // segment (restored; its View is the same as ever). Fetches of one
  // spilled ref share one restore: the others wait for it, bounded by
  // their timeout; the restore a fetch does itself runs to its end
  // (it takes about as long as reading the file). Restoring may spill
  // others to make room.
  // Errors: Timeout, NotFound (unknown, erased, or of another segment),
  // WorkerFailed (its writer died, or it was failed), InvalidArgument (null ref).
  View fetch(const RemoteRef& ref);
  View fetch(const RemoteRef& ref, std::chrono::nanoseconds timeout);
  View fetch(const RemoteRef& ref, const FetchOptions& options);
  // Never waits: an empty optional if ref is not sealed yet, or if another
  // process is restoring it from its spill file. A spilled ref it restores
  // itself, as fetch does. Errors: NotFound, WorkerFailed, InvalidArgument,
  // OutOfMemory (no room to restore it).
  std::optional<View> try_fetch(const RemoteRef& ref);

  // fetch() of every ref, in order, waiting as fetch() does (options apply
  // to each). Faster than fetching one by one when the refs' table entries
  // are not in the CPU's caches (many objects fetched in no particular
  // order): each ref's entry and pin are brought in while earlier refs are
  // fetched. On an error, the views already taken are released and nothing
  // is returned. Errors: as fetch.
  std::vector<View> fetch_many(std::span<const RemoteRef> refs, const FetchOptions& options = {});

  // Fetches and copies the value into memory the caller owns (a spilled
  // object is restored first, as fetch does). V as for put
  // (std::vector<std::byte> takes the raw bytes of any value). An object of
  // up to 4 KiB is copied without pinning it (then checked unchanged; if it
  // was erased meanwhile, fetched as usual). Errors: as fetch, and
  // TypeMismatch naming both types.
  template <class V>
  V materialize(const RemoteRef& ref, std::chrono::nanoseconds timeout = kForever) {
    using C = Codec<V>;
    Snapshot s;
    ValueType st;
    if (snapshot(ref, s, st) && C::accepts(st)) {
      V v = C::build(s.bytes, st);
      if (still_valid(s)) return v;
    }
    return materialize_pinned<V>(ref, timeout);
  }
  // Copies the object's bytes into dst (exactly its size). Errors: as fetch,
  // InvalidArgument (dst of another size).
  void materialize_into(const RemoteRef& ref, std::span<std::byte> dst, std::chrono::nanoseconds timeout = kForever);

  // Spills ref now, if it can (see CreateOptions::spill_directory): writes
  // the sealed object to its spill file, unless the file has it already,
  // and frees its space in the segment. True if it did, false if the
  // object was pinned, not sealed, or already spilled. Blocks on the file's
  // write. Errors: InvalidArgument (the segment does not spill, null ref),
  // NotFound, OutOfMemory (the spill directory's disk is full; nothing
  // changes).
  bool spill(const RemoteRef& ref);

  // Subscribes to the store's seals from now on (see subscription.hpp).
  // Errors: InvalidArgument (an observer).
  Subscription subscribe();

  // Erases ref: now if nobody pins it, else when the last pin goes (fetch
  // fails with NotFound from now on). Names bound to it are unbound.
  // Errors: NotFound, NotSealed (a writer is filling it).
  void erase(const RemoteRef& ref);
  // True while ref names an object of this segment that is not erased, in
  // any state (unfilled, being written, sealed, or failed). False from the
  // moment erase(ref) returns, even while the free itself waits for the
  // last View: such an object can no longer be fetched. Never throws for a
  // ref of another segment or the null ref (false).
  bool contains(const RemoteRef& ref) const;

  // Store-wide names. Names: 1..63 of letters, digits, '.', '_', '-', ':',
  // '/'. bind replaces an earlier binding of the same name.
  // Errors: InvalidArgument (name), NotFound (ref), OutOfMemory (name table).
  void bind(std::string_view name, const RemoteRef& ref);
  std::optional<RemoteRef> lookup(std::string_view name) const;
  bool unbind(std::string_view name);

  // Introspection, read without the lock (see stats.hpp).
  SegmentInfo info() const;
  std::vector<ProcessInfo> processes() const;
  std::vector<ObjectInfo> objects() const;

  // Cleans up after dead processes now: releases their pins, reclaims their
  // unsealed objects and frees their slots. Returns how many were reaped.
  // Blocks on the store's lock.
  std::size_t recover();

  // For tools and the pool: the internal session. Not a stable API.
  const std::shared_ptr<detail::Session>& session() const noexcept { return session_; }

 private:
  explicit Store(std::shared_ptr<detail::Session> s) noexcept;
  // The session, or Error(InvalidArgument) for a moved-from Store.
  detail::Session& session_ref() const;
  View fetch_until(const RemoteRef& ref, std::optional<std::chrono::steady_clock::time_point> deadline, bool wait,
                   std::chrono::nanoseconds spin = {});
  static std::optional<std::chrono::steady_clock::time_point> deadline_of(const RemoteRef& ref,
                                                                          const FetchOptions& options);
  // A small sealed object's bytes and type as they are now, unpinned: copy
  // them, then ask still_valid() whether they stayed the same meanwhile.
  // snapshot() fills s and t (the stored type, checked against the size)
  // and says true, or says false: the object is not sealed, is too large,
  // or its type does not fit (fetch() then gives the right error).
  struct Snapshot {
    std::span<const std::byte> bytes;
    const std::uint64_t* word_at = nullptr;  // the object's head word in the segment
    std::uint64_t word = 0;                  // its value when the bytes were found
  };
  bool snapshot(const RemoteRef& ref, Snapshot& s, ValueType& t) const;
  // The copy's loads come before this load of the word (the fence): if the
  // word is unchanged, nobody erased the object, so nobody could have
  // reused its bytes meanwhile.
  static bool still_valid(const Snapshot& s) noexcept {
#if !defined(__SANITIZE_THREAD__)  // (where snapshot() never succeeds: ThreadSanitizer cannot model the fence)
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
    return __atomic_load_n(s.word_at, __ATOMIC_RELAXED) == s.word;
  }
  // materialize() by fetch: pinned while copied.
  template <class V>
  [[gnu::noinline]] V materialize_pinned(const RemoteRef& ref, std::chrono::nanoseconds timeout) {
    using C = Codec<V>;
    View v = fetch(ref, timeout);
    ValueType t = v.type();
    if (!C::accepts(t)) throw_type_mismatch(ref, t, C::wanted().describe());
    return C::build(v.bytes(), t);
  }
  [[noreturn]] static void throw_type_mismatch(const RemoteRef& ref, const ValueType& stored, std::string_view wanted);

  std::shared_ptr<detail::Session> session_;
};

}  // namespace sealstore
