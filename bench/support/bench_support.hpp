// What every benchmark of the suite shares: its configuration (size caps, so
// the same binary runs at 1 GiB for the report and at a few KiB as a smoke
// test), segments that are removed whatever happens, warm private buffers,
// child processes spawned from this binary, timing and counter helpers.
// Single-threaded: the suite runs one benchmark at a time.
#pragma once

#include <sys/types.h>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealstore/sealstore.hpp"

namespace sealstore::bench {

inline constexpr std::uint64_t KiB = 1024;
inline constexpr std::uint64_t MiB = 1024 * KiB;
inline constexpr std::uint64_t GiB = 1024 * MiB;

// ---- configuration

struct Config {
  std::uint64_t max_size = GiB;           // largest object any benchmark uses
  std::uint64_t max_objects = 1'000'000;  // largest object count in the store
  std::string directory;                  // where segments live ("" = /dev/shm)
  std::string huge_dir;                   // a huge-page tmpfs to measure as well ("" = none)
  bool smoke = false;                     // run everything once, tiny: for the ctest
};
const Config& config();
// Parses and removes the suite's own flags from argv (the rest is Google
// Benchmark's): --max_size=SIZE (e.g. 4K, 64M, 1G), --max_objects=N,
// --dir=PATH, --huge_dir=PATH, --smoke (4K, 100 objects, fixed iteration
// counts cut to 2); SEALSTORE_BENCH_MAX_SIZE and SEALSTORE_BENCH_MAX_OBJECTS
// set the same caps. Exits with a message on bad values.
void parse_config(int& argc, char** argv);
std::uint64_t parse_size(std::string_view text);  // throws std::invalid_argument
std::string size_label(std::uint64_t bytes);      // 64, 4K, 1M, 1G

// Sizes from `wanted` with each capped at config().max_size, duplicates
// dropped: a family always keeps at least one size, so a capped run still
// exercises it.
std::vector<std::uint64_t> capped_sizes(std::initializer_list<std::uint64_t> wanted);
std::vector<std::uint64_t> capped_counts(std::initializer_list<std::uint64_t> wanted);
// 64 B, 256 B, ... 1 GiB: every fourth power of two.
std::vector<std::uint64_t> size_ladder(std::uint64_t from = 64, std::uint64_t to = GiB);

// ---- registration

// Registers one benchmark that runs `fn`; an exception escaping fn becomes
// SkipWithError with its message, and makes the run exit non-zero. Every
// benchmark uses manual time: only what fn passes to SetIterationTime counts.
benchmark::internal::Benchmark* add(const std::string& name, std::function<void(benchmark::State&)> fn);
bool any_benchmark_failed();
// A fixed iteration count for benchmarks whose timed part is a small slice of
// each iteration (hand-offs between processes), where Google Benchmark's
// choice from the timed part alone would run for hours; 2 under --smoke.
benchmark::IterationCount fixed_iterations(benchmark::IterationCount n);

// Each *_bench.cpp registers its benchmarks through a Registrar, run after
// the configuration is parsed (sizes depend on it). `order` sorts families:
// baselines first.
struct Registrar {
  Registrar(int order, void (*fn)());
};
void register_all();

// ---- segments and files

// A unique segment name; the segment is removed when the guard goes, and by
// a signal handler if the run is interrupted.
class SegmentName {
 public:
  explicit SegmentName(std::string_view what, std::string directory = config().directory);
  ~SegmentName();
  SegmentName(const SegmentName&) = delete;
  SegmentName& operator=(const SegmentName&) = delete;
  const std::string& name() const { return name_; }
  const std::string& directory() const { return directory_; }
  const std::string& path() const { return path_; }  // the backing file

