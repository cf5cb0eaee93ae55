// The notebook across two hosts: run under MPI with two (or more) ranks,
// each rank a host with its own segment and workers. A string and a matrix
// put on one host are fetched on the other (one transfer per host, then
// local zero-copy views), a matrix made by a worker of the other host is
// fetched here, one ref is broadcast to every host, and a failure on the
// other host comes back as a clear error. Each step checks what it claims;
// the driver exits non-zero if any check fails.
//
//   mpirun -n 2 sealstore-cluster-tour [N]     (tools/run-cluster-tour does it)
//
// N is the matrix side (default 2000: 32 MB of f64).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sealstore/cluster.hpp"
#include "sealstore/sealstore.hpp"

namespace {

using namespace sealstore;

double mib(std::uint64_t bytes) { return static_cast<double>(bytes) / static_cast<double>(1U << 20U); }

// ---- what the workers run

std::string fetch_string(Context& cx, RemoteRef r) {
  std::string s(cx.store().fetch(r).as_string());
  fmt::print("    worker {} (host {}): fetch({}) = \"{}\"\n", cx.myid(), cluster::this_host(cx.store()), r.to_string(),
             s);
  std::fflush(stdout);
  return s;
}
SEALSTORE_REGISTER("ctour.fetch_string", fetch_string);

// The sum of the matrix's 5x5 corner, read through a view, and where the
// view's bytes are in this process (to show two workers share one copy).
struct Corner {
  double sum;
  std::uint64_t object_bytes;
  std::uint64_t replicas_here;
};
Corner read_corner(Context& cx, RemoteRef m) {
  View v = cx.store().fetch(m);
  NdView<double> c = v.as_ndarray<double>().slice({{0, 5}, {0, 5}});
  double s = 0;
  for (std::uint64_t a = 0; a < 5; ++a) {
    for (std::uint64_t b = 0; b < 5; ++b) s += c(a, b);
  }
  std::uint64_t replicas = 0;
  for (const ObjectInfo& o : cx.store().objects()) {
    for (const std::string& n : o.names) replicas += n.starts_with("sealstore.replica/") ? 1U : 0U;
  }
  fmt::print("    worker {} (host {}): corner sum {:.4f}\n", cx.myid(), cluster::this_host(cx.store()), s);
  std::fflush(stdout);
  return Corner{s, v.size(), replicas};
}
SEALSTORE_REGISTER("ctour.read_corner", read_corner);

NdArray<double> make_matrix(std::uint64_t n, double seed) {
  NdArray<double> m({n, n});
  for (std::uint64_t i = 0; i < n; ++i) {
    for (std::uint64_t j = 0; j < n; ++j) m(i, j) = seed + static_cast<double>(i) - static_cast<double>(j);
  }
  return m;
}
SEALSTORE_REGISTER("ctour.make_matrix", make_matrix);

std::vector<WorkerId> seen(Context& cx) { return cx.workers(); }
SEALSTORE_REGISTER("ctour.workers_seen", seen);

int refuse(std::string why) { throw std::runtime_error(why); }
SEALSTORE_REGISTER("ctour.refuse", refuse);

double corner_of(const NdArray<double>& m) {
  double s = 0;
  for (std::uint64_t a = 0; a < 5; ++a) {
    for (std::uint64_t b = 0; b < 5; ++b) s += m(a, b);
  }
  return s;
}

class Tour {
 public:
  Tour(Cluster& c, std::uint64_t n) : c_(c), n_(n) {}

