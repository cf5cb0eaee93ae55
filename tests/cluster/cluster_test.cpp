// The cluster across real MPI ranks: run under mpirun with two or more
// ranks (ctest does: see tests/CMakeLists.txt), each rank a host with its
// own segment, the transport forced onto TCP. Rank 0 runs the tests; the
// other ranks serve their hosts.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sealstore/cluster.hpp"
#include "support/errc.hpp"

// As EXPECT_ERRC, and the message contains text.
#define EXPECT_ERRC_HAS(stmt, errc, text)                  \
  do {                                                     \
    std::string msg_;                                      \
    EXPECT_ERRC_MSG(stmt, errc, msg_);                     \
    EXPECT_NE(msg_.find(text), std::string::npos) << msg_; \
  } while (0)

namespace {

using sealstore::Cluster;
using sealstore::Errc;
using sealstore::RemoteRef;
using sealstore::WorkerId;

Cluster* g_cluster = nullptr;
constexpr int kQueueDepth = 4;  // small, so that tests can fill a worker's queue

// ---- functions the workers run

// The sum of a remote (or local) vector, fetched in the worker.
double sum_of(sealstore::Context& cx, RemoteRef ref) {
  sealstore::View v = cx.store().fetch(ref);
  auto d = v.as_span<double>();
  return std::accumulate(d.begin(), d.end(), 0.0);
}
SEALSTORE_REGISTER("sum_of", sum_of);

// A vector made on the worker's host: n doubles, element i = seed + i.
std::vector<double> make_vector(std::uint64_t n, double seed) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), seed);
  return v;
}
SEALSTORE_REGISTER("make_vector", make_vector);

// Every worker of every host, as the worker sees them.
std::vector<std::uint32_t> seen_workers(sealstore::Context& cx) { return cx.workers(); }
SEALSTORE_REGISTER("seen_workers", seen_workers);

std::uint64_t host_here(sealstore::Context& cx) { return sealstore::cluster::this_host(cx.store()); }
SEALSTORE_REGISTER("host_here", host_here);

double sleep_then_sum(sealstore::Context& cx, std::uint32_t ms, RemoteRef ref) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return sum_of(cx, ref);
}
SEALSTORE_REGISTER("sleep_then_sum", sleep_then_sum);

int fails(std::string why) { throw std::runtime_error(why); }
SEALSTORE_REGISTER("fails", fails);

int sleeps(std::uint32_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 7;
}
SEALSTORE_REGISTER("sleeps", sleeps);

// A worker that runs a task on a worker of another host, and returns its
// result's first element.
double run_elsewhere(sealstore::Context& cx, WorkerId other) {
  RemoteRef r = sealstore::cluster::run_at(cx.store(), other, "make_vector", std::uint64_t{4}, 5.0);
  return cx.store().materialize<std::vector<double>>(r).at(0);
}
SEALSTORE_REGISTER("run_elsewhere", run_elsewhere);

class ClusterTest : public ::testing::Test {
 protected:
  Cluster& c = *g_cluster;
  sealstore::Store& s = g_cluster->store();
  // Workers on host h (added once per process, then reused).
  WorkerId worker_on(std::size_t h, std::size_t k = 0) {
    std::vector<WorkerId> mine;
    for (WorkerId id : c.workers()) {
      if (c.host_of(id) == h) mine.push_back(id);
    }
    while (mine.size() <= k) {
      auto more = c.add(1, h);
      mine.insert(mine.end(), more.begin(), more.end());
    }
    return mine[k];
  }
};

