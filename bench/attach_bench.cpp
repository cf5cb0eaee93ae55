// Attaching to a segment, by the size of its object table: what a worker
// (or a process a pool spawns) pays before its first operation. Against
// the same run's cost of opening and mapping the same file raw (open,
// fstat, mmap, munmap, close), which attach does once plus its own work.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

std::uint64_t raw_map(const std::string& path) {
  std::uint64_t t0 = now_ns();
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  struct stat st {};
  ::fstat(fd, &st);
  void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw std::runtime_error("cannot map " + path);
  ::munmap(p, static_cast<std::size_t>(st.st_size));
  ::close(fd);
  return now_ns() - t0;
}

void attach(benchmark::State& state, std::uint32_t max_objects) {
  auto& f = cached<OwnedStore>("attach/" + std::to_string(max_objects), [max_objects] {
    return std::make_unique<OwnedStore>("attach", store_options(64 * MiB, max_objects));
  });
  AttachOptions o;
  o.directory = f.name.directory();
  Tally t;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    std::optional<Store> s(Store::attach(f.name.name(), o));
    std::uint64_t dt = now_ns() - t0;
    benchmark::DoNotOptimize(s->myid());
    s.reset();  // detaching is not timed
    std::uint64_t base = raw_map(f.name.path());
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.baseline_ns += base;
    t.ops += 1;
    t.baseline_ops += 1;
  }
  finish(state, t, 0, Ratio::Latency);
  state.counters["max_objects"] = static_cast<double>(max_objects);
}

void register_attach() {
  for (std::uint64_t n : capped_counts({1024, 1 << 20})) {
    add("attach/objects/" + std::to_string(n), [n](benchmark::State& st) {
      attach(st, static_cast<std::uint32_t>(n));
    })->Unit(benchmark::kMicrosecond);
  }
}
const Registrar registrar(25, register_attach);

}  // namespace
}  // namespace sealstore::bench