  int run() {
    Store& s = c_.store();
    step(1, "one segment per host; two workers on each; every worker sees every worker");
    for (std::size_t h = 0; h < c_.hosts(); ++h) {
      HostInfo hi = c_.host_info(h);
      say("host {}: rank {} on {}, segment {}, ids from {}", h, hi.rank, hi.hostname, hi.segment, hi.first_id);
    }
    std::vector<WorkerId> here = c_.add(2, 0);
    std::vector<WorkerId> there = c_.add(2, 1);
    std::vector<WorkerId> all = c_.workers();
    say("workers() = [{}]", fmt::join(all, ", "));
    expect(all.size() >= 4, "four workers listed");
    for (WorkerId w : {here[0], there[0]}) {
      expect(c_.call<std::vector<WorkerId>>(w, "ctour.workers_seen") == all,
             fmt::format("worker {} on host {} sees the same list", w, c_.host_of(w)));
    }
    expect(c_.host_of(there[0]) == 1 && c_.host_of(here[0]) == 0, "host_of names each worker's host");
    explain("ids are unique across hosts: host H's start at H * 1000000 + 1");

    step(2, "put a string on host 0; a worker on host 1 fetches it");
    RemoteRef str = s.put(std::string("hello from host 0"));
    expect(c_.call<std::string>(there[0], "ctour.fetch_string", str) == "hello from host 0",
           "the worker on host 1 reads the string");
    explain("the ref names an object of host 0; host 1's serving process pulled a replica");

    step(3, fmt::format("put a {}x{} f64 matrix ({:.0f} MiB) on host 0; both workers of host 1 read its corner", n_, n_,
                        mib(n_ * n_ * 8)));
    NdArray<double> m = make_matrix(n_, 0.5);
    double want = corner_of(m);
    RemoteRef mref = s.put(m);
    m = NdArray<double>();
    TransferStats b1 = c_.stats(1);
    auto k1 = c_.call<Corner>(there[0], "ctour.read_corner", mref);
    auto k2 = c_.call<Corner>(there[1], "ctour.read_corner", mref);
    TransferStats a1 = c_.stats(1);
    say("host 1 received {} object(s), {:.1f} MiB", a1.transfers_in - b1.transfers_in, mib(a1.bytes_in - b1.bytes_in));
    expect(k1.sum == want && k2.sum == want, "both corners are the matrix's");
    expect(a1.transfers_in - b1.transfers_in == 1, "exactly one transfer to host 1");
    expect(a1.bytes_in - b1.bytes_in == n_ * n_ * 8, "the transfer carried the matrix once");
    explain("the first fetch on host 1 moved the bytes once, into its segment; the second was a local view");

    step(4, "a worker on host 1 makes a matrix; the driver on host 0 fetches it twice");
    RemoteRef made = c_.run_at(there[1], "ctour.make_matrix", n_, 2.0);
    TransferStats b0 = c_.stats(0);
    View v1 = s.fetch(made);
    View v2 = s.fetch(made);
    TransferStats a0 = c_.stats(0);
    expect(v1.as_ndarray<double>()(3, 1) == 4.0, "the matrix arrived intact");
    expect(v1.bytes().data() == v2.bytes().data(), "both fetches view the same replica: no copy");
    expect(a0.transfers_in - b0.transfers_in == 1, "one transfer for both fetches");
    say("result {} lives on host {}; host 0 holds a replica of {:.1f} MiB", made.to_string(), c_.host_of(made.where()),
        mib(v1.size()));
    v1 = View();
    v2 = View();
    explain("a result is a ref of the worker's host; fetching it anywhere works like any ref");

    step(5, "broadcast one ref from host 1 to every host");
    RemoteRef wide = c_.run_at(there[0], "ctour.make_matrix", std::uint64_t{500}, 1.0);
    std::vector<TransferStats> before;
    for (std::size_t h = 0; h < c_.hosts(); ++h) before.push_back(c_.stats(h));
    c_.replicate(wide);
    for (std::size_t h = 0; h < c_.hosts(); ++h) {
      TransferStats now = c_.stats(h);
      expect(now.broadcasts == before[h].broadcasts + 1, fmt::format("host {} took part in the broadcast", h));
    }
    auto k3 = c_.call<Corner>(here[0], "ctour.read_corner", wide);
    expect(c_.stats(0).transfers_in == before[0].transfers_in + 1, "host 0 got it by the broadcast, not again");
    expect(k3.object_bytes == 500 * 500 * 8, "a worker of host 0 reads it");
    explain("one MPI broadcast put a replica on every host");

    step(6, "a task that fails on host 1");
    RemoteRef bad = c_.run_at(there[0], "ctour.refuse", std::string("the input was empty"));
    try {
      s.fetch(bad);
      expect(false, "fetching a failed result throws");
    } catch (const Error& e) {
      say("fetch: {}", e.what());
      expect(e.code() == Errc::WorkerFailed && std::string(e.what()).find("the input was empty") != std::string::npos,
             "WorkerFailed, with the task's message");
    }
    explain("the failure crosses hosts with its code and message");

    step(7, "erase what the tour made; then every host stops");
    for (const RemoteRef& r : {str, mref, made, wide, bad}) cluster::erase(s, r);
    std::uint64_t objects = s.info().objects;
    say("host 0 holds {} object(s) after the erase: its cluster directory", objects);
    expect(objects == 1, "nothing but the directory is left on host 0");
    explain("erasing a ref removes it where it lives and its replica here");
    return failures_;
  }

