// Physical baselines, measured in the same run as what they bound: memcpy
// between warm private buffers, a first-touch write into a fresh mapping of
// a shared-memory file, the wake-up of a process sleeping on a
// process-shared futex (one way and a round trip), and an uncontended
// process-shared robust mutex (the kind the store locks).
#include <pthread.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

constexpr std::uint32_t kStop = 0xffffffffU;

// ---- children

// Maps PATH (a 4 KiB shared file) and, per request, sleeps on its first word
// ("wait V": while it holds V) or spins on it ("poll V"), then reports the
// CLOCK_MONOTONIC time it saw the change.
int futex_waiter(const ParentLink& link, const std::vector<std::string>& args) {
  ShmFileView file(args.at(0));
  auto* word = file.word(0);
  while (auto line = link.receive()) {
    auto w = words(*line);
    auto cur = static_cast<std::uint32_t>(std::stoul(w.at(1)));
    link.send("armed");
    if (w.at(0) == "wait") {
      while (load_acquire(word) == cur) futex_wait(word, cur);
    } else {
      while (load_acquire(word) == cur) cpu_relax();
    }
    std::uint64_t t = now_ns();
    link.send(std::to_string(t));
  }
  return 0;
}
const ChildRole futex_waiter_role("futex_waiter", futex_waiter);

// Echoes every new value of word 0 into word 16 (another cache line), sleeping
// on a futex in between, until word 0 becomes kStop.
int futex_echo(const ParentLink& /*link*/, const std::vector<std::string>& args) {
  ShmFileView file(args.at(0));
  std::uint32_t* ping = file.word(0);
  std::uint32_t* pong = file.word(16);
  std::uint32_t seen = 0;
  for (;;) {
    std::uint32_t v = load_acquire(ping);
    while (v == seen) {
      futex_wait(ping, seen);
      v = load_acquire(ping);
    }
    if (v == kStop) return 0;
    seen = v;
    store_release(pong, v);
    futex_wake(pong);
  }
}
const ChildRole futex_echo_role("futex_echo", futex_echo);

// ---- benchmarks

void memcpy_warm(benchmark::State& state, std::uint64_t size) {
  std::byte* src = source_buffer();
  std::byte* dst = dest_buffer();
  std::uint64_t stride = (size + 63) / 64 * 64;
  std::uint64_t k = std::min(batch_ops(size, 256 * KiB), config().max_size / stride);
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < k; ++i) std::memcpy(dst + i * stride, src + i * stride, size);  // NOLINT
    benchmark::ClobberMemory();
    std::uint64_t dt = now_ns() - t0;
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += k;
  }
  finish(state, t, size, Ratio::None);
}

void first_touch_write(benchmark::State& state, std::uint64_t size, bool fallocate) {
  std::byte* src = source_buffer();
  Tally t;
  for (auto _ : state) {
    ShmFile file("touch", size, fallocate);
    Mapped map(file.fd(), size, 0, true);
    std::uint64_t t0 = now_ns();
    std::memcpy(map.data(), src, size);
    benchmark::ClobberMemory();
    std::uint64_t dt = now_ns() - t0;
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += 1;
  }
  finish(state, t, size, Ratio::None);
}

struct WaiterFixture {
  WaiterFixture() : file("futex", 4096, true), map(file.fd(), 4096, 0, true), child("futex_waiter", {file.path()}) {
    child.pin_to_cpu(1);
  }
  std::uint32_t* word() const { return reinterpret_cast<std::uint32_t*>(map.data()); }  // NOLINT
  ShmFile file;
  Mapped map;
  ChildProcess child;
  std::uint32_t value = 0;
};

void futex_wake_one_way(benchmark::State& state) {
  auto& f = cached<WaiterFixture>("futex_waiter", [] { return std::make_unique<WaiterFixture>(); });
  CpuPin pin(0);
  Tally t;
  Samples samples;
  for (auto _ : state) {
    std::uint64_t dt = raw_wake(f.child, f.word(), f.value, true);
    samples.subject.push_back(dt);
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += 1;
  }
  finish(state, t, 0, Ratio::None);
  finish_samples(state, samples);
}