 private:
  static std::string fmt_name(std::string_view what);
  std::string name_;
  std::string directory_;
  std::string path_;
};

// A store on its own segment, removed with it.
struct OwnedStore {
  OwnedStore(std::string_view what, CreateOptions options);
  SegmentName name;
  Store store;
};
CreateOptions store_options(std::uint64_t capacity, std::uint32_t max_objects = 1024);

// The ways a segment can be set up that the suite compares: plain, pre-faulted,
// MADV_HUGEPAGE, and (with --huge_dir) on a huge-page tmpfs.
struct SegmentSetup {
  std::string label;
  std::string directory;
  bool prefault = false;
  bool huge_pages = false;
};
std::vector<SegmentSetup> segment_setups();

// A plain shared-memory file on the segment mount, for raw baselines: made
// with posix_fallocate (reserved as a segment is) or sparse, unlinked when
// the object goes.
class ShmFile {
 public:
  ShmFile(std::string_view what, std::uint64_t bytes, bool fallocate, std::string directory = config().directory);
  ~ShmFile();
  ShmFile(const ShmFile&) = delete;
  ShmFile& operator=(const ShmFile&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }

 private:
  SegmentName name_;
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// Another process's mapping of a ShmFile, by path (read-write, whole file).
class ShmFileView {
 public:
  explicit ShmFileView(const std::string& path);
  ~ShmFileView();
  ShmFileView(const ShmFileView&) = delete;
  ShmFileView& operator=(const ShmFileView&) = delete;
  std::uint32_t* word(std::size_t i) const { return reinterpret_cast<std::uint32_t*>(data_) + i; }  // NOLINT

