// materialize (fetch + one private copy in fresh memory) against malloc +
// memcpy of the same size, and materialize_into (into the caller's warm
// buffer) against memcpy into that buffer, each pair in the same iteration.
// Fresh private memory costs the same page faults for any copy, so the
// baseline allocates and frees exactly as materialize does. The pair runs in
// alternating order: on this VM (free page reporting) whichever allocates
// first after a pause may touch memory the host took back, at several times
// the cost of an ordinary fault.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

struct OneObject {
  OwnedStore owned;
  RemoteRef ref;
  explicit OneObject(std::uint64_t size)
      : owned("materialize", store_options(size + MiB)),
        ref(owned.store.put_bytes({}, std::span(source_buffer(), size))) {}
};

OneObject& object_of(std::uint64_t size) {
  return cached<OneObject>("materialize/" + size_label(size), [size] { return std::make_unique<OneObject>(size); });
}

// Flips on every call: which of a pair goes first.
bool subject_first() {
  static bool flip = false;
  flip = !flip;
  return flip;
}

void materialize(benchmark::State& state, std::uint64_t size) {
  OneObject& f = object_of(size);
  const std::byte* src = source_buffer();
  std::uint64_t k = batch_ops(size, 256 * KiB, 256);
  auto subject = [&] {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < k; ++i) {
      auto copy = f.owned.store.materialize<std::vector<std::byte>>(f.ref);
      benchmark::DoNotOptimize(copy.data());
    }
    return now_ns() - t0;
  };
  auto baseline = [&] {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < k; ++i) {
      void* p = std::malloc(size);  // NOLINT: the baseline is literally malloc + memcpy
      std::memcpy(p, src, size);
      benchmark::DoNotOptimize(p);
      std::free(p);  // NOLINT
    }
    return now_ns() - t0;
  };
  Tally t;
  for (auto _ : state) {
    std::uint64_t subject_ns = 0;
    std::uint64_t baseline_ns = 0;
    if (subject_first()) {
      subject_ns = subject();
      baseline_ns = baseline();
    } else {
      baseline_ns = baseline();
      subject_ns = subject();
    }
    state.SetIterationTime(seconds(subject_ns));
    t.subject_ns += subject_ns;
    t.baseline_ns += baseline_ns;
    t.ops += k;
    t.baseline_ops += k;
  }
  finish(state, t, size, Ratio::Bandwidth);
}

void materialize_into(benchmark::State& state, std::uint64_t size) {
  OneObject& f = object_of(size);
  const std::byte* src = source_buffer();
  std::byte* dst = dest_buffer();
  std::uint64_t k = batch_ops(size, 256 * KiB, 256);
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < k; ++i) f.owned.store.materialize_into(f.ref, std::span(dst, size));
    benchmark::ClobberMemory();
    std::uint64_t t1 = now_ns();
    for (std::uint64_t i = 0; i < k; ++i) std::memcpy(dst, src, size);
    benchmark::ClobberMemory();
    std::uint64_t t2 = now_ns();
    state.SetIterationTime(seconds(t1 - t0));
    t.subject_ns += t1 - t0;
    t.baseline_ns += t2 - t1;
    t.ops += k;
    t.baseline_ops += k;
  }
  finish(state, t, size, Ratio::Bandwidth);
}

void register_materialize() {
  for (std::uint64_t s : size_ladder()) {
    add("materialize/" + size_label(s), [s](benchmark::State& st) { materialize(st, s); });
  }
  for (std::uint64_t s : size_ladder()) {
    add("materialize_into/" + size_label(s), [s](benchmark::State& st) { materialize_into(st, s); });
  }
}
const Registrar registrar(30, register_materialize);

}  // namespace
}  // namespace sealstore::bench