TEST_F(ClusterTest, EveryHostHasItsOwnSegmentAndIdRange) {
  ASSERT_GE(c.hosts(), 2U);
  EXPECT_TRUE(c.is_driver());
  EXPECT_EQ(c.host(), 0U);
  EXPECT_EQ(c.myid(), 1U);
  for (std::size_t h = 0; h < c.hosts(); ++h) {
    sealstore::HostInfo hi = c.host_info(h);
    EXPECT_EQ(hi.host, h);
    EXPECT_EQ(hi.rank, static_cast<int>(h));
    EXPECT_EQ(hi.first_id, h * 1000000 + 1);
    EXPECT_EQ(c.host_of(hi.first_id), h);
    EXPECT_NE(hi.segment_tag, 0U);
    EXPECT_TRUE(sealstore::Store::exists(hi.segment)) << hi.segment;
    for (std::size_t g = 0; g < h; ++g) EXPECT_NE(c.host_info(g).segment, hi.segment);
  }
  EXPECT_ERRC(c.host_of(0), Errc::InvalidArgument);
  EXPECT_ERRC(c.host_of(static_cast<WorkerId>(c.hosts() * 1000000 + 5)), Errc::InvalidArgument);
  EXPECT_ERRC(c.host_info(c.hosts()), Errc::InvalidArgument);
}

TEST_F(ClusterTest, WorkersOfEveryHostAreListedAscendingTheSameEverywhere) {
  WorkerId a = worker_on(1);
  WorkerId b = worker_on(0);
  EXPECT_EQ(c.host_of(a), 1U);
  EXPECT_EQ(c.host_of(b), 0U);
  std::vector<WorkerId> all = c.workers();
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
  EXPECT_NE(std::find(all.begin(), all.end(), a), all.end());
  EXPECT_NE(std::find(all.begin(), all.end(), b), all.end());
  // A worker on host 1 sees the same list (its serving process asks every host).
  EXPECT_EQ(c.call<std::vector<std::uint32_t>>(a, "seen_workers"), all);
  EXPECT_EQ(c.call<std::uint64_t>(a, "host_here"), 1U);
  EXPECT_EQ(c.call<std::uint64_t>(b, "host_here"), 0U);
  EXPECT_EQ(c.pool().workers(), all);
}

TEST_F(ClusterTest, ARefPutHereIsFetchedByAWorkerOfAnotherHostOnceThenLocally) {
  WorkerId w1 = worker_on(1, 0);
  WorkerId w2 = worker_on(1, 1);
  std::vector<double> data = make_vector(1 << 19, 1.0);  // 4 MiB
  double want = std::accumulate(data.begin(), data.end(), 0.0);
  RemoteRef ref = s.put(data);
  sealstore::TransferStats before = c.stats(1);
  EXPECT_EQ(c.call<double>(w1, "sum_of", ref), want);
  sealstore::TransferStats after = c.stats(1);
  EXPECT_EQ(after.transfers_in, before.transfers_in + 1);
  EXPECT_EQ(after.bytes_in, before.bytes_in + data.size() * sizeof(double));
  // Another worker of that host: local now, no transfer.
  EXPECT_EQ(c.call<double>(w2, "sum_of", ref), want);
  EXPECT_EQ(c.stats(1).transfers_in, after.transfers_in);
  s.erase(ref);
}

TEST_F(ClusterTest, AResultMadeOnAnotherHostIsFetchedHereZeroCopyAfterOneTransfer) {
  WorkerId w = worker_on(1);
  RemoteRef r = c.run_at(w, "make_vector", std::uint64_t{1000}, 2.0);
  EXPECT_EQ(r.where(), w);
  EXPECT_EQ(r.segment_tag(), c.host_info(1).segment_tag);
  sealstore::TransferStats before = c.stats(0);
  sealstore::View v = s.fetch(r);
  ASSERT_EQ(v.size(), 1000 * sizeof(double));
  EXPECT_EQ(v.as_span<double>()[999], 1001.0);
  EXPECT_EQ(c.stats(0).transfers_in, before.transfers_in + 1);
  sealstore::View again = s.fetch(r);
  EXPECT_EQ(again.bytes().data(), v.bytes().data());  // the same replica: no copy
  EXPECT_EQ(s.materialize<std::vector<double>>(r).at(0), 2.0);
  EXPECT_EQ(c.stats(0).transfers_in, before.transfers_in + 1);
  // The replica is an object of this host, named for the ref it copies.
  bool named = false;
  for (const sealstore::ObjectInfo& o : s.objects()) {
    for (const std::string& n : o.names) named = named || n.find("sealstore.replica/") == 0;
  }
  EXPECT_TRUE(named);
  v = sealstore::View();
  again = sealstore::View();
  sealstore::cluster::erase(s, r);
  EXPECT_ERRC(s.fetch(r, std::chrono::seconds(5)), Errc::NotFound);
}

