// One torture worker process: attaches to the segment and does random
// operations for ever (until it is killed, or retires), checking every
// object it reads and recording what it seals in the ledger.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "ledger.hpp"

namespace torture {

struct Config {
  std::string segment;
  std::uint32_t workers = 4;
  std::uint64_t seconds = 10;
  std::uint64_t capacity = std::uint64_t{64} << 20U;
  std::uint32_t max_objects = 4096;
  std::uint64_t max_object = std::uint64_t{256} << 10U;
  std::chrono::milliseconds kill_min{1};
  std::chrono::milliseconds kill_max{8};
  std::chrono::milliseconds bound{5000};  // no operation may block longer
  std::uint64_t seed = 0;
  bool verbose = false;
  // A peer scribbles random bytes over the segment's header and tables while
  // the workers work: they check only that they never crash, never touch
  // memory outside the segment's mappings and never block past the bound.
  bool hostile = false;
  std::chrono::microseconds scribble_every{500};  // on average
  // Spilling: the segment spills into this directory, and the workload
  // outgrows the segment several times (the workers erase by the ledger's
  // fill, not the segment's).
  std::string spill_dir;
  bool spilling() const { return !spill_dir.empty(); }
};

// Names workers bind: "t<worker>.<n>", n < kNamesPerWorker.
inline constexpr std::uint32_t kNamesPerWorker = 8;
std::string object_name(std::uint32_t worker, std::uint32_t n);

// Runs worker `index` (incarnation `life`) in this process; returns only to
// retire (exit code 0) or after an unexpected failure (non-zero).
int run_worker(const Config& cfg, const Ledger& ledger, std::uint32_t index, std::uint64_t life);

// --hostile: a worker that expects any sealstore::Error (the segment is
// being scribbled over) and checks what cannot be excused; and the
// scribbler, which writes random bytes into the header (past its geometry)
// and the tables until it is killed.
int run_hostile_worker(const Config& cfg, const Ledger& ledger, std::uint32_t index, std::uint64_t life);
[[noreturn]] void run_scribbler(const Config& cfg, const Ledger& ledger, std::uint32_t area);

// Records the op's latency in area a; a violation if it is above the bound.
void note_latency(const Ledger& ledger, std::uint32_t index, std::uint32_t op, std::chrono::nanoseconds took,
                  std::chrono::milliseconds bound);

}  // namespace torture
