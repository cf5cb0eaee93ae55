// A process's cache of table entries with extents of a size class: the
// Reserved entries it owns. Puts take from it and erases give back to it
// without the segment lock; it is refilled and drained in batches under the
// lock. Each thread has its own bins, beside a shared depot, so threads of
// one process do not contend either.
//
// The truth stays in the object table: a cached entry is Reserved there,
// with this process's slot as owner and its extent recorded. A record here
// is only a hint of where to look: taking it is a compare-and-swap of the
// entry's head word from exactly (Reserved, us, the record's generation),
// which fails if the entry was taken back meanwhile (by a process short of
// space, or by recovery), and the record is dropped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "alloc/size_classes.hpp"

namespace sealstore::detail {

struct CachedExtent {
  std::uint32_t index;  // the entry
  std::uint32_t gen;    // its generation while Reserved
  std::uint64_t offset;
  std::uint32_t cls;  // its size class: the extent is class_bytes(cls)
};

using Bins = std::array<std::vector<CachedExtent>, kClasses>;

struct ThreadCache {
  Bins bins;
  std::uint32_t line = 0;  // its line of the process's SlotStats
  // The line is this cache's alone (1 to kStatLines - 1), so the thread
  // holding the cache is the only writer of its `reserved`. Line 0 is
  // shared: by the caches beyond the first kStatLines - 1, the drains, and
  // other processes taking cached entries back.
  bool own_line = false;
  bool in_use = false;  // a thread has it (under the registry's mutex)
  // Views and Writers this thread made that are not released yet, less
  // those of them released by other threads: they keep the attachment
  // alive. On a line of its own, so threads count without sharing one.
  alignas(64) std::atomic<std::int64_t> handles{0};
};

// One per attachment. Shared with the threads that used it, which hand
// their caches back when they exit.
class CacheRegistry : public std::enable_shared_from_this<CacheRegistry> {
 public:
  CacheRegistry();
  CacheRegistry(const CacheRegistry&) = delete;
  CacheRegistry& operator=(const CacheRegistry&) = delete;

  // This thread's cache: made or adopted (from a thread that exited) the
  // first time it asks.
  ThreadCache& mine();

  // Every record held, by any thread or the depot, taken out: for a
  // process leaving the segment (no other thread can be using it then).
  std::vector<CachedExtent> take_all();
  // The sum of every thread's handles.
  std::int64_t handles();

  std::mutex mu;  // guards depot, caches' in_use, and the caches vector
  Bins depot;

 private:
  [[gnu::noinline]] ThreadCache& mine_slow();

  std::uint64_t serial_;
  std::vector<std::unique_ptr<ThreadCache>> caches_;
};

}  // namespace sealstore::detail