struct EchoFixture {
  EchoFixture() : file("echo", 4096, true), map(file.fd(), 4096, 0, true), child("futex_echo", {file.path()}) {
    child.pin_to_cpu(1);
  }
  ~EchoFixture() {
    store_release(ping(), kStop);
    futex_wake(ping());
  }
  EchoFixture(const EchoFixture&) = delete;
  EchoFixture& operator=(const EchoFixture&) = delete;
  std::uint32_t* ping() const { return reinterpret_cast<std::uint32_t*>(map.data()); }       // NOLINT
  std::uint32_t* pong() const { return reinterpret_cast<std::uint32_t*>(map.data()) + 16; }  // NOLINT
  ShmFile file;
  Mapped map;
  ChildProcess child;
  std::uint32_t value = 0;
};

void futex_round_trip(benchmark::State& state) {
  auto& f = cached<EchoFixture>("futex_echo", [] { return std::make_unique<EchoFixture>(); });
  CpuPin pin(0);
  constexpr int kBatch = 20;
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (int i = 0; i < kBatch; ++i) {
      std::uint32_t v = ++f.value;
      if (v == kStop) v = f.value = 1;
      store_release(f.ping(), v);
      futex_wake(f.ping());
      for (std::uint32_t seen = load_acquire(f.pong()); seen != v; seen = load_acquire(f.pong())) {
        futex_wait(f.pong(), seen);
      }
    }
    std::uint64_t dt = now_ns() - t0;
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += kBatch;
  }
  finish(state, t, 0, Ratio::None);
}

void mutex_lock_unlock(benchmark::State& state) {
  ShmFile file("mutex", 4096, true);
  Mapped map(file.fd(), 4096, 0, true);
  auto* m = reinterpret_cast<pthread_mutex_t*>(map.data());  // NOLINT
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (pthread_mutex_init(m, &a) != 0) throw std::runtime_error("pthread_mutex_init failed");
  pthread_mutexattr_destroy(&a);
  constexpr int kBatch = 1000;
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    for (int i = 0; i < kBatch; ++i) {
      pthread_mutex_lock(m);
      benchmark::ClobberMemory();
      pthread_mutex_unlock(m);
    }
    std::uint64_t dt = now_ns() - t0;
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += kBatch;
  }
  pthread_mutex_destroy(m);
  finish(state, t, 0, Ratio::None);
}

void register_baselines() {
  for (std::uint64_t s : size_ladder()) {
    add("baseline/memcpy/" + size_label(s), [s](benchmark::State& st) { memcpy_warm(st, s); });
  }
  for (std::uint64_t s : capped_sizes({MiB, 64 * MiB, GiB})) {
    add("baseline/first_touch_write/" + size_label(s), [s](benchmark::State& st) { first_touch_write(st, s, true); });
    add("baseline/first_touch_write_sparse/" + size_label(s),
        [s](benchmark::State& st) { first_touch_write(st, s, false); });
  }
  add("baseline/futex_wake", futex_wake_one_way)->Iterations(fixed_iterations(3000));
  add("baseline/futex_round_trip", futex_round_trip);
  add("baseline/mutex_lock_unlock", mutex_lock_unlock)->Unit(benchmark::kNanosecond);
}
const Registrar registrar(0, register_baselines);

}  // namespace

std::uint64_t raw_wake(const ChildProcess& child, std::uint32_t* word, std::uint32_t& value, bool sleeping) {
  std::uint32_t cur = value;
  child.send(std::string(sleeping ? "wait " : "poll ") + std::to_string(cur));
  if (child.receive() != "armed") throw std::runtime_error("the waiter did not arm");
  if (sleeping) child.wait_until_sleeping();
  std::uint64_t t0 = now_ns();
  value = cur + 1 == kStop ? 0 : cur + 1;
  store_release(word, value);
  if (sleeping) futex_wake(word);
  std::uint64_t woke = std::stoull(child.receive());
  return woke > t0 ? woke - t0 : 0;
}

}  // namespace sealstore::bench