 private:
  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
};

// A MAP_SHARED mapping, unmapped when it goes.
class Mapped {
 public:
  Mapped(int fd, std::uint64_t bytes, std::uint64_t offset, bool writable);
  ~Mapped();
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  std::byte* data() const { return data_; }
  std::uint64_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
};

// Keeps one fixture (stores, refs, children) alive across the invocations
// of one benchmark instance, so a 1 GiB segment or a million objects are
// made once, not once per repetition. Asking with another key drops the old
// fixture first.
template <class T>
T& cached(const std::string& key, const std::function<std::unique_ptr<T>()>& make);
void drop_cached();

// ---- private memory

// Warm private buffers of config().max_size bytes, touched once at first use.
std::byte* source_buffer();
std::byte* dest_buffer();
void release_buffers();

// ---- time

std::uint64_t now_ns();  // CLOCK_MONOTONIC: comparable across processes
inline double seconds(std::uint64_t ns) { return static_cast<double>(ns) * 1e-9; }

// Ops per timed batch so that a batch of `bytes_per_op` ops moves about
// `batch_bytes` (at least 1, at most max_ops).
std::uint64_t batch_ops(std::uint64_t bytes_per_op, std::uint64_t batch_bytes = 4 * MiB, std::uint64_t max_ops = 1024);

// Totals of one benchmark run, turned into counters by finish().
struct Tally {
  std::uint64_t subject_ns = 0;
  std::uint64_t baseline_ns = 0;
  std::uint64_t ops = 0;
  std::uint64_t baseline_ops = 0;
};
enum class Ratio {
  None,       // no baseline
  Bandwidth,  // bw_ratio = baseline time / subject time (>= 1 is as fast)
  Latency,    // time_ratio = subject time / baseline time (<= 1 is as fast)
};
// Per-operation samples, for latencies where a few slow outliers (a
// descheduled process) would move a mean: finish_samples() adds the medians.
struct Samples {
  std::vector<std::uint64_t> subject;
  std::vector<std::uint64_t> baseline;
};
// Sets median_ns, and with baseline samples baseline_median_ns and
// median_time_ratio.
void finish_samples(benchmark::State& state, Samples& s);

// Sets ns_per_op, items and bytes processed, and with a baseline
// baseline_ns_per_op and the ratio.
void finish(benchmark::State& state, const Tally& t, std::uint64_t bytes_per_op, Ratio ratio);

// ---- raw futexes, process-shared (no FUTEX_PRIVATE_FLAG): the baselines

// Sleeps while *word == expected (or until a spurious wake-up).
void futex_wait(std::uint32_t* word, std::uint32_t expected);
void futex_wake(std::uint32_t* word);
std::uint32_t load_acquire(const std::uint32_t* word);
void store_release(std::uint32_t* word, std::uint32_t value);
void cpu_relax();

// Sums a region as 64-bit words: a reader's pass over every byte.
std::uint64_t read_pass(std::span<const std::byte> bytes);

// ---- /proc readings

// A field of /proc/self/smaps_rollup or /proc/meminfo, in KiB (0 if absent).
std::uint64_t smaps_rollup_kib(std::string_view field);
std::uint64_t meminfo_kib(std::string_view field);
// The one-letter state of a process (/proc/PID/stat field 3), e.g. 'S'.
char process_state(pid_t pid);

// ---- child processes

// A child running this binary in a role (see ChildRole), spawned by
// posix_spawn (no copy of our address space), linked by two pipes that carry
// text lines; optionally one more descriptor handed over as fd 5. Killed if
// we die (PDEATHSIG); reaped by pid when the object goes.
class ChildProcess {
 public:
  ChildProcess(std::string_view role, const std::vector<std::string>& args, int extra_fd = -1);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  pid_t pid() const { return pid_; }
  void send(std::string_view line) const;
  // The next line from the child, without the newline. Throws if the child
  // closed its end or said nothing for 60 s; a line "error: ..." from the
  // child is thrown as that error.
  std::string receive() const;
  // Waits (polling /proc, the child is on another core) until the child
  // sleeps in the kernel. Throws after 10 s.
  void wait_until_sleeping() const;
  // Keeps the child on CPU `cpu` (false if the machine has no such CPU).
  bool pin_to_cpu(int cpu) const;

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
};

// The child's side: fd 3 from the parent, fd 4 to it, fd 5 the extra one.
class ParentLink {
 public:
  void send(std::string_view line) const;
  // The next line; an empty optional when the parent closed the pipe.
  std::optional<std::string> receive() const;
  static constexpr int kExtraFd = 5;
};

// A role a child can run: main() dispatches --child=NAME to it.
struct ChildRole {
  ChildRole(const char* name, int (*fn)(const ParentLink&, const std::vector<std::string>& args));
};
// Runs the role named in argv if this process is a child; returns its exit
// code, or -1 if this is not a child.
int run_child_role(int argc, char** argv);

// One wake-up of a futex_waiter child (see baseline_bench.cpp) through
// `word`, which holds `value`: the child is told to sleep on it (or spin,
// when sleeping is false); once it does, the word changes (and a sleeper is
// woken). Returns the nanoseconds from just before the change to the child
// seeing it.
std::uint64_t raw_wake(const ChildProcess& child, std::uint32_t* word, std::uint32_t& value, bool sleeping);

// Keeps this process on one CPU while it lives (then restores its mask), so
// a wake-up always crosses to the other core: where the woken process lands
// changes its latency several-fold on this kind of VM. Does nothing on a
// machine with fewer than two CPUs.
class CpuPin {
 public:
  explicit CpuPin(int cpu);
  ~CpuPin();
  CpuPin(const CpuPin&) = delete;
  CpuPin& operator=(const CpuPin&) = delete;
  bool pinned() const { return pinned_; }

 private:
  bool pinned_ = false;
  std::vector<unsigned char> saved_;
};
// CPUs this process may run on.
int usable_cpus();

// Splits a line at spaces.
std::vector<std::string> words(std::string_view line);

// ---- implementation of cached()

namespace detail {
struct CachedSlot {
  std::string key;
  std::shared_ptr<void> value;
};
CachedSlot& cached_slot();
}  // namespace detail

template <class T>
T& cached(const std::string& key, const std::function<std::unique_ptr<T>()>& make) {
  detail::CachedSlot& slot = detail::cached_slot();
  if (slot.key != key || !slot.value) {
    slot.value.reset();  // the old fixture goes before the new one is made
    slot.key.clear();
    std::shared_ptr<T> fresh = make();
    slot.value = fresh;
    slot.key = key;
  }
  return *static_cast<T*>(slot.value.get());
}

}  // namespace sealstore::bench
