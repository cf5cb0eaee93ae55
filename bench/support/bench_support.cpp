#include "support/bench_support.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

extern char** environ;  // NOLINT: POSIX

namespace sealstore::bench {

namespace {

Config g_config;
std::atomic<bool> g_failed{false};

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// ---- files to remove if the run is interrupted. A fixed table, so the
// signal handler touches no allocator.
constexpr std::size_t kMaxCleanup = 64;
constexpr std::size_t kPathBytes = 512;
std::array<std::array<char, kPathBytes>, kMaxCleanup> g_cleanup{};
std::array<std::atomic<bool>, kMaxCleanup> g_cleanup_used{};

void on_fatal_signal(int sig) {
  for (std::size_t i = 0; i < kMaxCleanup; ++i) {
    if (g_cleanup_used[i].load()) ::unlink(g_cleanup[i].data());
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_cleanup_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(sig, on_fatal_signal);
}

std::size_t remember_path(const std::string& path) {
  install_cleanup_handlers();
  if (path.size() >= kPathBytes) throw std::invalid_argument("segment path too long: " + path);
  for (std::size_t i = 0; i < kMaxCleanup; ++i) {
    if (!g_cleanup_used[i].load()) {
      std::memcpy(g_cleanup[i].data(), path.c_str(), path.size() + 1);
      g_cleanup_used[i].store(true);
      return i;
    }
  }
  throw std::runtime_error("more than 64 segments at once");
}

void forget_path(const std::string& path) {
  for (std::size_t i = 0; i < kMaxCleanup; ++i) {
    if (g_cleanup_used[i].load() && path == g_cleanup[i].data()) g_cleanup_used[i].store(false);
  }
}

std::uint64_t env_size(const char* var, std::uint64_t fallback) {
  const char* v = std::getenv(var);
  return v != nullptr && *v != '\0' ? parse_size(v) : fallback;
}

struct RegistrarEntry {
  int order;
  void (*fn)();
};
std::vector<RegistrarEntry>& registrars() {
  static std::vector<RegistrarEntry> r;
  return r;
}

std::map<std::string, int (*)(const ParentLink&, const std::vector<std::string>&)>& roles() {
  static std::map<std::string, int (*)(const ParentLink&, const std::vector<std::string>&)> r;
  return r;
}

std::string self_exe() {
  std::array<char, 4096> buf{};
  ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw_errno("readlink /proc/self/exe");
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw_errno("write to pipe");
    p += w;  // NOLINT
    n -= static_cast<std::size_t>(w);
  }
}

// A line from fd; nullopt on EOF. timeout_ms < 0: wait for ever.
std::optional<std::string> read_line(int fd, int timeout_ms) {
  std::string line;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0)
      throw std::runtime_error("no answer from the other process within " + std::to_string(timeout_ms) + " ms");
    char c = 0;
    ssize_t r = ::read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno("read from pipe");
    if (r == 0) {
      if (line.empty()) return std::nullopt;
      return line;
    }
    if (c == '\n') return line;
    line.push_back(c);
  }
}

std::uint64_t kib_field(const char* path, std::string_view field) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 && line[field.size()] == ':') {
      return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

std::atomic<int> g_name_counter{0};

}  // namespace

// ---- configuration

const Config& config() { return g_config; }

std::uint64_t parse_size(std::string_view text) {
  std::uint64_t v = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();  // NOLINT
  auto [p, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || p == first) throw std::invalid_argument("not a size: '" + std::string(text) + "'");
  std::string_view unit(p, static_cast<std::size_t>(last - p));
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else if (unit == "K" || unit == "KiB") {
    mult = KiB;
  } else if (unit == "M" || unit == "MiB") {
    mult = MiB;
  } else if (unit == "G" || unit == "GiB") {
    mult = GiB;
  } else {
    throw std::invalid_argument("not a size: '" + std::string(text) + "' (use a number with B, K, M or G)");
  }
  if (v > UINT64_MAX / mult) throw std::invalid_argument("size too large: '" + std::string(text) + "'");
  return v * mult;
}

