// Small objects: put + fetch + erase of a 64-byte object, the whole life of a
// tiny value, as operations per second: in one process, and in two processes
// at once on the same store (they contend for the segment lock).
#include <array>
#include <memory>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

constexpr std::uint64_t kBatch = 1000;

std::uint64_t small_ops(Store& store, std::uint64_t n) {
  std::array<std::byte, 64> value{};
  std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) {
    value[0] = static_cast<std::byte>(i);
    RemoteRef r = store.put_bytes({}, value);
    {
      View v = store.fetch(r);
      benchmark::DoNotOptimize(v.bytes().data());
    }
    store.erase(r);
  }
  return now_ns() - t0;
}

// Attaches to segment ARGS[0] in ARGS[1]; on each "go N" runs N small
// operations and answers with the nanoseconds they took.
int small_ops_child(const ParentLink& link, const std::vector<std::string>& args) {
  AttachOptions o;
  o.directory = args.size() > 1 ? args[1] : "";
  Store store = Store::attach(args.at(0), o);
  while (auto line = link.receive()) {
    auto w = words(*line);
    if (w.at(0) == "go") link.send(std::to_string(small_ops(store, std::stoull(w.at(1)))));
  }
  return 0;
}
const ChildRole small_ops_role("small_ops", small_ops_child);

void one_process(benchmark::State& state) {
  auto& f = cached<OwnedStore>("small", [] { return std::make_unique<OwnedStore>("small", store_options(16 * MiB)); });
  small_ops(f.store, kBatch);  // warm the space and the table
  Tally t;
  for (auto _ : state) {
    std::uint64_t dt = small_ops(f.store, kBatch);
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += kBatch;
  }
  finish(state, t, 0, Ratio::None);
}

struct TwoProcesses {
  OwnedStore owned{"small2", store_options(16 * MiB)};
  ChildProcess child{"small_ops", {owned.name.name(), owned.name.directory()}};
};

void two_processes(benchmark::State& state) {
  auto& f = cached<TwoProcesses>("small2", [] { return std::make_unique<TwoProcesses>(); });
  constexpr std::uint64_t kN = 20 * kBatch;
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    f.child.send("go " + std::to_string(kN));
    std::uint64_t mine = small_ops(f.owned.store, kN);
    std::uint64_t theirs = std::stoull(f.child.receive());
    std::uint64_t wall = now_ns() - t0;
    benchmark::DoNotOptimize(mine + theirs);
    state.SetIterationTime(seconds(wall));
    t.subject_ns += wall;
    t.ops += 2 * kN;  // both processes' operations, over the wall time
  }
  finish(state, t, 0, Ratio::None);
}

void register_small() {
  add("small_ops/one_process", one_process);
  add("small_ops/two_processes", two_processes)->Unit(benchmark::kMillisecond);
}
const Registrar registrar(40, register_small);

}  // namespace
}  // namespace sealstore::bench
