// fetch + release of a sealed object: by the object's size (64 B to 1 GiB,
// one segment holds one object of each size), and by how many objects the
// store holds (1, 10^4, 10^6), fetching one object over and over ("hot") and
// objects in a random order ("random", against a random lookup in a
// std::unordered_map of as many entries, measured in the same iterations).
// fetch_many() of the random order, a thousand refs a call. Then two
// processes fetching the same objects at once, against one process
// alone, to show readers do not slow each other down. With --huge_dir, the
// random fetches among 10^6 again with the segment on that huge-page tmpfs.
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

constexpr std::uint64_t kFetchBatch = 1000;

// ---- by size

struct SizedObjects {
  OwnedStore owned;
  std::vector<std::pair<std::uint64_t, RemoteRef>> refs;
  static std::uint64_t capacity() {
    std::uint64_t total = MiB;
    for (std::uint64_t s : size_ladder()) total += (s + 63) / 64 * 64;
    return total;
  }
  SizedObjects() : owned("fetch", store_options(capacity())) {
    // Sealed without writing: fetch never touches the bytes, and the pages
    // stay untouched (posix_fallocate reserved them).
    for (std::uint64_t s : size_ladder()) refs.emplace_back(s, std::move(owned.store.create_writer(s)).seal());
  }
  RemoteRef ref_of(std::uint64_t size) const {
    for (const auto& [s, r] : refs) {
      if (s == size) return r;
    }
    throw std::logic_error("no object of size " + std::to_string(size));
  }
};

void fetch_by_size(benchmark::State& state, std::uint64_t size) {
  auto& f = cached<SizedObjects>("fetch/size", [] { return std::make_unique<SizedObjects>(); });
  RemoteRef ref = f.ref_of(size);
  Store& store = f.owned.store;
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < kFetchBatch; ++i) {
      View v = store.fetch(ref);
      benchmark::DoNotOptimize(v.bytes().data());
    }
    std::uint64_t dt = now_ns() - t0;
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += kFetchBatch;
  }
  finish(state, t, 0, Ratio::None);
  state.counters["size"] = static_cast<double>(size);
}

// ---- by object count

struct ManyObjects {
  OwnedStore owned;
  std::vector<RemoteRef> refs;
  std::vector<std::uint32_t> order;                      // a random permutation of refs
  std::unordered_map<std::uint64_t, std::uint64_t> map;  // ref id -> index
  ManyObjects(std::uint64_t n, const std::string& directory)
      : owned("objects",
              in_directory(store_options(n * 64 + MiB, static_cast<std::uint32_t>(std::max<std::uint64_t>(n, 1024))),
                           directory)) {
    refs.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      Writer w = owned.store.create_writer(64);
      std::memset(w.bytes().data(), static_cast<int>(i & 0xffU), 64);
      refs.push_back(std::move(w).seal());
      map.emplace(refs.back().id(), i);
    }
    order.resize(n);
    std::iota(order.begin(), order.end(), 0U);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(42));  // NOLINT: a fixed seed, the same every run
  }
  static CreateOptions in_directory(CreateOptions o, const std::string& directory) {
    if (!directory.empty()) {
      o.directory = directory;
      o.huge_pages = true;
    }
    return o;
  }
};

// The objects on the segment mount, or (huge: true) on the huge-page tmpfs
// that --huge_dir names.
ManyObjects& many(std::uint64_t n, bool huge = false) {
  std::string dir = huge ? config().huge_dir : std::string();
  return cached<ManyObjects>("objects/" + std::to_string(n) + (huge ? "/huge_tmpfs" : ""),
                             [n, dir] { return std::make_unique<ManyObjects>(n, dir); });
}

void fetch_hot(benchmark::State& state, std::uint64_t n) {
  ManyObjects& f = many(n);
  RemoteRef ref = f.refs[f.refs.size() / 2];
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < kFetchBatch; ++i) {
      View v = f.owned.store.fetch(ref);
      benchmark::DoNotOptimize(v.bytes().data());
    }
    std::uint64_t dt = now_ns() - t0;
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += kFetchBatch;
  }
  finish(state, t, 0, Ratio::None);
  state.counters["objects"] = static_cast<double>(n);
}

