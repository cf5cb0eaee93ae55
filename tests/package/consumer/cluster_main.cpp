// An installed libsealstore_cluster in use: two hosts under mpiexec; host
// 1's worker sums a vector put on host 0, and host 0 reads the result.
#include <sealstore/cluster.hpp>

#include <unistd.h>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

namespace {
double sum(sealstore::Context& cx, sealstore::RemoteRef v) {
  auto d = cx.store().fetch(v).as_span<double>();
  return std::accumulate(d.begin(), d.end(), 0.0);
}
SEALSTORE_REGISTER("consumer.sum", sum);
}  // namespace

int main(int argc, char** argv) {
  if (sealstore::Pool::is_worker(argc, argv)) return sealstore::Pool::worker_main(argc, argv);
  auto cluster = sealstore::Cluster::start("cluster-consumer-" + std::to_string(::getpid()));
  if (!cluster.is_driver()) return cluster.serve();
  auto w = cluster.add(1, 1);
  auto v = cluster.store().put(std::vector<double>(1000, 2.0));
  double s = cluster.call<double>(w.at(0), "consumer.sum", v);
  std::printf("host 1's worker %u summed host 0's vector: %g\n", w.at(0), s);
  return s == 2000.0 ? 0 : 1;
}
