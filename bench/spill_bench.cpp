// Spilling and seal events.
//
// spill/write/64M: Store::spill of a sealed 64 MiB object (its bytes written
// to its spill file, its extent freed) against writing the same bytes to a
// new file in the same directory (open, write, close; neither syncs).
// spill/restore/64M: fetch of a spilled 64 MiB object (read back into the
// segment, then pinned) against reading the same file into warm private
// memory. Both alternate subject and baseline in each iteration.
//
// spill/workload_4x: put, fetch at random (and check) and erase objects of
// 1 MiB in a segment a quarter of their total size, against the same
// operations in a segment that holds them all; every object is checked
// intact, and the spills and restores it took are counters.
//
// seal_to_event/*: as seal_to_wake, with the waiting child in
// Subscription::next (asleep, or in a bounded spin) instead of fetch.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

// A fresh directory on the disk that spill files go to (TMPDIR, else
// /var/tmp), removed with everything in it.
struct SpillDir {
  std::string path;
  SpillDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp") + "/sealstore-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("cannot make " + pattern);
    path = pattern;
  }
  ~SpillDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  SpillDir(const SpillDir&) = delete;
  SpillDir& operator=(const SpillDir&) = delete;
};

std::uint64_t write_file(const std::string& path, const std::byte* data, std::uint64_t n) {
  std::uint64_t t0 = now_ns();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  for (std::uint64_t done = 0; done < n;) {
    ssize_t w = ::write(fd, data + done, n - done);  // NOLINT
    if (w <= 0) throw std::runtime_error("cannot write " + path);
    done += static_cast<std::uint64_t>(w);
  }
  ::close(fd);
  return now_ns() - t0;
}

std::uint64_t read_file(const std::string& path, std::byte* data, std::uint64_t n) {
  std::uint64_t t0 = now_ns();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  for (std::uint64_t done = 0; done < n;) {
    ssize_t r = ::pread(fd, data + done, n - done, static_cast<off_t>(done));  // NOLINT
    if (r <= 0) throw std::runtime_error("cannot read " + path);
    done += static_cast<std::uint64_t>(r);
  }
  ::close(fd);
  return now_ns() - t0;
}

struct SpillFixture {
  SpillDir dir;
  OwnedStore owned;
  explicit SpillFixture(std::uint64_t size) : owned("spill", options(size, dir.path)) {}
  static CreateOptions options(std::uint64_t size, const std::string& dir) {
    CreateOptions o = store_options(2 * size + 4 * MiB);
    o.spill_directory = dir;
    return o;
  }
};

void spill_bandwidth(benchmark::State& state, std::uint64_t size, bool restore) {
  auto& f =
      cached<SpillFixture>("spill/" + std::to_string(size), [size] { return std::make_unique<SpillFixture>(size); });
  Store& store = f.owned.store;
  const std::byte* src = source_buffer();
  std::byte* dst = dest_buffer();
  std::string plain = f.dir.path + "/plain";
  Tally t;
  bool baseline_first = false;  // alternated: neither always meets the other's dirty pages
  for (auto _ : state) {
    RemoteRef r = store.put_bytes(ValueType{}, {src, size});
    std::uint64_t subject = 0;
    std::uint64_t baseline = 0;
    baseline_first = !baseline_first;
    if (!restore) {
      if (baseline_first) baseline = write_file(plain, src, size);
      std::uint64_t t0 = now_ns();
      if (!store.spill(r)) throw std::runtime_error("the object did not spill");
      subject = now_ns() - t0;
      if (!baseline_first) baseline = write_file(plain, src, size);
    } else {
      if (!store.spill(r)) throw std::runtime_error("the object did not spill");
      write_file(plain, src, size);
      if (baseline_first) baseline = read_file(plain, dst, size);
      std::uint64_t t0 = now_ns();
      {
        View v = store.fetch(r);
        subject = now_ns() - t0;
        if (v.size() != size) throw std::runtime_error("the restored object has another size");
      }
      if (!baseline_first) baseline = read_file(plain, dst, size);
    }
    store.erase(r);
    ::unlink(plain.c_str());
    state.SetIterationTime(seconds(subject));
    t.subject_ns += subject;
    t.baseline_ns += baseline;
    t.ops += 1;
    t.baseline_ops += 1;
  }
  finish(state, t, size, Ratio::Bandwidth);
  SegmentInfo i = store.info();
  state.counters["spills"] = static_cast<double>(i.spills);
  state.counters["restores"] = static_cast<double>(i.restores);
}