TEST_F(ClusterTest, AReplicaErasedHereIsFetchedAgainByANewTransfer) {
  WorkerId w = worker_on(1);
  RemoteRef r = c.run_at(w, "make_vector", std::uint64_t{512}, 9.0);
  EXPECT_EQ(s.fetch(r).as_span<double>()[0], 9.0);  // this thread now knows the replica
  std::string name = fmt::format("sealstore.replica/1/{:08x}:{:x}", r.segment_tag(), r.id());
  std::optional<RemoteRef> replica = s.lookup(name);
  ASSERT_TRUE(replica.has_value()) << name;
  s.erase(*replica);
  sealstore::TransferStats before = c.stats(0);
  EXPECT_EQ(s.fetch(r).as_span<double>()[511], 520.0);
  EXPECT_EQ(c.stats(0).transfers_in, before.transfers_in + 1);
  std::optional<RemoteRef> again = s.lookup(name);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(*again == *replica);
  sealstore::cluster::erase(s, r);
}

TEST_F(ClusterTest, ConcurrentFetchesOnOneHostShareOneTransfer) {
  std::vector<WorkerId> ws;
  for (std::size_t k = 0; k < 4; ++k) ws.push_back(worker_on(1, k));
  std::vector<double> data = make_vector(1 << 20, 3.0);  // 8 MiB
  double want = std::accumulate(data.begin(), data.end(), 0.0);
  RemoteRef ref = s.put(data);
  sealstore::TransferStats in_before = c.stats(1);
  sealstore::TransferStats out_before = c.stats(0);
  std::vector<RemoteRef> results;
  for (WorkerId w : ws) results.push_back(c.run_at(w, "sum_of", ref));
  for (const RemoteRef& r : results) {
    EXPECT_EQ(s.materialize<double>(r), want);
    sealstore::cluster::erase(s, r);
  }
  EXPECT_EQ(c.stats(1).transfers_in, in_before.transfers_in + 1);
  EXPECT_EQ(c.stats(0).transfers_out, out_before.transfers_out + 1);
  s.erase(ref);
}

// A task queue fills up while the task at its head needs the host's
// serving loop (a remote fetch): the loop must not wait for room in the
// queue, or neither ever moves again.
TEST_F(ClusterTest, AFullTaskQueueDoesNotStopTheServingLoop) {
  WorkerId w = worker_on(1, 2);
  std::vector<double> data = make_vector(1 << 16, 0.5);
  double want = std::accumulate(data.begin(), data.end(), 0.0);
  RemoteRef ref = s.put(data);  // not on host 1 yet
  // The head task sleeps while the queue fills behind it, then needs the loop.
  std::vector<RemoteRef> results{c.run_at(w, "sleep_then_sum", std::uint32_t{300}, ref)};
  for (int i = 0; i < 3 * kQueueDepth; ++i) results.push_back(c.run_at(w, "sum_of", ref));
  for (const RemoteRef& r : results) {
    EXPECT_EQ(s.materialize<double>(r, std::chrono::seconds(60)), want);
    sealstore::cluster::erase(s, r);
  }
  s.erase(ref);
}

// Removing a worker waits for its queue to drain, and a queued task may
// need the serving loop: the removal must not hold the loop meanwhile.
TEST_F(ClusterTest, RemovingAWorkerLetsItsQueuedTasksReachOtherHosts) {
  WorkerId w = c.add(1, 1).at(0);
  std::vector<double> data = make_vector(1 << 16, 2.5);
  double want = std::accumulate(data.begin(), data.end(), 0.0);
  RemoteRef ref = s.put(data);  // not on host 1 yet: the task will have to ask for it
  RemoteRef first = c.run_at(w, "sleeps", std::uint32_t{300});
  RemoteRef r = c.run_at(w, "sum_of", ref);
  auto t0 = std::chrono::steady_clock::now();
  c.remove(w);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(8));
  EXPECT_EQ(s.materialize<int>(first), 7);
  EXPECT_EQ(s.materialize<double>(r), want);
  for (const RemoteRef& x : {first, r}) sealstore::cluster::erase(s, x);
  s.erase(ref);
}

