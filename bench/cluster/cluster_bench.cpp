// sealstore_cluster_bench: the cluster's benchmarks, run under MPI with two
// ranks (two hosts) on the transport mpiexec is given (the report uses TCP
// only: --mca btl self,tcp). Rank 0 runs the benchmarks; rank 1 serves its
// host, and a thread of it answers the raw MPI baseline.
//
// cluster/remote_fetch/SIZE: fetch, on host 0, of a SIZE object of host 1
// that host 0 has no replica of (the transfer into a writer in host 0's
// segment, then the seal and a pin), against a raw MPI exchange of the
// same bytes: a request to rank 1, and one MPI_Recv of SIZE bytes into
// pre-touched memory. Subject and baseline alternate in each iteration; the
// replica is erased (untimed) after each, so each fetch transfers.
// cluster/second_fetch: fetch + release of a ref of host 1 that host 0
// holds a replica of, against fetch + release of a local ref.
// cluster/fetch_by_8_workers/SIZE: 8 workers of host 0 fetch one ref of host
// 1 at once; counters say how many transfers it took (1 is the promise).
// cluster/idle_cpu: the CPU the serving rank and the driver (with its
// serving thread) use over 2 s when nothing happens, and while the driver
// waits 2 s in fetch for a remote task's result.
#include <mpi.h>
#include <sys/resource.h>
#include <unistd.h>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sealstore/cluster.hpp"

namespace {

using namespace sealstore;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20U;
constexpr int kBaselineTag = 7;

bool g_smoke = false;
std::chrono::microseconds g_idle_sleep{0};  // 0: the cluster's default
std::uint64_t g_chunk = 0;                  // 0: the cluster's default
Cluster* g_cluster = nullptr;
MPI_Comm g_base = MPI_COMM_NULL;

std::uint64_t ns_since(Clock::time_point t0) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
}

// ---- what host 1's workers run

Writer make_bytes(Context& cx, std::uint64_t n) {
  Writer w = cx.result_writer(n);
  std::span<std::byte> b = w.bytes();
  for (std::uint64_t i = 0; i < n; i += 4096) b[i] = static_cast<std::byte>(i / 4096);
  return w;
}
SEALSTORE_REGISTER("bench.make_bytes", make_bytes);

std::uint64_t fetch_size(Context& cx, RemoteRef r) { return cx.store().fetch(r).size(); }
SEALSTORE_REGISTER("bench.fetch_size", fetch_size);

int sleep_ms(std::uint32_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 0;
}
SEALSTORE_REGISTER("bench.sleep_ms", sleep_ms);

// ---- the raw baseline's server, on rank 1: a request (the size) in, the
// bytes out in one message. It waits for requests asleep between looks at
// MPI, with the serving loop's default sleeps (Open MPI's blocking receive
// would spin a core), so that both pay the same to notice a request.
void baseline_server() {
  std::vector<std::byte> buf;
  for (;;) {
    std::uint64_t size = 0;
    MPI_Request r = MPI_REQUEST_NULL;
    MPI_Irecv(&size, 1, MPI_UINT64_T, 0, kBaselineTag, g_base, &r);
    int done = 0;
    auto sleep = std::chrono::microseconds(20);
    auto idle_since = Clock::now();
    for (;;) {
      MPI_Test(&r, &done, MPI_STATUS_IGNORE);
      if (done != 0) break;
      std::this_thread::sleep_for(sleep);
      bool deep = Clock::now() - idle_since >= std::chrono::milliseconds(200);
      sleep = std::min<std::chrono::microseconds>(sleep * 2, std::chrono::microseconds(deep ? 20000 : 1000));
    }
    if (size == 0) return;
    if (buf.size() < size) {
      buf.resize(size);
      std::memset(buf.data(), 1, buf.size());
    }
    MPI_Send(buf.data(), static_cast<int>(size), MPI_BYTE, 0, kBaselineTag, g_base);
  }
}

std::uint64_t baseline_exchange(std::byte* into, std::uint64_t size) {
  auto t0 = Clock::now();
  MPI_Send(&size, 1, MPI_UINT64_T, 1, kBaselineTag, g_base);
  MPI_Recv(into, static_cast<int>(size), MPI_BYTE, 1, kBaselineTag, g_base, MPI_STATUS_IGNORE);
  return ns_since(t0);
}

