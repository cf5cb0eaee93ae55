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
};

// Names workers bind: "t<worker>.<n>", n < kNamesPerWorker.
inline constexpr std::uint32_t kNamesPerWorker = 8;
std::string object_name(std::uint32_t worker, std::uint32_t n);

// Runs worker `index` (incarnation `life`) in this process; returns only to
// retire (exit code 0) or after an unexpected failure (non-zero).
int run_worker(const Config& cfg, const Ledger& ledger, std::uint32_t index, std::uint64_t life);

// Records the op's latency in area a; a violation if it is above the bound.
void note_latency(const Ledger& ledger, std::uint32_t index, std::uint32_t op, std::chrono::nanoseconds took,
                  std::chrono::milliseconds bound);

}  // namespace torture