std::string size_label(std::uint64_t bytes) {
  if (bytes >= GiB && bytes % GiB == 0) return std::to_string(bytes / GiB) + "G";
  if (bytes >= MiB && bytes % MiB == 0) return std::to_string(bytes / MiB) + "M";
  if (bytes >= KiB && bytes % KiB == 0) return std::to_string(bytes / KiB) + "K";
  return std::to_string(bytes);
}

void parse_config(int& argc, char** argv) {
  try {
    g_config.max_size = env_size("SEALSTORE_BENCH_MAX_SIZE", g_config.max_size);
    g_config.max_objects = env_size("SEALSTORE_BENCH_MAX_OBJECTS", g_config.max_objects);
    int out = 1;
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];  // NOLINT
      auto value = [&](std::string_view flag) -> std::optional<std::string_view> {
        if (a.size() > flag.size() && a.compare(0, flag.size(), flag) == 0 && a[flag.size()] == '=') {
          return a.substr(flag.size() + 1);
        }
        return std::nullopt;
      };
      if (auto v = value("--max_size")) {
        g_config.max_size = parse_size(*v);
      } else if (auto v2 = value("--max_objects")) {
        g_config.max_objects = parse_size(*v2);
      } else if (auto v3 = value("--dir")) {
        g_config.directory = std::string(*v3);
      } else if (auto v4 = value("--huge_dir")) {
        g_config.huge_dir = std::string(*v4);
      } else if (a == "--smoke") {
        g_config.smoke = true;
        g_config.max_size = 4 * KiB;
        g_config.max_objects = 100;
      } else {
        argv[out++] = argv[i];  // NOLINT
      }
    }
    argc = out;
    if (g_config.max_size < 64) throw std::invalid_argument("--max_size must be at least 64 bytes");
    if (g_config.max_objects < 1 || g_config.max_objects > (1U << 20U)) {
      throw std::invalid_argument("--max_objects must be 1 to 1048576");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sealstore_bench: %s\n", e.what());
    std::exit(2);
  }
}

std::vector<std::uint64_t> capped_sizes(std::initializer_list<std::uint64_t> wanted) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t s : wanted) {
    std::uint64_t c = std::min(s, config().max_size);
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

std::vector<std::uint64_t> capped_counts(std::initializer_list<std::uint64_t> wanted) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t s : wanted) {
    std::uint64_t c = std::min(s, config().max_objects);
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

std::vector<std::uint64_t> size_ladder(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t s = from; s <= to; s *= 4) {
    std::uint64_t c = std::min(s, config().max_size);
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

// ---- registration

benchmark::internal::Benchmark* add(const std::string& name, std::function<void(benchmark::State&)> fn) {
  auto run = [fn = std::move(fn)](benchmark::State& state) {
    try {
      fn(state);
    } catch (const std::exception& e) {
      g_failed = true;
      state.SkipWithError(e.what());
    }
  };
  return benchmark::RegisterBenchmark(name.c_str(), run)->UseManualTime()->Unit(benchmark::kMicrosecond);
}

bool any_benchmark_failed() { return g_failed.load(); }

benchmark::IterationCount fixed_iterations(benchmark::IterationCount n) { return config().smoke ? 2 : n; }

Registrar::Registrar(int order, void (*fn)()) { registrars().push_back({order, fn}); }

void register_all() {
  auto& r = registrars();
  std::stable_sort(r.begin(), r.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  for (const auto& e : r) e.fn();
}

// ---- segments and files

SegmentName::SegmentName(std::string_view what, std::string directory)
    : name_(fmt_name(what)), directory_(std::move(directory)), path_(Store::path_of(name_, directory_)) {
  remember_path(path_);
}

SegmentName::~SegmentName() {
  forget_path(path_);
  ::unlink(path_.c_str());
}

std::string SegmentName::fmt_name(std::string_view what) {
  return "bench-" + std::string(what) + "-" + std::to_string(::getpid()) + "-" + std::to_string(g_name_counter++);
}

OwnedStore::OwnedStore(std::string_view what, CreateOptions options)
    : name(what, options.directory.empty() ? config().directory : options.directory), store([&] {
        if (options.directory.empty()) options.directory = name.directory();
        return Store::create(name.name(), options);
      }()) {}

CreateOptions store_options(std::uint64_t capacity, std::uint32_t max_objects) {
  CreateOptions o;
  o.capacity = capacity;
  o.max_objects = max_objects;
  o.max_names = 64;
  o.directory = config().directory;
  return o;
}

std::vector<SegmentSetup> segment_setups() {
  std::vector<SegmentSetup> out{{"plain", config().directory, false, false},
                                {"prefault", config().directory, true, false},
                                {"huge", config().directory, false, true}};
  if (!config().huge_dir.empty()) out.push_back({"huge_tmpfs", config().huge_dir, false, true});
  return out;
}

ShmFile::ShmFile(std::string_view what, std::uint64_t bytes, bool fallocate, std::string directory)
    : name_(what, std::move(directory)), size_(bytes) {
  path_ = name_.path();
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd_ < 0) throw_errno("create " + path_);
  if (fallocate) {
    int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(bytes));
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_fallocate " + path_);
  } else if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
    throw_errno("ftruncate " + path_);
  }
}