// ---- helpers on the driver

WorkerId worker_of(std::size_t host, std::size_t k = 0) {
  Cluster& c = *g_cluster;
  std::vector<WorkerId> mine;
  for (WorkerId id : c.workers()) {
    if (c.host_of(id) == host) mine.push_back(id);
  }
  while (mine.size() <= k) {
    auto more = c.add(1, host);
    mine.insert(mine.end(), more.begin(), more.end());
  }
  return mine[k];
}

std::string replica_name(const RemoteRef& r, std::size_t from) {
  return fmt::format("sealstore.replica/{}/{:08x}:{:x}", from, r.segment_tag(), r.id());
}

void drop_replica(const RemoteRef& r) {
  Store& s = g_cluster->store();
  if (auto local = s.lookup(replica_name(r, 1))) s.erase(*local);
}

void remote_fetch(benchmark::State& state, std::uint64_t size) {
  Cluster& c = *g_cluster;
  Store& s = c.store();
  RemoteRef r = c.run_at(worker_of(1), "bench.make_bytes", size);
  cluster::wait(s, r);
  std::vector<std::byte> into(size);
  std::memset(into.data(), 0, size);
  drop_replica(r);
  (void)s.fetch(r);  // warm: the replica's pages in host 0's segment are touched once
  drop_replica(r);
  baseline_exchange(into.data(), size);
  std::uint64_t subject = 0;
  std::uint64_t baseline = 0;
  std::uint64_t n = 0;
  TransferStats before = c.stats(0);
  for (auto _ : state) {
    auto t0 = Clock::now();
    View v = s.fetch(r);
    std::uint64_t t = ns_since(t0);
    if (v.size() != size || v.bytes()[4096] != std::byte{1}) state.SkipWithError("the replica is not the object");
    v = View();
    drop_replica(r);
    std::uint64_t b = baseline_exchange(into.data(), size);
    subject += t;
    baseline += b;
    ++n;
    state.SetIterationTime(static_cast<double>(t) * 1e-9);
  }
  TransferStats after = c.stats(0);
  cluster::erase(s, r);
  state.counters["ns_per_op"] = static_cast<double>(subject) / static_cast<double>(n);
  state.counters["baseline_ns_per_op"] = static_cast<double>(baseline) / static_cast<double>(n);
  state.counters["bw_ratio"] = static_cast<double>(baseline) / static_cast<double>(subject);
  state.counters["transfers_per_fetch"] =
      static_cast<double>(after.transfers_in - before.transfers_in) / static_cast<double>(n);
  state.counters["size"] = static_cast<double>(size);
  state.SetBytesProcessed(static_cast<std::int64_t>(n * size));
}

void second_fetch(benchmark::State& state) {
  Cluster& c = *g_cluster;
  Store& s = c.store();
  RemoteRef r = c.run_at(worker_of(1), "bench.make_bytes", std::uint64_t{64} * 1024);
  (void)s.fetch(r);  // the one transfer
  RemoteRef local = s.put(std::vector<std::byte>(64 * 1024));
  TransferStats before = c.stats(0);
  constexpr int kBatch = 2000;
  std::vector<std::uint64_t> subject;
  std::vector<std::uint64_t> baseline;
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (int i = 0; i < kBatch; ++i) benchmark::DoNotOptimize(s.fetch(r).size());
    std::uint64_t t = ns_since(t0);
    t0 = Clock::now();
    for (int i = 0; i < kBatch; ++i) benchmark::DoNotOptimize(s.fetch(local).size());
    baseline.push_back(ns_since(t0) / kBatch);
    subject.push_back(t / kBatch);
    state.SetIterationTime(static_cast<double>(t) * 1e-9);
  }
  TransferStats after = c.stats(0);
  std::sort(subject.begin(), subject.end());
  std::sort(baseline.begin(), baseline.end());
  double sm = static_cast<double>(subject[subject.size() / 2]);
  double bm = static_cast<double>(baseline[baseline.size() / 2]);
  state.counters["median_ns"] = sm;
  state.counters["baseline_median_ns"] = bm;
  state.counters["median_time_ratio"] = sm / bm;
  state.counters["transfers"] = static_cast<double>(after.transfers_in - before.transfers_in);
  s.erase(local);
  cluster::erase(s, r);
}