TEST_F(ClusterTest, RunAtTheDriverRunsHere) {
  EXPECT_EQ(c.call<std::uint64_t>(1, "host_here"), 0U);
  EXPECT_EQ(c.call<std::uint64_t>(c.myid(), "host_here"), 0U);
}

TEST_F(ClusterTest, TryFetchOfAFailedRemoteRefThrowsItsError) {
  WorkerId w = worker_on(1);
  RemoteRef failed = c.run_at(w, "fails", std::string("not today"));
  EXPECT_ERRC(sealstore::cluster::wait(s, failed), Errc::WorkerFailed);  // failed by now, on host 1
  bool thrown = false;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!thrown && std::chrono::steady_clock::now() < until) {
    try {
      if (s.try_fetch(failed)) {
        ADD_FAILURE() << "try_fetch gave a view of a failed ref";
        break;
      }
    } catch (const sealstore::Error& e) {
      thrown = true;
      EXPECT_EQ(e.code(), Errc::WorkerFailed) << e.what();
      EXPECT_NE(std::string(e.what()).find("not today"), std::string::npos) << e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(thrown) << "try_fetch never reported the failure";
  sealstore::cluster::erase(s, failed);
}

// Two broadcasts asked for at once, both of this host's refs: the second
// waits its turn while the first is answered.
TEST_F(ClusterTest, ConcurrentBroadcastsOfThisHostsRefsBothComplete) {
  RemoteRef a = s.put(make_vector(1 << 15, 1.0));
  RemoteRef b = s.put(make_vector(1 << 15, 2.0));
  std::vector<sealstore::TransferStats> before;
  for (std::size_t h = 0; h < c.hosts(); ++h) before.push_back(c.stats(h));
  std::thread other([&] { c.replicate(b); });
  c.replicate(a);
  other.join();
  for (std::size_t h = 1; h < c.hosts(); ++h) {
    sealstore::TransferStats now = c.stats(h);
    EXPECT_EQ(now.broadcasts, before[h].broadcasts + 2) << "host " << h;
    EXPECT_EQ(now.transfers_in, before[h].transfers_in + 2) << "host " << h;
  }
  // The root counts what it sent: one object to each other host, twice.
  EXPECT_EQ(c.stats(0).transfers_out, before[0].transfers_out + 2 * (c.hosts() - 1));
  s.erase(a);
  s.erase(b);
}

TEST_F(ClusterTest, ErrorsCrossHostsWithTheirCodes) {
  WorkerId w = worker_on(1);
  RemoteRef failed = c.run_at(w, "fails", std::string("no luck"));
  EXPECT_ERRC_HAS(s.fetch(failed), Errc::WorkerFailed, "no luck");
  EXPECT_ERRC_HAS(sealstore::cluster::wait(s, failed), Errc::WorkerFailed, "no luck");
  sealstore::cluster::erase(s, failed);

  RemoteRef gone = c.run_at(w, "make_vector", std::uint64_t{8}, 0.0);
  sealstore::cluster::wait(s, gone);
  sealstore::cluster::erase(s, gone);
  EXPECT_ERRC(s.fetch(gone), Errc::NotFound);
  EXPECT_ERRC(s.materialize<std::vector<double>>(gone), Errc::NotFound);

  RemoteRef nowhere(0x12345678U, 42, 1, 1);
  EXPECT_ERRC_HAS(s.fetch(nowhere), Errc::NotFound, "no host");

  RemoteRef slow = c.run_at(w, "sleeps", std::uint32_t{1500});
  EXPECT_ERRC(s.fetch(slow, std::chrono::milliseconds(100)), Errc::Timeout);
  EXPECT_EQ(s.materialize<int>(slow), 7);
  sealstore::cluster::erase(s, slow);

  EXPECT_ERRC(c.run_at(static_cast<WorkerId>(c.hosts() * 1000000 + 2), "host_here"), Errc::InvalidArgument);
  EXPECT_ERRC(c.run_at(c.host_info(1).first_id, "host_here"), Errc::InvalidArgument);
  EXPECT_ERRC(c.run_at(w, "no_such_function"), Errc::NotFound);
  EXPECT_ERRC(c.run_at(w, "host_here", 3), Errc::InvalidArgument);
  EXPECT_ERRC(c.add(1, c.hosts()), Errc::InvalidArgument);
  EXPECT_ERRC(c.remove(static_cast<WorkerId>(1000000 + 999)), Errc::InvalidArgument);
}

TEST_F(ClusterTest, TryFetchStartsTheTransferAndNeverWaits) {
  WorkerId w = worker_on(1);
  RemoteRef r = c.run_at(w, "make_vector", std::uint64_t{1 << 16}, 1.0);
  sealstore::cluster::wait(s, r);
  std::optional<sealstore::View> v = s.try_fetch(r);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!v && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    v = s.try_fetch(r);
  }
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->as_span<double>()[10], 11.0);
  v.reset();
  sealstore::cluster::erase(s, r);
}

