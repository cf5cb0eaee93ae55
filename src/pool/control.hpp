// The pool's control block: one small shared mapping (a memfd the owner
// creates and its workers inherit) holding, per worker, its start-up
// handshake and a ring of tasks. The owner is the only producer of each
// ring, the worker its only consumer. Every field says who writes it; all
// cross-process accesses go through atomics.hpp, futexes are shared.
//
//   [PoolHeader | WorkerControl x max_workers | TaskSlot x max_workers x queue_depth]
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "sealstore/pool.hpp"

namespace sealstore::detail {

inline constexpr std::uint64_t kPoolMagic = 0x3130'4c4f'4f50'4c53ULL;  // "SLPOOL01"
inline constexpr std::uint32_t kPoolVersion = 1;
inline constexpr std::size_t kFunctionNameBytes = 64;  // names up to 63 bytes, NUL-padded
inline constexpr std::uint32_t kMaxPoolWorkers = 120;

enum class WorkerState : std::uint32_t {
  Free = 0,      // no worker
  Starting = 1,  // owner spawned it; it has not attached yet
  Ready = 2,     // it attached (worker_id and pid are set): it takes tasks
  Exited = 3,    // the owner reaped it
};

struct alignas(64) PoolHeader {
  std::uint64_t magic;  // kPoolMagic; written once before any worker starts
  std::uint32_t version;
  std::uint32_t max_workers;
  std::uint32_t queue_depth;
  std::uint32_t task_bytes;   // sizeof(TaskSlot)
  std::uint32_t segment_tag;  // of the pool's segment
  std::int32_t owner_pid;
  std::uint64_t workers_offset;
  std::uint64_t tasks_offset;
};

struct alignas(64) WorkerControl {
  // --- line 1: start-up and stop
  std::uint32_t state;      // WorkerState; the futex word of the start-up handshake. Owner: Free ->
                            // Starting, -> Exited, -> Free; worker: Starting -> Ready (CAS).
  std::uint32_t worker_id;  // written by the worker before Ready
  std::int32_t pid;         // written by the worker before Ready
  std::uint32_t stop;       // set by the owner: exit once the queue is empty
  // --- line 2: the producer's side
  alignas(64) std::uint32_t head;  // tasks published (owner)
  std::uint32_t worker_sleeping;   // 1 while the worker sleeps (or is about to) on bell (worker)
  std::uint32_t bell;              // bumped by the owner after each change the worker must see (a task
                                   // published, stop set): the futex word the worker sleeps on
  // --- line 3: the consumer's side
  alignas(64) std::uint32_t tail;  // tasks taken out of the ring (worker); the owner sleeps on it
                                   // while the ring is full
  std::uint32_t done;              // tasks finished: result sealed or failed (worker)
  std::uint32_t owner_waiting;     // 1 while the owner sleeps on tail (owner)
};
static_assert(sizeof(WorkerControl) == 192);

// One queued call. Written by the owner before it publishes head, read by
// the worker before it advances tail: never touched by both at once.
struct alignas(64) TaskSlot {
  std::uint32_t segment_tag;  // the result ref: tag, id, where, whence
  std::uint32_t where;
  std::uint64_t ref_id;
  std::uint32_t whence;
  std::uint32_t args_size;  // bytes used of args
  std::uint64_t reserved;
  char function[kFunctionNameBytes];
  std::byte args[kTaskArgBytes];
};
static_assert(sizeof(TaskSlot) == 1024);

static_assert(std::is_standard_layout_v<PoolHeader> && std::is_trivially_copyable_v<PoolHeader>);
static_assert(std::is_standard_layout_v<WorkerControl> && std::is_trivially_copyable_v<WorkerControl>);
static_assert(std::is_standard_layout_v<TaskSlot> && std::is_trivially_copyable_v<TaskSlot>);

// A mapped control block. Not owning: the owner and the worker each manage
// their mapping's lifetime.
class ControlBlock {
 public:
  ControlBlock() = default;
  ControlBlock(std::byte* base, std::uint64_t bytes) noexcept : base_(base), bytes_(bytes) {}

  static std::uint64_t bytes_for(std::uint32_t max_workers, std::uint32_t queue_depth) {
    return sizeof(PoolHeader) + std::uint64_t{max_workers} * sizeof(WorkerControl) +
           std::uint64_t{max_workers} * queue_depth * sizeof(TaskSlot);
  }
  // Lays out a zeroed block.
  void init(std::uint32_t max_workers, std::uint32_t queue_depth, std::uint32_t segment_tag, std::int32_t owner_pid);
  // Checks a block mapped by a worker. Throws Error(IncompatibleSegment).
  void validate() const;

  PoolHeader& header() const noexcept { return *reinterpret_cast<PoolHeader*>(base_); }  // NOLINT
  WorkerControl& worker(std::uint32_t slot) const noexcept {
    return reinterpret_cast<WorkerControl*>(base_ + header().workers_offset)[slot];  // NOLINT
  }
  TaskSlot& task(std::uint32_t slot, std::uint32_t seq) const noexcept {
    const PoolHeader& h = header();
    return reinterpret_cast<TaskSlot*>(base_ + h.tasks_offset)[std::uint64_t{slot} * h.queue_depth +  // NOLINT
                                                               seq % h.queue_depth];
  }
  std::byte* base() const noexcept { return base_; }
  std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  std::byte* base_ = nullptr;
  std::uint64_t bytes_ = 0;
};

}  // namespace sealstore::detail
