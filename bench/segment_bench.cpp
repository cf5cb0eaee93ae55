// Segment options and first-touch costs. For each set-up (plain, pre-faulted,
// MADV_HUGEPAGE, and a huge-page tmpfs when --huge_dir names one):
// - segment_create: creating a segment of SIZE (reserving, mapping and, when
//   pre-faulting, populating it);
// - put_fresh: a put into space of a new segment that no process has touched,
//   against the raw first-touch write of the same size into a file on the
//   same mount, reserved the same way (posix_fallocate) at the same moment;
// - first_read: a newly attached reader's first pass over a large object it
//   has never touched, against a raw second mapping's first read of a file of
//   the same size on the same mount.
// Each reports the minor faults it took and what the kernel did about huge
// pages (ShmemPmdMapped of this process), since the mount decides that.
#include <sys/mman.h>
#include <sys/resource.h>

#include <cstring>
#include <memory>
#include <vector>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

std::uint64_t minor_faults() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_minflt);
}

CreateOptions setup_options(const SegmentSetup& s, std::uint64_t capacity) {
  CreateOptions o = store_options(capacity);
  o.directory = s.directory;
  o.prefault = s.prefault;
  o.huge_pages = s.huge_pages;
  return o;
}

void set_fault_counters(benchmark::State& state, const char* name, std::uint64_t faults, std::uint64_t ops,
                        std::uint64_t size) {
  if (ops == 0 || size == 0) return;
  state.counters[name] = static_cast<double>(faults) / static_cast<double>(ops) / (static_cast<double>(size) / MiB);
}

void segment_create(benchmark::State& state, const SegmentSetup& setup, std::uint64_t size) {
  Tally t;
  std::uint64_t pmd_kib = 0;
  for (auto _ : state) {
    std::uint64_t t0 = now_ns();
    auto s = std::make_unique<OwnedStore>("create", setup_options(setup, size));
    std::uint64_t dt = now_ns() - t0;
    pmd_kib = std::max(pmd_kib, smaps_rollup_kib("ShmemPmdMapped"));
    s.reset();
    state.SetIterationTime(seconds(dt));
    t.subject_ns += dt;
    t.ops += 1;
  }
  finish(state, t, size, Ratio::None);
  state.counters["shmem_pmd_mapped_kib"] = static_cast<double>(pmd_kib);
}

// A new segment and, made at the same moment in the same way, a raw file of
// the same capacity on the same mount: the store's puts and the raw writes
// walk through space that is equally untouched and equally cold.
struct FreshSpace {
  std::unique_ptr<OwnedStore> owned;
  std::unique_ptr<ShmFile> raw;
  std::uint64_t used = 0;  // bytes of the raw file written so far
  std::uint64_t capacity = 0;
};

void put_fresh(benchmark::State& state, const SegmentSetup& setup, std::uint64_t size) {
  auto& f = cached<FreshSpace>("put_fresh/" + setup.label + "/" + size_label(size),
                               [] { return std::make_unique<FreshSpace>(); });
  std::uint64_t stride = (size + 4095) / 4096 * 4096;  // whole pages, so each raw mapping starts fresh
  std::uint64_t capacity = std::max<std::uint64_t>(64 * MiB, 2 * stride);
  const std::byte* src = source_buffer();
  Tally t;
  std::uint64_t faults = 0;
  std::uint64_t base_faults = 0;
  std::uint64_t pmd_kib = 0;
  for (auto _ : state) {
    if (!f.owned || f.used + stride > f.capacity) {
      f.owned.reset();  // its objects go with it: never-touched space comes only from a new segment
      f.raw.reset();
      f.owned = std::make_unique<OwnedStore>("fresh", setup_options(setup, capacity));
      f.raw = std::make_unique<ShmFile>("fresh-raw", capacity, true, setup.directory);
      f.used = 0;
      f.capacity = capacity;
    }
    std::uint64_t m0 = minor_faults();
    std::uint64_t t0 = now_ns();
    f.owned->store.put_bytes({}, std::span(src, size));
    std::uint64_t t1 = now_ns();
    faults += minor_faults() - m0;
    pmd_kib = std::max(pmd_kib, smaps_rollup_kib("ShmemPmdMapped"));

    Mapped map(f.raw->fd(), stride, f.used, true);
    if (setup.huge_pages) ::madvise(map.data(), stride, MADV_HUGEPAGE);
    f.used += stride;
    std::uint64_t m1 = minor_faults();
    std::uint64_t t2 = now_ns();
    std::memcpy(map.data(), src, size);
    benchmark::ClobberMemory();
    std::uint64_t t3 = now_ns();
    base_faults += minor_faults() - m1;

    state.SetIterationTime(seconds(t1 - t0));
    t.subject_ns += t1 - t0;
    t.baseline_ns += t3 - t2;
    t.ops += 1;
    t.baseline_ops += 1;
  }
  finish(state, t, size, Ratio::Bandwidth);
  set_fault_counters(state, "faults_per_MiB", faults, t.ops, size);
  set_fault_counters(state, "baseline_faults_per_MiB", base_faults, t.baseline_ops, size);
  state.counters["shmem_pmd_mapped_kib"] = static_cast<double>(pmd_kib);
}

