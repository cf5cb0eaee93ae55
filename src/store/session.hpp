// detail::Session: one process's attachment to a segment, shared by the
// Store handle and every View and Writer made through it. It implements
// the store's operations on the segment's tables. Thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "alloc/extent_allocator.hpp"
#include "sealstore/ref.hpp"
#include "sealstore/stats.hpp"
#include "sealstore/store.hpp"
#include "sealstore/value.hpp"
#include "segment/layout.hpp"
#include "segment/segment.hpp"

namespace sealstore::detail {

// Longer reasons given to Store::fail are cut to this many bytes.
inline constexpr std::size_t kMaxFailureReason = 4096;

class Session {
 public:
  static std::shared_ptr<Session> create(std::string_view name, const CreateOptions& o);
  static std::shared_ptr<Session> attach(std::string_view name, const AttachOptions& o);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const std::string& name() const noexcept { return name_; }
  WorkerId id() const noexcept { return id_; }
  bool observer() const noexcept { return slot_ == kNoSlot; }
  Header& header() const noexcept { return map_.header(); }
  const Mapping& mapping() const noexcept { return map_; }

  RemoteRef make_ref(WorkerId where);

  struct Claim {
    std::uint32_t index;
    RemoteRef ref;
    std::span<std::byte> bytes;
  };
  // Allocates an entry (or claims `target`) and its data, in state Writing.
  Claim begin_write(const RemoteRef* target, std::uint64_t size, const ValueType& type);
  // Throws InvalidArgument in a process that did not make the writer (a
  // fork child), Corrupt if the entry is not this writer's any more.
  void seal(std::uint32_t index, std::uint32_t gen);
  // Store::fail: the ref becomes Abandoned with reason as its data.
  void fail(const RemoteRef& ref, std::string_view reason);
  void abort(std::uint32_t index) noexcept;

  struct Pinned {
    std::uint32_t index;
    std::span<const std::byte> bytes;
    ValueType type;  // as stored when pinned
    bool type_fits;  // type describes exactly bytes.size() bytes
  };
  // deadline nullopt: wait for ever. wait false: never wait (nullopt result).
  // spin: poll this long before sleeping.
  std::optional<Pinned> fetch(const RemoteRef& ref, std::optional<std::chrono::steady_clock::time_point> deadline,
                              bool wait, std::chrono::nanoseconds spin = {});
  void unpin(std::uint32_t index) noexcept;
  // Error(Corrupt): ref's stored type t cannot describe its size bytes.
  [[noreturn]] void throw_misfit(const RemoteRef& ref, const ValueType& t, std::uint64_t size) const;

  void erase(const RemoteRef& ref);
  bool contains(const RemoteRef& ref) const;

  void bind(std::string_view name, const RemoteRef& ref);
  std::optional<RemoteRef> lookup(std::string_view name) const;
  bool unbind(std::string_view name);

  SegmentInfo info() const;
  std::vector<ProcessInfo> processes() const;
  std::vector<ObjectInfo> objects() const;
  std::size_t recover();

  // Throws InvalidArgument if this handle cannot change the store (observer,
  // or inherited across fork).
  void check_writable() const;

 private:
  Session(std::string name, Mapping map);
  class Lock;
  friend class Lock;

  Entry& entry(std::uint32_t i) const noexcept;
  ProcessSlot& slot(std::uint32_t s) const noexcept;
  std::uint64_t* pin_row(std::uint32_t s) const noexcept;
  NameSlot& name_slot(std::uint32_t i) const noexcept;
  ExtentAllocator allocator() const noexcept;

  void join(Role role, WorkerId id);
  void leave() noexcept;
  bool usable() const noexcept;
  // Whether the process attached in slot s can still use the segment.
  bool slot_alive(std::uint32_t s) const;
  std::uint32_t index_of(const RemoteRef& ref) const;
  RemoteRef ref_of(std::uint32_t index) const;
  [[noreturn]] void throw_gone(const RemoteRef& ref, const Entry& e, EntryState st) const;
  [[noreturn]] void throw_not_found(const RemoteRef& ref, const Entry& e) const;
  [[noreturn]] void throw_failed(const RemoteRef& ref) const;
  // Polls e.state until it is neither Unfilled nor Writing, for at most
  // spin (and not past deadline). True if it settled.
  static bool spin_until_settled(const Entry& e, std::chrono::nanoseconds spin,
                                 std::optional<std::chrono::steady_clock::time_point> deadline);
  void wait_for_change(Entry& e, std::uint32_t seen, const RemoteRef& ref,
                       std::optional<std::chrono::steady_clock::time_point> deadline);

  void pin(std::uint32_t index) noexcept;
  bool pinned_anywhere(std::uint32_t index) const noexcept;
  void free_if_unpinned(std::uint32_t index) noexcept;

  bool extent_fits(const Entry& e) const noexcept;

  // Under the lock:
  void free_entry_locked(std::uint32_t index) noexcept;
  void release_data_locked(Entry& e) noexcept;
  void abandon_locked(Entry& e) noexcept;
  void validate_tables_locked() const;
  void check_claim_locked(std::uint32_t index, std::uint64_t offset, std::uint64_t bytes);
  void publish_alloc_stats_locked() noexcept;
  std::size_t reap_dead_locked();
  void reap_slot_locked(std::uint32_t s, bool died);
  void free_unpinned_erased_locked() noexcept;
  std::size_t repair_locked();
  void unbind_entry_locked(std::uint32_t index) noexcept;
  struct NameHit {
    std::uint32_t pos;    // the name slot
    std::uint32_t index;  // the binding, read with the name in one version of the slot
    std::uint32_t gen;
  };
  std::optional<NameHit> find_name(std::string_view name, std::uint64_t hash, bool* stuck) const;
  void write_name_slot_locked(NameSlot& n, std::uint32_t state, std::uint32_t index, std::uint32_t gen,
                              std::uint64_t hash, std::string_view name) noexcept;

  std::string name_;
  Mapping map_;
  std::uint32_t slot_ = kNoSlot;
  WorkerId id_ = 0;
  pid_t pid_ = 0;
  std::uint64_t pid_ns_ = 0;  // our pid namespace (see registry/process.hpp)
  std::uint64_t fork_epoch_ = 0;
  // This process's pin count per entry; bit 31 set while a thread moves the
  // count between 0 and 1 and updates the shared pin bitmap.
  std::atomic<std::uint32_t>* local_pins_ = nullptr;
  std::size_t local_pins_bytes_ = 0;
};

}  // namespace sealstore::detail