// The baseline of the random-order benchmarks: kFetchBatch lookups of the
// same keys, in the same order, in a std::unordered_map. Returns the time.
std::uint64_t map_lookups(const ManyObjects& f, std::size_t& pos) {
  std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < kFetchBatch; ++i) {
    auto it = f.map.find(f.refs[f.order[pos]].id());
    if (it == f.map.end()) throw std::logic_error("a ref missing from the map");
    benchmark::DoNotOptimize(it->second);
    pos = pos + 1 == f.order.size() ? 0 : pos + 1;
  }
  return now_ns() - t0;
}

void fetch_random(benchmark::State& state, std::uint64_t n, bool huge = false) {
  ManyObjects& f = many(n, huge);
  std::size_t pos = 0;
  std::size_t base_pos = 0;
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < kFetchBatch; ++i) {
      View v = f.owned.store.fetch(f.refs[f.order[pos]]);
      benchmark::DoNotOptimize(v.bytes().data());
      pos = pos + 1 == f.order.size() ? 0 : pos + 1;
    }
    std::uint64_t t1 = now_ns();
    state.SetIterationTime(seconds(t1 - t0));
    t.subject_ns += t1 - t0;
    t.ops += kFetchBatch;
    t.baseline_ns += map_lookups(f, base_pos);
    t.baseline_ops += kFetchBatch;
  }
  finish(state, t, 0, Ratio::Latency);
  state.counters["objects"] = static_cast<double>(n);
}

// fetch_many of the same random order, kFetchBatch refs a call, the views
// released at once, against the same map lookups.
void fetch_many_random(benchmark::State& state, std::uint64_t n, bool huge = false) {
  ManyObjects& f = many(n, huge);
  std::size_t pos = 0;
  std::size_t base_pos = 0;
  std::vector<RemoteRef> batch(kFetchBatch);
  Tally t;
  for (auto _ : state) {
    for (auto& r : batch) {
      r = f.refs[f.order[pos]];
      pos = pos + 1 == f.order.size() ? 0 : pos + 1;
    }
    std::uint64_t t0 = now_ns();
    {
      std::vector<View> views = f.owned.store.fetch_many(batch);
      benchmark::DoNotOptimize(views.data());
    }
    std::uint64_t t1 = now_ns();
    state.SetIterationTime(seconds(t1 - t0));
    t.subject_ns += t1 - t0;
    t.ops += kFetchBatch;
    t.baseline_ns += map_lookups(f, base_pos);
    t.baseline_ops += kFetchBatch;
  }
  finish(state, t, 0, Ratio::Latency);
  state.counters["objects"] = static_cast<double>(n);
}

// ---- two readers

constexpr std::size_t kReaderObjects = 16;

std::uint64_t fetch_loop(Store& store, const std::vector<RemoteRef>& refs, std::uint64_t n) {
  std::uint64_t t0 = now_ns();
  for (std::uint64_t i = 0; i < n; ++i) {
    View v = store.fetch(refs[i % refs.size()]);
    benchmark::DoNotOptimize(v.bytes().data());
  }
  return now_ns() - t0;
}

// Attaches to segment ARGS[0] in directory ARGS[1]; reads refs, one a line,
// up to "end"; then on each "go N" fetches them round-robin N times and
// answers with the nanoseconds it took.
int reader_child(const ParentLink& link, const std::vector<std::string>& args) {
  AttachOptions o;
  o.directory = args.size() > 1 ? args[1] : "";
  Store store = Store::attach(args.at(0), o);
  std::vector<RemoteRef> refs;
  while (auto line = link.receive()) {
    auto w = words(*line);
    if (w.at(0) == "ref") {
      refs.push_back(RemoteRef::parse(line->substr(4)));
    } else if (w.at(0) == "go") {
      std::uint64_t dt = fetch_loop(store, refs, std::stoull(w.at(1)));
      link.send(std::to_string(dt));
    }
  }
  return 0;
}
const ChildRole reader_role("reader", reader_child);

