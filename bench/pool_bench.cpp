// The worker pool: the round trip of an empty task (run_at, then fetch of
// its result) against the raw cross-process futex round trip
// (baseline/futex_round_trip, same run), and a task whose argument is a
// 64 MiB ref (the worker fetches it: the data is then in its hands, as in
// the Julia-style transfer) against the same payload sent to a child over a
// unix socket into a fresh buffer (transfer/64M's socket side, same run).
// The worker runs on CPU 1, this process on CPU 0, as the baselines do.
#include <sched.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "sealstore/pool.hpp"
#include "support/bench_support.hpp"

namespace {

void bench_empty(sealstore::Context& /*cx*/) {}
SEALSTORE_REGISTER("bench_empty", bench_empty);

std::uint64_t bench_take_ref(sealstore::Context& cx, sealstore::RemoteRef ref) { return cx.store().fetch(ref).size(); }
SEALSTORE_REGISTER("bench_take_ref", bench_take_ref);

}  // namespace

namespace sealstore::bench {
namespace {

struct PoolFixture {
  explicit PoolFixture(std::uint64_t capacity) : pool(make(capacity)) {
    worker = pool.add(1).at(0);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    ::sched_setaffinity(pool.pid(worker), sizeof set, &set);  // best effort, as ChildProcess::pin_to_cpu
  }
  static Pool make(std::uint64_t capacity) {
    PoolOptions o;
    o.store = store_options(capacity);
    o.store.directory = config().directory;
    return Pool::create("bench-pool-" + std::to_string(::getpid()), o);
  }
  Pool pool;
  WorkerId worker = 0;
};

PoolFixture& fixture() {
  std::uint64_t capacity = std::min<std::uint64_t>(config().max_size, 64 * MiB) + 16 * MiB;
  return cached<PoolFixture>("pool", [capacity] { return std::make_unique<PoolFixture>(capacity); });
}

void empty_task(benchmark::State& state) {
  PoolFixture& f = fixture();
  CpuPin pin(0);
  Store& store = f.pool.store();
  Tally t;
  Samples samples;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    RemoteRef r = f.pool.run_at(f.worker, "bench_empty");
    { View v = store.fetch(r); }
    std::uint64_t dt = now_ns() - t0;
    store.erase(r);
    state.SetIterationTime(seconds(dt));
    samples.subject.push_back(dt);
    t.subject_ns += dt;
    t.ops += 1;
  }
  finish(state, t, 0, Ratio::None);
  finish_samples(state, samples);
}

void ref_task(benchmark::State& state, std::uint64_t size) {
  PoolFixture& f = fixture();
  CpuPin pin(0);
  Store& store = f.pool.store();
  RemoteRef arg = store.put_bytes({}, std::span<const std::byte>(source_buffer(), size));
  Tally t;
  Samples samples;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    RemoteRef r = f.pool.run_at(f.worker, "bench_take_ref", arg);
    std::uint64_t got = store.fetch(r).as<std::uint64_t>();
    std::uint64_t dt = now_ns() - t0;
    store.erase(r);
    if (got != size) state.SkipWithError("the worker saw another size");
    state.SetIterationTime(seconds(dt));
    samples.subject.push_back(dt);
    t.subject_ns += dt;
    t.ops += 1;
  }
  store.erase(arg);
  finish(state, t, size, Ratio::None);
  finish_samples(state, samples);
}

void register_pool() {
  add("pool/empty_task", empty_task)->Unit(benchmark::kMicrosecond)->Iterations(fixed_iterations(3000));
  std::uint64_t size = std::min<std::uint64_t>(config().max_size, 64 * MiB);
  add("pool/ref_task/" + size_label(size), [size](benchmark::State& st) { ref_task(st, size); })
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(fixed_iterations(3000));
}
const Registrar registrar(90, register_pool);

}  // namespace
}  // namespace sealstore::bench