void fetch_by_8_workers(benchmark::State& state, std::uint64_t size) {
  Cluster& c = *g_cluster;
  Store& s = c.store();
  std::vector<WorkerId> ws;
  for (std::size_t k = 0; k < 8; ++k) ws.push_back(worker_of(0, k));
  std::uint64_t transfers = 0;
  std::uint64_t sent = 0;
  std::uint64_t n = 0;
  for (auto _ : state) {
    state.PauseTiming();
    RemoteRef r = c.run_at(worker_of(1), "bench.make_bytes", size);
    cluster::wait(s, r);
    TransferStats in0 = c.stats(0);
    TransferStats out1 = c.stats(1);
    state.ResumeTiming();
    auto t0 = Clock::now();
    std::vector<RemoteRef> results;
    for (WorkerId w : ws) results.push_back(c.run_at(w, "bench.fetch_size", r));
    for (const RemoteRef& x : results) {
      if (s.materialize<std::uint64_t>(x) != size) state.SkipWithError("a worker saw another size");
    }
    state.SetIterationTime(static_cast<double>(ns_since(t0)) * 1e-9);
    state.PauseTiming();
    transfers += c.stats(0).transfers_in - in0.transfers_in;
    sent += c.stats(1).transfers_out - out1.transfers_out;
    ++n;
    for (const RemoteRef& x : results) s.erase(x);
    cluster::erase(s, r);
    state.ResumeTiming();
  }
  state.counters["transfers_per_round"] = static_cast<double>(transfers) / static_cast<double>(n);
  state.counters["sent_per_round"] = static_cast<double>(sent) / static_cast<double>(n);
  state.counters["workers"] = 8;
  state.counters["size"] = static_cast<double>(size);
}

// utime + stime of a process, in clock ticks (fields 14 and 15 of its stat).
double cpu_ticks(pid_t pid) {
  std::array<char, 1024> buf{};
  FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "r");
  if (f == nullptr) return 0;
  std::size_t n = std::fread(buf.data(), 1, buf.size() - 1, f);
  std::fclose(f);
  std::string_view text(buf.data(), n);
  std::size_t at = text.rfind(')');
  if (at == std::string_view::npos) return 0;
  double ticks = 0;
  int field = 2;
  for (std::size_t i = at + 1; i < text.size() && field < 15; ++i) {
    if (text[i] != ' ') continue;
    ++field;
    if (field == 14 || field == 15) ticks += std::strtod(text.data() + i + 1, nullptr);
  }
  return ticks;
}

bool g_baseline_running = true;
void stop_baseline() {
  if (!g_baseline_running) return;
  std::uint64_t stop = 0;
  MPI_Send(&stop, 1, MPI_UINT64_T, 1, kBaselineTag, g_base);
  g_baseline_running = false;
}

void idle_cpu(benchmark::State& state) {
  stop_baseline();  // its thread polls too: the figures are the cluster's alone
  std::this_thread::sleep_for(std::chrono::seconds(g_smoke ? 0 : 1));  // and its 1 GiB buffer is freed
  Cluster& c = *g_cluster;
  Store& s = c.store();
  pid_t server = cluster::pid(s, c.host_info(1).first_id);
  pid_t self = ::getpid();
  double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  auto window = std::chrono::milliseconds(g_smoke ? 200 : 2000);
  double secs = std::chrono::duration<double>(window).count();
  WorkerId w = worker_of(1);
  double idle_server = 0;
  double idle_driver = 0;
  double wait_driver = 0;
  double wait_server = 0;
  for (auto _ : state) {
    double s0 = cpu_ticks(server);
    double d0 = cpu_ticks(self);
    std::this_thread::sleep_for(window);
    idle_server = (cpu_ticks(server) - s0) / hz / secs * 100;
    idle_driver = (cpu_ticks(self) - d0) / hz / secs * 100;
    RemoteRef r = c.run_at(w, "bench.sleep_ms", static_cast<std::uint32_t>(window.count()));
    s0 = cpu_ticks(server);
    d0 = cpu_ticks(self);
    (void)s.materialize<int>(r);
    wait_server = (cpu_ticks(server) - s0) / hz / secs * 100;
    wait_driver = (cpu_ticks(self) - d0) / hz / secs * 100;
    cluster::erase(s, r);
  }
  state.counters["idle_server_cpu_percent"] = idle_server;
  state.counters["idle_driver_cpu_percent"] = idle_driver;
  state.counters["waiting_driver_cpu_percent"] = wait_driver;
  state.counters["waiting_server_cpu_percent"] = wait_server;
}

