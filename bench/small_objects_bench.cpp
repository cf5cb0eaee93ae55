// Small objects: put + fetch + erase of a 64-byte object, the whole life of a
// tiny value, as operations per second: in one process; and how it scales
// with writers working at once on the same store: two processes, four
// processes (on this machine's two cores), two threads of one process. Each
// scaling benchmark measures its own baseline in the same iteration (this
// process alone doing the same number of operations) and reports
// bw_ratio = the aggregate rate over the single one: 2 would be perfect
// scaling on two cores.
#include <array>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

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
  small_ops(store, kBatch);  // warm its cache and its pages
  link.send("ready");
  while (auto line = link.receive()) {
    auto w = words(*line);
    if (w.at(0) == "go") link.send(std::to_string(small_ops(store, std::stoull(w.at(1)))));
  }
  return 0;
}
const ChildRole small_ops_role("small_ops", small_ops_child);

CreateOptions small_store() { return store_options(64 * MiB, 1 << 16); }

void one_process(benchmark::State& state) {
  auto& f = cached<OwnedStore>("small", [] { return std::make_unique<OwnedStore>("small", small_store()); });
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

// This process and `others` more processes, all attached (and warm) before
// any clock starts.
struct Processes {
  OwnedStore owned{"small-n", small_store()};
  std::vector<std::unique_ptr<ChildProcess>> children;
  explicit Processes(std::size_t others) {
    for (std::size_t k = 0; k < others; ++k) {
      children.push_back(std::make_unique<ChildProcess>(
          "small_ops", std::vector<std::string>{owned.name.name(), owned.name.directory()}));
      if (children.back()->receive() != "ready") throw std::runtime_error("a small_ops child did not start");
    }
    small_ops(owned.store, kBatch);
  }
};

void processes(benchmark::State& state, std::size_t n) {
  auto& f = cached<Processes>("small-" + std::to_string(n), [n] { return std::make_unique<Processes>(n - 1); });
  // Long enough that waking the others through their pipes (tens of
  // microseconds) is a small part of the batch.
  const std::uint64_t k = 100 * kBatch;
  Tally t;
  for (auto _ : state) {
    std::uint64_t alone = small_ops(f.owned.store, k);
    std::uint64_t t0 = now_ns();
    for (auto& c : f.children) c->send("go " + std::to_string(k));
    std::uint64_t mine = small_ops(f.owned.store, k);
    for (auto& c : f.children) benchmark::DoNotOptimize(std::stoull(c->receive()));
    std::uint64_t wall = now_ns() - t0;
    benchmark::DoNotOptimize(mine);
    state.SetIterationTime(seconds(wall));
    t.subject_ns += wall;
    t.ops += n * k;  // every process's operations, over the wall time
    t.baseline_ns += alone;
    t.baseline_ops += k;
  }
  finish(state, t, 0, Ratio::Bandwidth);
}

// A second thread of this process, started once and handed each batch
// through a spinning flag (starting a thread, or waking a sleeping one,
// would take a visible slice of a batch).
struct Helper {
  Store& store;
  std::atomic<std::uint64_t> go{0};    // ops to run, set by the caller
  std::atomic<std::uint64_t> done{0};  // set by the helper when they ran
  std::atomic<bool> stop{false};
  std::thread thread;
  explicit Helper(Store& s) : store(s), thread([this] { loop(); }) {}
  ~Helper() {
    stop.store(true);
    thread.join();
  }
  Helper(const Helper&) = delete;
  Helper& operator=(const Helper&) = delete;
  void loop() {
    small_ops(store, kBatch);  // warm its cache
    done.store(1);
    while (!stop.load()) {
      std::uint64_t n = go.exchange(0);
      if (n == 0) {
        cpu_relax();
        continue;
      }
      small_ops(store, n);
      done.store(1);
    }
  }
  void run(std::uint64_t n) { go.store(n); }
  void wait() {
    while (done.exchange(0) == 0) cpu_relax();
  }
};

struct Threads {
  OwnedStore owned{"small-t", small_store()};
  std::unique_ptr<Helper> helper = std::make_unique<Helper>(owned.store);
  Threads() {
    helper->wait();
    small_ops(owned.store, kBatch);
  }
};

void two_threads(benchmark::State& state) {
  auto& f = cached<Threads>("small-t", [] { return std::make_unique<Threads>(); });
  const std::uint64_t k = 20 * kBatch;
  Tally t;
  for (auto _ : state) {
    std::uint64_t alone = small_ops(f.owned.store, k);
    std::uint64_t t0 = now_ns();
    f.helper->run(k);
    small_ops(f.owned.store, k);
    f.helper->wait();
    std::uint64_t wall = now_ns() - t0;
    state.SetIterationTime(seconds(wall));
    t.subject_ns += wall;
    t.ops += 2 * k;
    t.baseline_ns += alone;
    t.baseline_ops += k;
  }
  finish(state, t, 0, Ratio::Bandwidth);
}

void register_small() {
  add("small_ops/one_process", one_process);
  add("small_ops/two_processes", [](benchmark::State& s) { processes(s, 2); })->Unit(benchmark::kMillisecond);
  add("small_ops/four_processes", [](benchmark::State& s) { processes(s, 4); })->Unit(benchmark::kMillisecond);
  add("small_ops/two_threads", two_threads)->Unit(benchmark::kMillisecond);
}
const Registrar registrar(40, register_small);

}  // namespace
}  // namespace sealstore::bench