  int failures() const { return failures_; }

 private:
  template <class... A>
  void say(fmt::format_string<A...> f, A&&... a) {
    fmt::print("  {}\n", fmt::format(f, std::forward<A>(a)...));
    std::fflush(stdout);
  }
  void step(int k, std::string_view title) {
    step_ = k;
    step_failures_ = 0;
    fmt::print("\n== step {} of 7: {}\n", k, title);
    std::fflush(stdout);
  }
  bool expect(bool ok, std::string_view what) {
    if (!ok) {
      ++failures_;
      ++step_failures_;
      fmt::print("  FAILED (step {}): {}\n", step_, what);
      std::fflush(stdout);
    }
    return ok;
  }
  void explain(std::string_view why) {
    fmt::print("  -> {}\n  {}\n", why, step_failures_ == 0 ? "ok" : "NOT OK");
    std::fflush(stdout);
  }

  Cluster& c_;
  std::uint64_t n_;
  int step_ = 0;
  int failures_ = 0;
  int step_failures_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (Pool::is_worker(argc, argv)) return Pool::worker_main(argc, argv);
  std::uint64_t n = 2000;
  if (argc > 1) {
    char* end = nullptr;
    n = std::strtoull(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || n < 10 || n > 20000) {
      fmt::print(stderr, "usage: mpirun -n 2 sealstore-cluster-tour [N]   (N: the matrix side, 10 to 20000)\n");
      return 2;
    }
  }
  try {
    ClusterOptions o;
    o.pool.store.capacity = std::max<std::uint64_t>(n * n * 8 * 3, std::uint64_t{64} << 20U);
    Cluster c = Cluster::start(fmt::format("cluster-tour-{}", ::getpid()), o);
    if (!c.is_driver()) return c.serve();
    if (c.hosts() < 2) {
      fmt::print(stderr, "the cluster tour needs two hosts: run it under mpirun -n 2\n");
      return 2;
    }
    std::vector<std::string> segments;
    for (std::size_t h = 0; h < c.hosts(); ++h) segments.push_back(c.host_info(h).segment);
    int failures = Tour(c, n).run();
    { Cluster gone = std::move(c); }  // stops every host
    // The other ranks remove theirs as they leave (on one machine we see them go).
    bool left = true;
    for (int i = 0; i < 500 && left; ++i) {
      left = false;
      for (const std::string& seg : segments) left = left || Store::exists(seg);
      if (left) ::usleep(10000);
    }
    fmt::print("\n== after the cluster stopped: {}\n",
               left ? "a segment was left behind (FAILED)" : "every host removed its segment");
    if (left) ++failures;
    fmt::print("\n{}\n", failures == 0 ? "cluster tour: every step did what it claims"
                                       : fmt::format("cluster tour: {} check(s) FAILED", failures));
    return failures == 0 ? 0 : 1;
  } catch (const Error& e) {
    fmt::print(stderr, "cluster tour: {}: {}\n", to_string(e.code()), e.what());
    return 1;
  }
}