ShmFile::~ShmFile() {
  if (fd_ >= 0) ::close(fd_);  // name_ unlinks the file
}

ShmFileView::ShmFileView(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw_errno("open " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw_errno("fstat " + path);
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
  void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw_errno("mmap " + path);
  data_ = static_cast<std::byte*>(p);
}

ShmFileView::~ShmFileView() { ::munmap(data_, size_); }

Mapped::Mapped(int fd, std::uint64_t bytes, std::uint64_t offset, bool writable) : size_(bytes) {
  int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  void* p = ::mmap(nullptr, bytes, prot, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) throw_errno("mmap");
  data_ = static_cast<std::byte*>(p);
}

Mapped::~Mapped() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

namespace detail {
CachedSlot& cached_slot() {
  static CachedSlot slot;
  return slot;
}
}  // namespace detail

void drop_cached() {
  detail::cached_slot().value.reset();
  detail::cached_slot().key.clear();
}

// ---- private memory

namespace {
struct Buffer {
  std::byte* data = nullptr;
  std::uint64_t size = 0;
  void make(std::uint64_t bytes, int pattern) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_errno("mmap a private buffer");
    data = static_cast<std::byte*>(p);
    size = bytes;
    std::memset(data, pattern, bytes);  // touched: every page is real and warm
  }
  void release() {
    if (data != nullptr) ::munmap(data, size);
    data = nullptr;
  }
};
Buffer g_source;
Buffer g_dest;
}  // namespace

std::byte* source_buffer() {
  if (g_source.data == nullptr) {
    g_source.make(config().max_size, 0);
    for (std::uint64_t i = 0; i < g_source.size; i += 4096)
      g_source.data[i] = static_cast<std::byte>(i >> 12U);  // NOLINT
  }
  return g_source.data;
}

std::byte* dest_buffer() {
  if (g_dest.data == nullptr) g_dest.make(config().max_size, 0x55);
  return g_dest.data;
}

void release_buffers() {
  g_source.release();
  g_dest.release();
}

// ---- time

std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t batch_ops(std::uint64_t bytes_per_op, std::uint64_t batch_bytes, std::uint64_t max_ops) {
  return std::clamp<std::uint64_t>(batch_bytes / std::max<std::uint64_t>(bytes_per_op, 1), 1, max_ops);
}

void finish(benchmark::State& state, const Tally& t, std::uint64_t bytes_per_op, Ratio ratio) {
  if (t.ops == 0 || t.subject_ns == 0) return;
  state.counters["ns_per_op"] = static_cast<double>(t.subject_ns) / static_cast<double>(t.ops);
  state.SetItemsProcessed(static_cast<std::int64_t>(t.ops));
  if (bytes_per_op > 0) {
    state.SetBytesProcessed(static_cast<std::int64_t>(t.ops * bytes_per_op));
    state.counters["size"] = static_cast<double>(bytes_per_op);
  }
  if (ratio == Ratio::None || t.baseline_ops == 0 || t.baseline_ns == 0) return;
  double subject = static_cast<double>(t.subject_ns) / static_cast<double>(t.ops);
  double baseline = static_cast<double>(t.baseline_ns) / static_cast<double>(t.baseline_ops);
  state.counters["baseline_ns_per_op"] = baseline;
  if (ratio == Ratio::Bandwidth) {
    state.counters["bw_ratio"] = baseline / subject;
  } else {
    state.counters["time_ratio"] = subject / baseline;
  }
}

