// put (copy in + seal) and writer (fill in place + seal) into segment space
// this process has written before, by size, each against the same work on
// warm private memory in the same iteration: put against memcpy, writer
// against memset. A batch of puts is timed, then erased untimed; the
// allocator hands the same (warm) space out again.
#include <cstring>
#include <memory>
#include <vector>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

struct Batch {
  std::uint64_t size;
  std::uint64_t stride;  // the store places objects on 64-byte boundaries; so do the baselines
  std::uint64_t count;
  explicit Batch(std::uint64_t s)
      : size(s), stride((s + 63) / 64 * 64), count(std::min(batch_ops(s, 256 * KiB), config().max_size / stride)) {}
};

OwnedStore& warm_store(const std::string& key, const Batch& b) {
  return cached<OwnedStore>(key, [&] {
    auto s = std::make_unique<OwnedStore>(
        "put", store_options(b.count * b.stride + MiB,
                             static_cast<std::uint32_t>(std::max<std::uint64_t>(1024, 2 * b.count))));
    // Write the space once, so the timed puts land on pages already mapped.
    std::vector<RemoteRef> refs;
    for (std::uint64_t i = 0; i < b.count; ++i) {
      refs.push_back(s->store.put_bytes({}, std::span(source_buffer() + i * b.stride, b.size)));  // NOLINT
    }
    for (const auto& r : refs) s->store.erase(r);
    return s;
  });
}

void put_warm(benchmark::State& state, std::uint64_t size) {
  Batch b(size);
  Store& store = warm_store("put/" + size_label(size), b).store;
  std::byte* src = source_buffer();
  std::byte* dst = dest_buffer();
  std::vector<RemoteRef> refs(b.count);
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < b.count; ++i) {
      refs[i] = store.put_bytes({}, std::span(src + i * b.stride, size));  // NOLINT
    }
    std::uint64_t t1 = now_ns();
    for (std::uint64_t i = 0; i < b.count; ++i) std::memcpy(dst + i * b.stride, src + i * b.stride, size);  // NOLINT
    benchmark::ClobberMemory();
    std::uint64_t t2 = now_ns();
    for (const auto& r : refs) store.erase(r);
    state.SetIterationTime(seconds(t1 - t0));
    t.subject_ns += t1 - t0;
    t.baseline_ns += t2 - t1;
    t.ops += b.count;
    t.baseline_ops += b.count;
  }
  finish(state, t, size, Ratio::Bandwidth);
}

void writer_warm(benchmark::State& state, std::uint64_t size) {
  Batch b(size);
  Store& store = warm_store("writer/" + size_label(size), b).store;
  std::byte* dst = dest_buffer();
  std::vector<RemoteRef> refs(b.count);
  Tally t;
  int fill = 0;
  for (auto _ : state) {
    fill = (fill + 1) & 0xff;
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < b.count; ++i) {
      Writer w = store.create_writer(size);
      std::memset(w.bytes().data(), fill, size);
      refs[i] = std::move(w).seal();
    }
    std::uint64_t t1 = now_ns();
    for (std::uint64_t i = 0; i < b.count; ++i) std::memset(dst + i * b.stride, fill, size);  // NOLINT
    benchmark::ClobberMemory();
    std::uint64_t t2 = now_ns();
    for (const auto& r : refs) store.erase(r);
    state.SetIterationTime(seconds(t1 - t0));
    t.subject_ns += t1 - t0;
    t.baseline_ns += t2 - t1;
    t.ops += b.count;
    t.baseline_ops += b.count;
  }
  finish(state, t, size, Ratio::Bandwidth);
}

void register_put() {
  for (std::uint64_t s : size_ladder()) {
    add("put/" + size_label(s), [s](benchmark::State& st) { put_warm(st, s); });
  }
  for (std::uint64_t s : size_ladder()) {
    add("writer/" + size_label(s), [s](benchmark::State& st) { writer_warm(st, s); });
  }
}
const Registrar registrar(10, register_put);

}  // namespace
}  // namespace sealstore::bench
