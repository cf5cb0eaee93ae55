// sealstore_bench: the benchmark suite, one binary. Every *_bench.cpp adds
// its benchmarks through a Registrar once the size caps are known; children
// for the multi-process benchmarks are this binary run with --child=ROLE.
#include <sys/utsname.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "sealstore/pool.hpp"
#include "support/bench_support.hpp"

namespace {

std::string first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string cpuinfo_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string mount_of(const std::string& dir) {
  std::ifstream in("/proc/mounts");
  std::string dev;
  std::string where;
  std::string type;
  std::string options;
  std::string found = "unknown";
  while (in >> dev >> where >> type >> options) {
    std::string rest;
    std::getline(in, rest);
    if (where == dir) found = type + " " + options;
  }
  return found;
}

void add_context() {
  using sealstore::bench::config;
  using sealstore::bench::meminfo_kib;
  utsname u{};
  ::uname(&u);
  std::string dir = config().directory.empty() ? "/dev/shm" : config().directory;
  benchmark::AddCustomContext("sealstore_max_size", std::to_string(config().max_size));
  benchmark::AddCustomContext("sealstore_max_objects", std::to_string(config().max_objects));
  benchmark::AddCustomContext("sealstore_segment_dir", dir);
  benchmark::AddCustomContext("sealstore_segment_mount", mount_of(dir));
  if (!config().huge_dir.empty()) {
    benchmark::AddCustomContext("sealstore_huge_dir", config().huge_dir);
    benchmark::AddCustomContext("sealstore_huge_mount", mount_of(config().huge_dir));
  }
  benchmark::AddCustomContext("kernel", std::string(u.sysname) + " " + u.release);
  benchmark::AddCustomContext("cpu_model", cpuinfo_model());
  benchmark::AddCustomContext("mem_total_kib", std::to_string(meminfo_kib("MemTotal")));
  benchmark::AddCustomContext("thp_enabled", first_line("/sys/kernel/mm/transparent_hugepage/enabled"));
  benchmark::AddCustomContext("thp_shmem_enabled", first_line("/sys/kernel/mm/transparent_hugepage/shmem_enabled"));
}

}  // namespace

int main(int argc, char** argv) {
  // The pool benchmarks' workers are this binary too.
  if (sealstore::Pool::is_worker(argc, argv)) return sealstore::Pool::worker_main(argc, argv);
  int child = sealstore::bench::run_child_role(argc, argv);
  if (child >= 0) return child;

  std::string command;
  for (int i = 0; i < argc; ++i) command += (i > 0 ? " " : "") + std::string(argv[i]);  // NOLINT
  benchmark::AddCustomContext("sealstore_command", command);

  sealstore::bench::parse_config(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  add_context();
  sealstore::bench::register_all();
  benchmark::RunSpecifiedBenchmarks();
  sealstore::bench::drop_cached();
  sealstore::bench::release_buffers();
  benchmark::Shutdown();
  if (sealstore::bench::any_benchmark_failed()) {
    std::fprintf(stderr, "sealstore_bench: at least one benchmark failed (see its error above)\n");
    return 1;
  }
  return 0;
}