struct Readers {
  OwnedStore shared{"readers", store_options(16 * MiB)};
  OwnedStore control{"readers-control", store_options(16 * MiB)};
  std::vector<RemoteRef> shared_refs = make_refs(shared.store);
  std::vector<RemoteRef> control_refs = make_refs(control.store);
  ChildProcess same{"reader", {shared.name.name(), shared.name.directory()}};
  ChildProcess apart{"reader", {control.name.name(), control.name.directory()}};
  Readers() {
    for (const auto& r : shared_refs) same.send("ref " + r.to_string());
    for (const auto& r : control_refs) apart.send("ref " + r.to_string());
  }
  static std::vector<RemoteRef> make_refs(Store& s) {
    std::vector<RemoteRef> out;
    for (std::size_t i = 0; i < kReaderObjects; ++i) out.push_back(s.put(std::vector<std::uint64_t>(512, i)));
    return out;
  }
};

// This process and `child` fetch kN times each, at once: the slower one's time.
std::uint64_t together(Readers& f, const ChildProcess& child, std::uint64_t n) {
  child.send("go " + std::to_string(n));
  std::uint64_t mine = fetch_loop(f.shared.store, f.shared_refs, n);
  std::uint64_t theirs = std::stoull(child.receive());
  return std::max(mine, theirs);
}

// Per fetch of one process: both processes on the same objects (subject);
// this process alone (baseline); and a control, the other process fetching
// from a segment of its own, which shares nothing: what the machine does to
// two busy cores, whatever the store does.
void readers_two_processes(benchmark::State& state) {
  auto& f = cached<Readers>("readers", [] { return std::make_unique<Readers>(); });
  constexpr std::uint64_t kN = 100'000;
  Tally t;
  std::uint64_t control_ns = 0;
  for (auto _ : state) {
    std::uint64_t same = together(f, f.same, kN);
    std::uint64_t alone = fetch_loop(f.shared.store, f.shared_refs, kN);
    std::uint64_t apart = together(f, f.apart, kN);
    state.SetIterationTime(seconds(same));
    t.subject_ns += same;
    t.baseline_ns += alone;
    control_ns += apart;
    t.ops += kN;
    t.baseline_ops += kN;
  }
  finish(state, t, 0, Ratio::Latency);
  if (t.baseline_ns > 0) {
    state.counters["control_ns_per_op"] = static_cast<double>(control_ns) / static_cast<double>(t.ops);
    state.counters["control_time_ratio"] = static_cast<double>(control_ns) / static_cast<double>(t.baseline_ns);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(2 * t.ops));  // fetches by both processes
}

void register_fetch() {
  for (std::uint64_t s : size_ladder()) {
    add("fetch/size/" + size_label(s), [s](benchmark::State& st) {
      fetch_by_size(st, s);
    })->Unit(benchmark::kNanosecond);
  }
  for (std::uint64_t n : capped_counts({1, 10'000, 1'000'000})) {
    add("fetch/objects/" + std::to_string(n) + "/hot", [n](benchmark::State& st) {
      fetch_hot(st, n);
    })->Unit(benchmark::kNanosecond);
    add("fetch/objects/" + std::to_string(n) + "/random", [n](benchmark::State& st) {
      fetch_random(st, n);
    })->Unit(benchmark::kNanosecond);
    add("fetch_many/objects/" + std::to_string(n) + "/random", [n](benchmark::State& st) {
      fetch_many_random(st, n);
    })->Unit(benchmark::kNanosecond);
  }
  // The same random fetches with the segment on a huge-page tmpfs: its 2 MiB
  // pages spare most of the TLB misses on the table.
  if (!config().huge_dir.empty()) {
    for (std::uint64_t n : capped_counts({1'000'000})) {
      add("fetch/objects/" + std::to_string(n) + "/random/huge_tmpfs", [n](benchmark::State& st) {
        fetch_random(st, n, true);
      })->Unit(benchmark::kNanosecond);
      add("fetch_many/objects/" + std::to_string(n) + "/random/huge_tmpfs", [n](benchmark::State& st) {
        fetch_many_random(st, n, true);
      })->Unit(benchmark::kNanosecond);
    }
  }
  add("readers/two_processes", readers_two_processes)->Unit(benchmark::kMillisecond);
}
const Registrar registrar(20, register_fetch);

}  // namespace
}  // namespace sealstore::bench