namespace {
double median_of(std::vector<std::uint64_t>& v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 == 1 ? static_cast<double>(v[n / 2])
                    : (static_cast<double>(v[n / 2 - 1]) + static_cast<double>(v[n / 2])) / 2;
}
}  // namespace

void finish_samples(benchmark::State& state, Samples& s) {
  if (s.subject.empty()) return;
  double m = median_of(s.subject);
  state.counters["median_ns"] = m;
  if (s.baseline.empty()) return;
  double b = median_of(s.baseline);
  state.counters["baseline_median_ns"] = b;
  if (b > 0) state.counters["median_time_ratio"] = m / b;
}

// ---- raw futexes

void futex_wait(std::uint32_t* word, std::uint32_t expected) {
  ::syscall(SYS_futex, word, FUTEX_WAIT, expected, nullptr, nullptr, 0);
}

void futex_wake(std::uint32_t* word) { ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

std::uint32_t load_acquire(const std::uint32_t* word) {
  return std::atomic_ref<std::uint32_t>(*const_cast<std::uint32_t*>(word)).load(std::memory_order_acquire);  // NOLINT
}

void store_release(std::uint32_t* word, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(*word).store(value, std::memory_order_release);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

std::uint64_t read_pass(std::span<const std::byte> bytes) {
  const auto* p = reinterpret_cast<const std::uint64_t*>(bytes.data());  // NOLINT: 64-byte aligned data
  std::size_t n = bytes.size() / 8;
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) {
    a += p[i];      // NOLINT
    b += p[i + 1];  // NOLINT
  }
  if (n % 2 == 1) a += p[n - 1];  // NOLINT
  return a ^ b;
}

// ---- /proc

std::uint64_t smaps_rollup_kib(std::string_view field) { return kib_field("/proc/self/smaps_rollup", field); }
std::uint64_t meminfo_kib(std::string_view field) { return kib_field("/proc/meminfo", field); }

char process_state(pid_t pid) {
  std::array<char, 512> buf{};
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return '?';
  ssize_t n = ::read(fd, buf.data(), buf.size() - 1);
  ::close(fd);
  if (n <= 0) return '?';
  std::string_view s(buf.data(), static_cast<std::size_t>(n));
  auto close_paren = s.rfind(')');
  if (close_paren == std::string_view::npos || close_paren + 2 >= s.size()) return '?';
  return s[close_paren + 2];
}

// ---- child processes

ChildProcess::ChildProcess(std::string_view role, const std::vector<std::string>& args, int extra_fd) {
  std::array<int, 2> down{};
  std::array<int, 2> up{};
  if (::pipe2(down.data(), O_CLOEXEC) != 0) throw_errno("pipe2");
  if (::pipe2(up.data(), O_CLOEXEC) != 0) throw_errno("pipe2");
  // Move the child's ends above the target numbers, so no dup2 below
  // overwrites a descriptor a later one still needs.
  int child_in = ::fcntl(down[0], F_DUPFD_CLOEXEC, 100);
  int child_out = ::fcntl(up[1], F_DUPFD_CLOEXEC, 100);
  int child_extra = extra_fd >= 0 ? ::fcntl(extra_fd, F_DUPFD_CLOEXEC, 100) : -1;
  ::close(down[0]);
  ::close(up[1]);
  to_child_ = down[1];
  from_child_ = up[0];

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child_in, 3);
  posix_spawn_file_actions_adddup2(&fa, child_out, 4);
  if (child_extra >= 0) posix_spawn_file_actions_adddup2(&fa, child_extra, ParentLink::kExtraFd);

  std::string exe = self_exe();
  std::vector<std::string> argv_s{exe, "--child=" + std::string(role), "--parent=" + std::to_string(::getpid())};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_s.size() + 1);
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = ::posix_spawn(&pid_, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(child_in);
  ::close(child_out);
  if (child_extra >= 0) ::close(child_extra);
  if (rc != 0) {
    ::close(to_child_);
    ::close(from_child_);
    throw std::system_error(rc, std::generic_category(), "posix_spawn " + exe);
  }
  std::string hello = receive();
  if (hello != "ready") throw std::runtime_error("child " + std::string(role) + " said '" + hello + "', not ready");
}