TEST_F(ClusterTest, WorkersRunTasksOnOtherHosts) {
  WorkerId here = worker_on(0);
  WorkerId there = worker_on(1);
  EXPECT_EQ(c.call<double>(here, "run_elsewhere", there), 5.0);
  EXPECT_EQ(c.call<double>(there, "run_elsewhere", here), 5.0);
}

TEST_F(ClusterTest, EverywhereRunsOnEveryWorkerOfEveryHost) {
  worker_on(0);
  worker_on(1);
  std::vector<WorkerId> all = c.workers();
  std::vector<RemoteRef> refs = c.everywhere("host_here");
  ASSERT_EQ(refs.size(), all.size());
  for (std::size_t k = 0; k < refs.size(); ++k) {
    EXPECT_EQ(refs[k].where(), all[k]);
    EXPECT_EQ(s.materialize<std::uint64_t>(refs[k]), c.host_of(all[k]));
    sealstore::cluster::erase(s, refs[k]);
  }
  EXPECT_ERRC_HAS(c.everywhere("fails", std::string("everywhere")), Errc::WorkerFailed, "everywhere");
}

TEST_F(ClusterTest, ReplicateBroadcastsToEveryHost) {
  WorkerId w = worker_on(1);
  RemoteRef r = c.run_at(w, "make_vector", std::uint64_t{1 << 18}, 4.0);  // 2 MiB on host 1
  std::vector<sealstore::TransferStats> before;
  for (std::size_t h = 0; h < c.hosts(); ++h) before.push_back(c.stats(h));
  c.replicate(r);
  for (std::size_t h = 0; h < c.hosts(); ++h) {
    sealstore::TransferStats now = c.stats(h);
    EXPECT_EQ(now.broadcasts, before[h].broadcasts + 1) << "host " << h;
    EXPECT_EQ(now.transfers_in, before[h].transfers_in + (h == 1 ? 0 : 1)) << "host " << h;
  }
  EXPECT_EQ(c.stats(1).transfers_out, before[1].transfers_out + (c.hosts() - 1));
  // Every host holds it now: fetching it here moves nothing.
  sealstore::View v = s.fetch(r);
  EXPECT_EQ(v.as_span<double>()[0], 4.0);
  EXPECT_EQ(c.stats(0).transfers_in, before[0].transfers_in + 1);
  v = sealstore::View();
  sealstore::cluster::erase(s, r);
  EXPECT_ERRC(c.replicate(RemoteRef()), Errc::InvalidArgument);
}

#ifdef SEALSTORE_MEMSTAT
std::string run_memstat(const std::string& args) {
  std::string out;
  FILE* p = ::popen((std::string(SEALSTORE_MEMSTAT) + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return "popen failed";
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), p) != nullptr) out += buf.data();
  int rc = ::pclose(p);
  return rc == 0 ? out : "exit " + std::to_string(rc) + ": " + out;
}