// The workload: `count` objects of `size`, in a segment of `capacity`.
struct WorkloadResult {
  std::uint64_t ns = 0;
  std::uint64_t spills = 0;
  std::uint64_t restores = 0;
  std::uint64_t intact = 0;
};

WorkloadResult run_workload(const std::string& dir, std::uint64_t capacity, std::uint64_t size, std::uint64_t count,
                            std::uint64_t seed) {
  CreateOptions o = store_options(capacity, 4096);
  o.spill_directory = dir;
  OwnedStore s("workload", o);
  std::mt19937_64 rng(seed);
  std::vector<RemoteRef> refs;
  std::vector<std::byte> buf(size);
  WorkloadResult out;
  std::uint64_t t0 = now_ns();
  for (std::uint64_t k = 0; k < count; ++k) {
    std::memset(buf.data(), static_cast<int>(k & 0xffU), 64);
    std::memcpy(buf.data() + 64, &k, sizeof k);
    refs.push_back(s.store.put_bytes(ValueType{}, buf));
  }
  // Fetch at random, two per object, and check each.
  for (std::uint64_t n = 0; n < 2 * count; ++n) {
    std::uint64_t k = rng() % count;
    View v = s.store.fetch(refs[k]);
    std::uint64_t got = 0;
    std::memcpy(&got, v.bytes().data() + 64, sizeof got);
    if (got != k || v.bytes()[0] != static_cast<std::byte>(k & 0xffU)) {
      throw std::runtime_error("an object came back damaged");
    }
  }
  // Then every object once more, and erase it.
  for (std::uint64_t k = 0; k < count; ++k) {
    {
      View v = s.store.fetch(refs[k]);
      std::uint64_t got = 0;
      std::memcpy(&got, v.bytes().data() + 64, sizeof got);
      out.intact += got == k && v.size() == size ? 1U : 0U;
    }
    s.store.erase(refs[k]);
  }
  out.ns = now_ns() - t0;
  SegmentInfo i = s.store.info();
  out.spills = i.spills;
  out.restores = i.restores;
  return out;
}

void spill_workload(benchmark::State& state) {
  SpillDir dir;
  std::uint64_t size = std::min<std::uint64_t>(MiB, config().max_size);
  std::uint64_t count = config().smoke ? 16 : 256;
  std::uint64_t total = size * count;
  Tally t;
  WorkloadResult last;
  std::uint64_t seed = 1;
  for (auto _ : state) {
    last = run_workload(dir.path, total / 4, size, count, seed);
    WorkloadResult roomy = run_workload(dir.path, total + total / 4, size, count, seed);
    if (last.intact != count || roomy.intact != count) throw std::runtime_error("objects were lost");
    if (roomy.spills != 0) throw std::runtime_error("the roomy segment spilled");
    state.SetIterationTime(seconds(last.ns));
    t.subject_ns += last.ns;
    t.baseline_ns += roomy.ns;
    t.ops += 1;
    t.baseline_ops += 1;
    ++seed;
  }
  finish(state, t, 0, Ratio::Latency);
  state.counters["objects"] = static_cast<double>(count);
  state.counters["intact"] = static_cast<double>(last.intact);
  state.counters["spills"] = static_cast<double>(last.spills);
  state.counters["restores"] = static_cast<double>(last.restores);
  state.counters["workload_mib"] = static_cast<double>(total) / static_cast<double>(MiB);
  state.counters["segment_mib"] = static_cast<double>(total) / static_cast<double>(4 * MiB);
}

