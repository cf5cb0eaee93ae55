// The sealstore tour (first cut): one process puts a large matrix, a second
// process fetches it and reads it, then materializes it, and both print what
// their private memory did. The full notebook replay builds on the pool.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <string>

#include "sealstore/sealstore.hpp"

namespace {

std::uint64_t private_kib() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  std::uint64_t total = 0;
  while (std::getline(in, line)) {
    if (line.rfind("Private_Clean:", 0) == 0 || line.rfind("Private_Dirty:", 0) == 0) {
      std::istringstream ss(line.substr(line.find(':') + 1));
      std::uint64_t kb = 0;
      ss >> kb;
      total += kb;
    }
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t n = 4000;
  if (argc > 1) n = std::stoull(argv[1]);
  std::string name = fmt::format("tour-{}", ::getpid());
  sealstore::CreateOptions o;
  o.capacity = n * n * sizeof(double) + (std::uint64_t{8} << 20U);
  auto store = sealstore::Store::create(name, o);
  sealstore::NdArray<double> mat({n, n});
  for (std::uint64_t i = 0; i < n * n; ++i) mat.flat()[i] = static_cast<double>(i % 1000) / 7.0;
  auto ref = store.put(mat);
  fmt::print("owner (pid {}): put a {}x{} f64 matrix ({} MiB) once: {}\n", ::getpid(), n, n,
             n * n * sizeof(double) >> 20U, ref.to_string());
  std::fflush(stdout);
  pid_t child = ::fork();
  if (child == 0) {
    int rc = 1;
    try {
      auto s = sealstore::Store::attach(name);
      std::uint64_t p0 = private_kib();
      auto view = s.fetch(ref);
      auto m = view.as_ndarray<double>();
      double sum = 0;
      for (double x : m.flat()) sum += x;
      std::uint64_t p1 = private_kib();
      auto copy = s.materialize<sealstore::NdArray<double>>(ref);
      std::uint64_t p2 = private_kib();
      fmt::print("worker {} (pid {}): fetch + read every element (sum {:.1f}): private +{} KiB\n", s.myid(),
                 ::getpid(), sum, p1 - p0);
      fmt::print("worker {} (pid {}): materialize: private +{} MiB (one private copy)\n", s.myid(), ::getpid(),
                 (p2 - p1) >> 10U);
      rc = (p1 - p0 < 4096 && (p2 - p1) * 1024 >= n * n * sizeof(double)) ? 0 : 2;
    } catch (const std::exception& e) {
      fmt::print(stderr, "worker failed: {}\n", e.what());
    }
    std::fflush(stdout);
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  sealstore::Store::remove(name);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  fmt::print("{}\n", ok ? "ok: fetch copied nothing, materialize copied once" : "FAILED");
  return ok ? 0 : 1;
}