TEST_F(ClusterTest, MemstatListsTheReplicasAHostHoldsAndWhereEachCameFrom) {
  WorkerId w = worker_on(1);
  std::vector<double> data = make_vector(3000, 1.0);
  RemoteRef ref = s.put(data);
  EXPECT_EQ(c.call<double>(w, "sum_of", ref), std::accumulate(data.begin(), data.end(), 0.0));
  std::string host1 = c.host_info(1).segment;
  std::string tag_id = fmt::format("{:08x}:{:x}", ref.segment_tag(), ref.id());
  std::string text = run_memstat("--segment " + host1 + " replicas");
  EXPECT_NE(text.find(tag_id), std::string::npos) << text;
  EXPECT_NE(text.find("TOTAL"), std::string::npos) << text;
  std::string json = run_memstat("--segment " + host1 + " replicas --json");
  EXPECT_NE(json.find("\"copy_of\": \"" + tag_id + "\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"from_host\": 0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"cluster_host\": true"), std::string::npos) << json;
  sealstore::cluster::erase(s, ref);
}
#endif

TEST_F(ClusterTest, BadOptionsAreRefusedBeforeAnythingStarts) {
  sealstore::ClusterOptions o;
  o.chunk_bytes = 0;
  EXPECT_ERRC_HAS(Cluster::start("clustertest-bad", o), Errc::InvalidArgument, "chunk_bytes");
  o = {};
  o.chunk_bytes = (std::uint64_t{1} << 30U) + 1;
  EXPECT_ERRC_HAS(Cluster::start("clustertest-bad", o), Errc::InvalidArgument, "chunk_bytes");
  o = {};
  o.idle_sleep = std::chrono::microseconds(0);
  EXPECT_ERRC_HAS(Cluster::start("clustertest-bad", o), Errc::InvalidArgument, "idle");
  o = {};
  o.deep_idle_sleep = std::chrono::microseconds(10);
  EXPECT_ERRC_HAS(Cluster::start("clustertest-bad", o), Errc::InvalidArgument, "idle");
  Cluster held = std::move(*g_cluster);
  EXPECT_ERRC_HAS(g_cluster->hosts(), Errc::InvalidArgument, "moved from");
  *g_cluster = std::move(held);
  EXPECT_TRUE(c.is_driver());
  sealstore::CreateOptions bad;
  bad.first_worker_id = 0;
  EXPECT_ERRC_HAS(sealstore::Store::create("clustertest-badid", bad), Errc::InvalidArgument, "first_worker_id");
  bad.first_worker_id = sealstore::kMaxFirstWorkerId + 1;
  EXPECT_ERRC_HAS(sealstore::Store::create("clustertest-badid", bad), Errc::InvalidArgument, "first_worker_id");
}

TEST_F(ClusterTest, NotAClusterStoreSaysSo) {
  std::string name = "clustertest-plain-" + std::to_string(::getpid());
  {
    sealstore::Store plain = sealstore::Store::create(name);
    EXPECT_FALSE(sealstore::cluster::joined(plain));
    EXPECT_TRUE(sealstore::cluster::joined(s));
    EXPECT_ERRC(sealstore::cluster::hosts(plain), Errc::InvalidArgument);
    EXPECT_ERRC_HAS(plain.fetch(RemoteRef(s.info().segment_tag, 5, 1, 1)), Errc::NotFound, "another segment");
    EXPECT_ERRC(sealstore::cluster::stats(plain, 0), Errc::InvalidArgument);
  }
  sealstore::Store::remove(name);
}