// "event": waits in Subscription::next, asleep ("sleep") or in a bounded
// spin ("spin"), and answers each event with the CLOCK_MONOTONIC time it
// returned.
int event_waiter(const ParentLink& link, const std::vector<std::string>& args) {
  AttachOptions o;
  o.directory = args.size() > 1 ? args[1] : "";
  Store store = Store::attach(args.at(0), o);
  Subscription sub = store.subscribe();
  link.send("subscribed");
  while (auto line = link.receive()) {
    bool spin = *line == "spin";
    link.send("armed");
    auto ev = sub.next(std::chrono::seconds(60), spin ? std::chrono::milliseconds(50) : std::chrono::nanoseconds(0));
    std::uint64_t t = now_ns();
    if (!ev) throw std::runtime_error("no seal event came");
    link.send(std::to_string(t));
  }
  return 0;
}
const ChildRole event_waiter_role("event_waiter", event_waiter);

struct EventFixture {
  OwnedStore owned{"event", store_options(16 * MiB)};
  ChildProcess store_child{"event_waiter", {owned.name.name(), owned.name.directory()}};
  ShmFile file{"event-futex", 4096, true};
  Mapped map{file.fd(), 4096, 0, true};
  ChildProcess raw_child{"futex_waiter", {file.path()}};
  std::uint32_t value = 0;
  EventFixture() {
    if (store_child.receive() != "subscribed") throw std::runtime_error("the subscriber did not subscribe");
    store_child.pin_to_cpu(1);
    raw_child.pin_to_cpu(1);
  }
  std::uint32_t* word() const { return reinterpret_cast<std::uint32_t*>(map.data()); }  // NOLINT
};

std::uint64_t seal_event(EventFixture& f, bool sleeping) {
  Store& store = f.owned.store;
  Writer w = store.create_writer(64);
  std::memset(w.bytes().data(), 7, 64);
  f.store_child.send(sleeping ? "sleep" : "spin");
  if (f.store_child.receive() != "armed") throw std::runtime_error("the subscriber did not arm");
  if (sleeping) f.store_child.wait_until_sleeping();
  std::uint64_t t0 = now_ns();
  RemoteRef r = std::move(w).seal();
  std::uint64_t woke = std::stoull(f.store_child.receive());
  store.erase(r);
  return woke > t0 ? woke - t0 : 0;
}

void seal_to_event(benchmark::State& state, bool sleeping) {
  auto& f = cached<EventFixture>("event", [] { return std::make_unique<EventFixture>(); });
  CpuPin pin(0);
  Tally t;
  Samples samples;
  for (auto _ : state) {
    std::uint64_t store_ns = seal_event(f, sleeping);
    std::uint64_t raw_ns = raw_wake(f.raw_child, f.word(), f.value, sleeping);
    samples.subject.push_back(store_ns);
    samples.baseline.push_back(raw_ns);
    state.SetIterationTime(seconds(store_ns));
    t.subject_ns += store_ns;
    t.baseline_ns += raw_ns;
    t.ops += 1;
    t.baseline_ops += 1;
  }
  finish(state, t, 0, Ratio::Latency);
  finish_samples(state, samples);
}

void register_spill() {
  for (std::uint64_t size : capped_sizes({64 * MiB})) {
    add("spill/write/" + size_label(size), [size](benchmark::State& st) {
      spill_bandwidth(st, size, false);
    })->Iterations(fixed_iterations(20));
    add("spill/restore/" + size_label(size), [size](benchmark::State& st) {
      spill_bandwidth(st, size, true);
    })->Iterations(fixed_iterations(20));
  }
  add("spill/workload_4x", [](benchmark::State& st) { spill_workload(st); })->Iterations(fixed_iterations(3));
  add("seal_to_event/sleeping", [](benchmark::State& st) {
    seal_to_event(st, true);
  })->Iterations(fixed_iterations(3000));
  add("seal_to_event/spinning", [](benchmark::State& st) { seal_to_event(st, false); })
      ->Unit(benchmark::kNanosecond)
      ->Iterations(fixed_iterations(3000));
}
const Registrar registrar(55, register_spill);

}  // namespace
}  // namespace sealstore::bench