ChildProcess::~ChildProcess() {
  ::close(to_child_);  // EOF: the child finishes and exits
  ::close(from_child_);
  if (pid_ <= 0) return;
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  bool exited = false;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    exited = ::poll(&p, 1, 10'000) == 1;
    ::close(pidfd);
  }
  if (!exited) ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

void ChildProcess::send(std::string_view line) const {
  std::string s(line);
  s.push_back('\n');
  write_all(to_child_, s.data(), s.size());
}

std::string ChildProcess::receive() const {
  auto line = read_line(from_child_, 60'000);
  if (!line) throw std::runtime_error("the child process (pid " + std::to_string(pid_) + ") exited unexpectedly");
  if (line->rfind("error: ", 0) == 0) throw std::runtime_error("in the child process: " + line->substr(7));
  return *line;
}

void ChildProcess::wait_until_sleeping() const {
  std::uint64_t deadline = now_ns() + 10'000'000'000ULL;
  for (;;) {
    char s = process_state(pid_);
    if (s == 'S') return;
    if (s == 'Z' || s == '?') throw std::runtime_error("the child process (pid " + std::to_string(pid_) + ") died");
    if (now_ns() > deadline) throw std::runtime_error("the child process did not go to sleep within 10 s");
  }
}

bool ChildProcess::pin_to_cpu(int cpu) const {
  if (usable_cpus() < 2) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<std::size_t>(cpu), &set);
  return ::sched_setaffinity(pid_, sizeof set, &set) == 0;
}

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

CpuPin::CpuPin(int cpu) {
  cpu_set_t old;
  CPU_ZERO(&old);
  if (usable_cpus() < 2 || ::sched_getaffinity(0, sizeof old, &old) != 0) return;
  saved_.assign(reinterpret_cast<unsigned char*>(&old), reinterpret_cast<unsigned char*>(&old) + sizeof old);  // NOLINT
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<std::size_t>(cpu), &set);
  pinned_ = ::sched_setaffinity(0, sizeof set, &set) == 0;
}

CpuPin::~CpuPin() {
  if (!pinned_) return;
  cpu_set_t old;
  std::memcpy(&old, saved_.data(), sizeof old);
  ::sched_setaffinity(0, sizeof old, &old);
}

void ParentLink::send(std::string_view line) const {
  std::string s(line);
  s.push_back('\n');
  write_all(4, s.data(), s.size());
}

std::optional<std::string> ParentLink::receive() const { return read_line(3, -1); }

ChildRole::ChildRole(const char* name, int (*fn)(const ParentLink&, const std::vector<std::string>&)) {
  roles()[name] = fn;
}

int run_child_role(int argc, char** argv) {
  if (argc < 3) return -1;
  std::string_view a1 = argv[1];  // NOLINT
  std::string_view a2 = argv[2];  // NOLINT
  if (a1.rfind("--child=", 0) != 0 || a2.rfind("--parent=", 0) != 0) return -1;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (std::to_string(::getppid()) != a2.substr(9)) return 3;  // the parent is already gone
  std::string role(a1.substr(8));
  ParentLink link;
  auto it = roles().find(role);
  if (it == roles().end()) {
    link.send("error: no child role '" + role + "'");
    return 2;
  }
  std::vector<std::string> args;
  for (int i = 3; i < argc; ++i) args.emplace_back(argv[i]);  // NOLINT
  try {
    link.send("ready");
    return it->second(link, args);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    try {
      link.send("error: " + msg);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the parent is gone; the exit code tells
    }
    return 1;
  }
}

std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::istringstream in{std::string(line)};
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

}  // namespace sealstore::bench