struct WrittenObject {
  WrittenObject(const SegmentSetup& setup, std::uint64_t size)
      : owned("firstread", setup_options(setup, size + MiB)),
        ref(owned.store.put_bytes({}, std::span(source_buffer(), size))),
        raw("firstread-raw", size, true, setup.directory) {
    Mapped first(raw.fd(), size, 0, true);  // the raw file's writer, as the store's creator
    std::memcpy(first.data(), source_buffer(), size);
  }
  OwnedStore owned;
  RemoteRef ref;
  ShmFile raw;
};

void first_read(benchmark::State& state, const SegmentSetup& setup, std::uint64_t size) {
  auto& f = cached<WrittenObject>("first_read/" + setup.label + "/" + size_label(size),
                                  [&] { return std::make_unique<WrittenObject>(setup, size); });
  AttachOptions o;
  o.directory = setup.directory;
  o.prefault = setup.prefault;
  o.huge_pages = setup.huge_pages;
  Tally t;
  std::uint64_t attach_ns = 0;
  std::uint64_t faults = 0;
  std::uint64_t base_faults = 0;
  std::uint64_t pmd_kib = 0;
  for (auto _ : state) {
    std::uint64_t a0 = now_ns();
    Store reader = Store::attach(f.owned.name.name(), o);  // a new mapping: nothing of it touched yet
    attach_ns += now_ns() - a0;
    View v = reader.fetch(f.ref);
    std::uint64_t m0 = minor_faults();
    std::uint64_t t0 = now_ns();
    benchmark::DoNotOptimize(read_pass(v.bytes()));
    std::uint64_t t1 = now_ns();
    faults += minor_faults() - m0;
    pmd_kib = std::max(pmd_kib, smaps_rollup_kib("ShmemPmdMapped"));
    v.reset();

    Mapped second(f.raw.fd(), size, 0, false);
    std::uint64_t m1 = minor_faults();
    std::uint64_t t2 = now_ns();
    benchmark::DoNotOptimize(read_pass(std::span<const std::byte>(second.data(), size)));
    std::uint64_t t3 = now_ns();
    base_faults += minor_faults() - m1;

    state.SetIterationTime(seconds(t1 - t0));
    t.subject_ns += t1 - t0;
    t.baseline_ns += t3 - t2;
    t.ops += 1;
    t.baseline_ops += 1;
  }
  finish(state, t, size, Ratio::Bandwidth);
  if (t.ops > 0) state.counters["attach_us"] = static_cast<double>(attach_ns) / static_cast<double>(t.ops) / 1e3;
  set_fault_counters(state, "faults_per_MiB", faults, t.ops, size);
  set_fault_counters(state, "baseline_faults_per_MiB", base_faults, t.baseline_ops, size);
  state.counters["shmem_pmd_mapped_kib"] = static_cast<double>(pmd_kib);
}

void register_segment() {
  std::vector<SegmentSetup> setups = segment_setups();
  for (const auto& s : setups) {
    for (std::uint64_t n : capped_sizes({64 * MiB, 256 * MiB, GiB})) {
      add("segment_create/" + s.label + "/" + size_label(n), [s, n](benchmark::State& st) {
        segment_create(st, s, n);
      })->Unit(benchmark::kMillisecond);
    }
  }
  for (const auto& s : setups) {
    for (std::uint64_t n : capped_sizes({MiB, 16 * MiB, 64 * MiB, 256 * MiB, GiB})) {
      add("put_fresh/" + s.label + "/" + size_label(n), [s, n](benchmark::State& st) { put_fresh(st, s, n); });
    }
  }
  for (const auto& s : setups) {
    for (std::uint64_t n : capped_sizes({MiB, 64 * MiB, 256 * MiB, GiB})) {
      add("first_read/" + s.label + "/" + size_label(n), [s, n](benchmark::State& st) { first_read(st, s, n); });
    }
  }
}
const Registrar registrar(70, register_segment);

}  // namespace
}  // namespace sealstore::bench
