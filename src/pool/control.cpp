#include "pool/control.hpp"

#include <fmt/format.h>

#include "sealstore/error.hpp"

namespace sealstore::detail {

void ControlBlock::init(std::uint32_t max_workers, std::uint32_t queue_depth, std::uint32_t segment_tag,
                        std::int32_t owner_pid) {
  PoolHeader& h = header();
  h.version = kPoolVersion;
  h.max_workers = max_workers;
  h.queue_depth = queue_depth;
  h.task_bytes = sizeof(TaskSlot);
  h.segment_tag = segment_tag;
  h.owner_pid = owner_pid;
  h.workers_offset = sizeof(PoolHeader);
  h.tasks_offset = h.workers_offset + std::uint64_t{max_workers} * sizeof(WorkerControl);
  h.magic = kPoolMagic;  // workers start after this, so no ordering is needed
}

void ControlBlock::validate() const {
  const PoolHeader& h = header();
  if (bytes_ < sizeof(PoolHeader) || h.magic != kPoolMagic || h.version != kPoolVersion ||
      h.task_bytes != sizeof(TaskSlot) || h.max_workers == 0 || h.max_workers > kMaxPoolWorkers || h.queue_depth == 0 ||
      (h.queue_depth & (h.queue_depth - 1)) != 0 || bytes_ < bytes_for(h.max_workers, h.queue_depth)) {
    throw Error(Errc::IncompatibleSegment,
                fmt::format("the pool's control block is of another version or layout ({} bytes)", bytes_));
  }
}

}  // namespace sealstore::detail