// Run alone by tests/cluster/host_killed.sh (under mpiexec, with
// SEALSTORE_CLUSTER_KILL_TEST set): host 1's serving process is killed
// while the driver waits for a task running there. MPI (Open MPI's mpirun)
// then ends the whole job; the script checks that it ends, promptly, and
// what it leaves behind.
TEST_F(ClusterTest, KilledHostEndsTheJob) {
  if (std::getenv("SEALSTORE_CLUSTER_KILL_TEST") == nullptr) GTEST_SKIP() << "run by host_killed.sh";
  WorkerId w = worker_on(1);
  RemoteRef r = c.run_at(w, "sleeps", std::uint32_t{10000});
  pid_t server = sealstore::cluster::pid(s, c.host_info(1).first_id);
  std::printf("segments: %s %s\n", c.host_info(0).segment.c_str(), c.host_info(1).segment.c_str());
  std::printf("killing host 1's serving process (pid %d) while a fetch waits for its task\n", server);
  std::fflush(stdout);
  ASSERT_EQ(::kill(server, SIGKILL), 0);
  try {
    s.fetch(r);
    std::printf("the fetch returned\n");
  } catch (const sealstore::Error& e) {
    std::printf("the fetch failed: %s\n", e.what());
  }
  std::fflush(stdout);
}

}  // namespace

// How main() joins MPI, from its first argument:
//   (none)         sealstore initialises MPI, and finalises it
//   --own-mpi      the program initialises MPI itself (MPI_THREAD_MULTIPLE);
//                  sealstore must leave it initialised
//   --start-fails  the program initialises MPI; rank 0 takes host 1's
//                  segment name first, so host 1 cannot start: every rank's
//                  Cluster::start must throw, naming host 1
//   --thread-single  the program initialises MPI without threads: every
//                  rank's Cluster::start must refuse it
int start_fails(bool single) {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, single ? MPI_THREAD_SINGLE : MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // One name for every rank: the launcher's pid (ranks on one machine share it).
  std::string name = "clustertest-start-" + std::to_string(::getppid());
  std::optional<sealstore::Store> squatter;
  if (rank == 0 && !single) squatter.emplace(sealstore::Store::create(name + ".host1"));
  MPI_Barrier(MPI_COMM_WORLD);
  int ok = 0;
  try {
    Cluster c = Cluster::start(name);
    std::printf("rank %d: Cluster::start did not fail\n", rank);
  } catch (const sealstore::Error& e) {
    std::string want = single ? "MPI_THREAD_SERIALIZED" : "host 1";
    ok = e.code() == Errc::InvalidArgument && std::string(e.what()).find(want) != std::string::npos ? 1 : 0;
    std::printf("rank %d: %s: %s\n", rank, ok != 0 ? "refused as expected" : "refused, but not as expected", e.what());
  }
  std::fflush(stdout);
  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  squatter.reset();
  if (rank == 0 && !single) sealstore::Store::remove(name + ".host1");
  MPI_Barrier(MPI_COMM_WORLD);
  // Nothing of the failed start is left: no segment of this name.
  bool left = sealstore::Store::exists(name + ".host0") || sealstore::Store::exists(name + ".host1");
  if (left) std::printf("rank %d: a segment of the failed start was left\n", rank);
  MPI_Finalize();
  return all == 1 && !left ? 0 : 1;
}

int main(int argc, char** argv) {
  if (sealstore::Pool::is_worker(argc, argv)) return sealstore::Pool::worker_main(argc, argv);
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--start-fails" || mode == "--thread-single") return start_fails(mode == "--thread-single");
  bool own = mode == "--own-mpi";
  if (own) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  }
  int rc = 0;
  {
    sealstore::ClusterOptions o;
    o.pool.store.capacity = std::uint64_t{256} << 20U;
    // Several chunks per object in these tests, and not the same on every
    // rank: a receiver splits as its sender does.
    const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
    o.chunk_bytes = (rank != nullptr && std::string(rank) == "0" ? 1U : 3U) * (std::uint64_t{1} << 20U);
    o.pool.queue_depth = kQueueDepth;
    Cluster c = Cluster::start("clustertest-" + std::to_string(::getpid()), o);
    if (!c.is_driver()) {
      rc = c.serve();
    } else {
      g_cluster = &c;
      ::testing::InitGoogleTest(&argc, argv);
      rc = RUN_ALL_TESTS();
    }
  }
  if (own) {
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (finalized != 0) {
      std::printf("sealstore finalised MPI, which the program had initialised\n");
      return 1;
    }
    MPI_Finalize();
  }
  return rc;
}