void register_all(std::uint64_t max_size) {
  for (std::uint64_t size : {64 * kMiB, 1024 * kMiB}) {
    if (!g_smoke && size > max_size) continue;
    std::uint64_t sz = g_smoke ? kMiB : size;
    std::string label = sz >= 1024 * kMiB ? fmt::format("{}G", sz / (1024 * kMiB)) : fmt::format("{}M", sz / kMiB);
    benchmark::RegisterBenchmark(("cluster/remote_fetch/" + label).c_str(),
                                 [sz](benchmark::State& st) { remote_fetch(st, sz); })
        ->UseManualTime()
        ->Iterations(g_smoke ? 1 : (sz > 256 * kMiB ? 4 : 12))
        ->Unit(benchmark::kMillisecond);
    if (g_smoke) break;
  }
  benchmark::RegisterBenchmark("cluster/second_fetch", second_fetch)
      ->UseManualTime()
      ->Iterations(g_smoke ? 1 : 50)
      ->Unit(benchmark::kMicrosecond);
  std::uint64_t sz = g_smoke ? kMiB : 64 * kMiB;
  benchmark::RegisterBenchmark(("cluster/fetch_by_8_workers/" + fmt::format("{}M", sz / kMiB)).c_str(),
                               [sz](benchmark::State& st) { fetch_by_8_workers(st, sz); })
      ->UseManualTime()
      ->Iterations(g_smoke ? 1 : 5)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("cluster/idle_cpu", idle_cpu)->Iterations(1)->Unit(benchmark::kSecond);
}

}  // namespace

int main(int argc, char** argv) {
  if (Pool::is_worker(argc, argv)) return Pool::worker_main(argc, argv);
  std::uint64_t max_size = 1024 * kMiB;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--smoke") {
      g_smoke = true;
    } else if (a.starts_with("--max_size_mib=")) {
      max_size = std::stoull(std::string(a.substr(15))) * kMiB;
    } else if (a.starts_with("--idle_sleep_us=")) {
      g_idle_sleep = std::chrono::microseconds(std::stoll(std::string(a.substr(16))));
    } else if (a.starts_with("--chunk_mib=")) {
      g_chunk = std::stoull(std::string(a.substr(12))) * kMiB;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rc = 0;
  {
    MPI_Comm_dup(MPI_COMM_WORLD, &g_base);
    ClusterOptions o;
    o.pool.store.capacity = (g_smoke ? 64 * kMiB : max_size + 256 * kMiB);
    o.pool.store.max_objects = 4096;
    // Pre-touched, as the baseline's buffer is: a first touch of a fresh
    // page of shared memory costs more than receiving into it.
    o.pool.store.prefault = true;
    if (g_idle_sleep.count() > 0) o.idle_sleep = g_idle_sleep;
    if (g_chunk > 0) o.chunk_bytes = g_chunk;
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
      fmt::print(stderr, "sealstore_cluster_bench runs on two ranks (mpiexec -n 2), not {}\n", size);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    Cluster c = Cluster::start(fmt::format("cluster-bench-{}", ::getpid()), o);
    if (!c.is_driver()) {
      std::thread base(baseline_server);
      rc = c.serve();
      base.join();
    } else {
      g_cluster = &c;
      int n = static_cast<int>(rest.size());
      benchmark::Initialize(&n, rest.data());
      benchmark::AddCustomContext("sealstore_transport", "MPI (mpiexec's settings; the report: --mca btl self,tcp)");
      register_all(max_size);
      benchmark::RunSpecifiedBenchmarks();
      benchmark::Shutdown();
      stop_baseline();
    }
  }  // the cluster stops (every host) before MPI goes
  MPI_Comm_free(&g_base);
  MPI_Finalize();
  return rc;
}
