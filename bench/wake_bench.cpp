// Seal-to-wake across processes: a child blocked in fetch (asleep in the
// kernel, checked in /proc before the seal; on the other CPU), the parent seals; the time from
// just before seal() to the child returning from fetch, against the same
// wake-up through a raw process-shared futex, alternated in each iteration.
// Then the same with a waiter already waiting in a bounded spin
// (FetchOptions::spin) against one spinning on a raw shared word.
#include <cstring>
#include <memory>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

// Attaches to segment ARGS[0] in ARGS[1]. "fetch REF": blocks in fetch;
// "spin REF": fetch with a bounded spin before sleeping. Either way it first says
// "armed", and at the end answers with the CLOCK_MONOTONIC time it got the
// view.
int fetch_waiter(const ParentLink& link, const std::vector<std::string>& args) {
  AttachOptions o;
  o.directory = args.size() > 1 ? args[1] : "";
  Store store = Store::attach(args.at(0), o);
  while (auto line = link.receive()) {
    auto space = line->find(' ');
    std::string verb = line->substr(0, space);
    RemoteRef ref = RemoteRef::parse(line->substr(space + 1));
    link.send("armed");
    View v;
    if (verb == "fetch") {
      v = store.fetch(ref);
    } else {
      FetchOptions spin;
      spin.spin = std::chrono::milliseconds(50);
      v = store.fetch(ref, spin);
    }
    std::uint64_t t = now_ns();
    link.send(std::to_string(t));
  }
  return 0;
}
const ChildRole fetch_waiter_role("fetch_waiter", fetch_waiter);

struct WakeFixture {
  OwnedStore owned{"wake", store_options(16 * MiB)};
  ChildProcess store_child{"fetch_waiter", {owned.name.name(), owned.name.directory()}};
  ShmFile file{"wake-futex", 4096, true};
  Mapped map{file.fd(), 4096, 0, true};
  ChildProcess raw_child{"futex_waiter", {file.path()}};
  std::uint32_t value = 0;
  WakeFixture() {
    store_child.pin_to_cpu(1);
    raw_child.pin_to_cpu(1);
  }
  std::uint32_t* word() const { return reinterpret_cast<std::uint32_t*>(map.data()); }  // NOLINT
};

std::uint64_t seal_wake(WakeFixture& f, bool sleeping) {
  Store& store = f.owned.store;
  RemoteRef ref = store.make_ref();
  Writer w = store.create_writer(ref, 64);
  std::memset(w.bytes().data(), 7, 64);
  f.store_child.send(std::string(sleeping ? "fetch " : "spin ") + ref.to_string());
  if (f.store_child.receive() != "armed") throw std::runtime_error("the fetching child did not arm");
  if (sleeping) f.store_child.wait_until_sleeping();
  std::uint64_t t0 = now_ns();
  std::move(w).seal();
  std::uint64_t woke = std::stoull(f.store_child.receive());
  store.erase(ref);
  return woke > t0 ? woke - t0 : 0;
}

void seal_to_wake(benchmark::State& state, bool sleeping) {
  auto& f = cached<WakeFixture>("wake", [] { return std::make_unique<WakeFixture>(); });
  CpuPin pin(0);  // the waiters are on CPU 1: every wake-up crosses cores
  Tally t;
  Samples samples;
  for (auto _ : state) {
    std::uint64_t store_ns = seal_wake(f, sleeping);
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

void register_wake() {
  // Each iteration is two round trips over pipes (~100 us) around a timed
  // wake-up: a fixed count keeps a repetition near a second.
  add("seal_to_wake/sleeping", [](benchmark::State& st) {
    seal_to_wake(st, true);
  })->Iterations(fixed_iterations(3000));
  add("seal_to_wake/spinning", [](benchmark::State& st) { seal_to_wake(st, false); })
      ->Unit(benchmark::kNanosecond)
      ->Iterations(fixed_iterations(3000));
}
const Registrar registrar(50, register_wake);

}  // namespace
}  // namespace sealstore::bench
