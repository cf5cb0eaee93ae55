// sealstore::Cluster, one store per host joined by MPI. Launch one process
// per host (mpirun --map-by ppr:1:node, srun --ntasks-per-node=1): rank 0
// is the driver, and every rank owns its host's segment and pool and
// serves them. Workers are ordinary local processes of their host's pool;
// they never call MPI, yet everything below works in them too (see the
// free functions in sealstore::cluster), through the serving process of
// their host.
//
//   int main(int argc, char** argv) {
//     if (sealstore::Pool::is_worker(argc, argv)) return sealstore::Pool::worker_main(argc, argv);
//     sealstore::Cluster cluster = sealstore::Cluster::start("job");
//     if (!cluster.is_driver()) return cluster.serve();
//     ...  // the driver: add workers on any host, run_at, fetch any ref
//   }
//
// Worker ids are unique across hosts: host H's ids start at H * 1000000 + 1
// (its serving process), so refs' where() and whence() are too. A ref made
// on one host is fetched in any process of any host with Store::fetch: the
// first fetch on a host pulls the bytes once, by MPI, straight into a
// writer in that host's segment (a replica, sealed there, bound to the name
// "sealstore.replica/FROM/TAG:ID"); every later fetch there is local and
// zero-copy. Concurrent fetches of one ref on one host share one transfer.
// See docs/cluster.md.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealstore/pool.hpp"
#include "sealstore/store.hpp"

namespace sealstore {

namespace detail {
class ClusterImpl;
}

struct ClusterOptions {
  // Each host's pool and segment. The segment of host H is named
  // "NAME.hostH" (so that ranks sharing a machine do not collide), and
  // store.first_worker_id is set by the cluster.
  PoolOptions pool{};
  // The ranks that form the cluster: a duplicate is used, so sealstore's
  // messages never meet the program's. If the program initialised MPI
  // itself, sealstore neither initialises nor finalises it; it needs a
  // thread level of at least MPI_THREAD_SERIALIZED, and then the driver
  // must not call MPI on this communicator's ranks while the cluster runs
  // unless the level is MPI_THREAD_MULTIPLE.
  MPI_Comm communicator = MPI_COMM_WORLD;
  // Largest message of a transfer: a large object moves as chunks of this
  // many bytes, each received straight into the replica's writer.
  std::uint64_t chunk_bytes = std::uint64_t{16} << 20U;
  // A serving process with nothing to do sleeps between looks at MPI
  // (which cannot wake a sleeper; a request of its own host's processes
  // does, at once): for at most idle_sleep, and once it has been idle for
  // deep_idle_after, for at most deep_idle_sleep. A request from another
  // host to an idle one waits up to that sleep; shorter sleeps answer
  // sooner and cost more CPU (each look costs a wake-up; see
  // docs/cluster.md for the figures).
  std::chrono::microseconds idle_sleep{1000};
  std::chrono::microseconds deep_idle_sleep{20000};
  std::chrono::milliseconds deep_idle_after{200};
};

struct HostInfo {
  std::size_t host = 0;
  int rank = 0;            // in the cluster's communicator
  std::string hostname{};  // as the rank's gethostname() said
  std::string segment{};   // the host's segment ("NAME.hostH")
  std::uint32_t segment_tag = 0;
  WorkerId first_id = 0;  // the serving process's worker id: host * 1000000 + 1
};

// Object traffic of one host since the cluster started.
struct TransferStats {
  std::uint64_t transfers_in = 0;  // replicas received from other hosts
  std::uint64_t bytes_in = 0;
  std::uint64_t transfers_out = 0;  // objects sent to other hosts (one per replica made elsewhere)
  std::uint64_t bytes_out = 0;
  std::uint64_t broadcasts = 0;  // Cluster::replicate calls the host took part in
  std::uint64_t requests = 0;    // requests its serving process answered
};

// What any process attached to a host's segment can do, workers included.
// Each sends a request through the segment to the host's serving process
// and waits (asleep) for its answer; they throw InvalidArgument when the
// store is no host of a cluster.
namespace cluster {

// Whether store's segment is a host of a cluster. Does not block.
bool joined(const Store& store);
std::size_t hosts(const Store& store);
std::size_t this_host(const Store& store);
// The host worker id lives on (its segment's id range). Errors:
// InvalidArgument (an id of no host).
std::size_t host_of(const Store& store, WorkerId id);
HostInfo host_info(const Store& store, std::size_t host);

// Starts n workers on host; returns their ids. Errors: as Pool::add,
// InvalidArgument (no such host).
std::vector<WorkerId> add(Store& store, std::size_t n, std::size_t host);
// Stops worker id, on whatever host it is. Errors: as Pool::remove.
void remove(Store& store, WorkerId id);
// Every host's workers, ascending (as sealstore::workers(store)).
std::vector<WorkerId> workers(const Store& store);
// The pid of worker id (or of a host's serving process), in its host's
// pid namespace. Errors: InvalidArgument (no such live worker).
std::int32_t pid(Store& store, WorkerId id);

namespace detail {
RemoteRef run_at_packed(Store& store, WorkerId id, std::string_view fn, const sealstore::detail::ArgWriter& args);
}
// Pool::run_at for a worker of any host: the result lives on that host.
// Errors: as Pool::run_at.
template <class... A>
RemoteRef run_at(Store& store, WorkerId id, std::string_view fn, const A&... args) {
  sealstore::detail::ArgWriter w;
  (w.add(args), ...);
  return detail::run_at_packed(store, id, fn, w);
}

// Waits (asleep) until ref is sealed on the host that holds it, without
// moving its bytes. Errors: as Store::fetch.
void wait(Store& store, const RemoteRef& ref, std::chrono::nanoseconds timeout = kForever);
// Erases ref on its own host, and the replica on this one, if any.
// Replicas on other hosts stay until their segments go. Errors: as
// Store::erase.
void erase(Store& store, const RemoteRef& ref);
// Puts a replica of ref on every host that has none, by one MPI broadcast
// from ref's host (waiting until it is sealed there). Errors: as
// Store::fetch.
void replicate(Store& store, const RemoteRef& ref);
TransferStats stats(Store& store, std::size_t host);

}  // namespace cluster

class Cluster {
 public:
  // Joins the cluster: initialises MPI (with MPI_THREAD_MULTIPLE) unless
  // the program has; every rank of options.communicator must call it. Each
  // rank creates its host's segment "SEGMENT.hostH" with a pool on it
  // (workers added later) and learns every other host's. Collective:
  // blocks until every rank has. Errors: as Pool::create, InvalidArgument
  // (options; MPI's thread level too low), Corrupt (MPI failed; its
  // message given).
  static Cluster start(std::string_view segment, const ClusterOptions& options = {});

  Cluster(Cluster&&) noexcept;
  Cluster& operator=(Cluster&&) noexcept;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  // The driver's: stops every host (each stops its workers and removes its
  // segment), then leaves MPI (finalising it if start() initialised it).
  // A serving rank's: after serve() returned, the same for its own host.
  ~Cluster();

  // Rank 0: the process that runs the program's work.
  bool is_driver() const;
  // On a serving rank: serves its host until the driver's Cluster goes
  // (then returns 0, for main() to return). Errors: InvalidArgument (on
  // the driver, whose host is served by a thread of its own).
  int serve();

  std::size_t hosts() const;
  std::size_t host() const;  // this rank's
  std::size_t host_of(WorkerId id) const;
  HostInfo host_info(std::size_t host) const;
  // This host's segment and pool.
  Store& store();
  Pool& pool();
  WorkerId myid() const;

  std::vector<WorkerId> add(std::size_t n, std::size_t host);
  void remove(WorkerId id);
  std::vector<WorkerId> workers() const;

  // Queues fn on worker id of any host (id 1: runs it here, now) and
  // returns its result's ref, which lives on the worker's host; fetch it
  // like any ref. Errors: as Pool::run_at.
  template <class... A>
  RemoteRef run_at(WorkerId id, std::string_view fn, const A&... args) {
    if (id == myid()) return pool().run_at(id, fn, args...);  // here, in the calling thread
    return cluster::run_at(store(), id, fn, args...);
  }
  // run_at, then the result copied here, and erased. Errors: as Pool::call.
  template <class R = void, class... A>
  R call(WorkerId id, std::string_view fn, const A&... args) {
    RemoteRef ref = run_at(id, fn, args...);
    struct Erase {
      Store& s;
      RemoteRef r;
      ~Erase() { erase_quietly(s, r); }
    } erase{store(), ref};
    if constexpr (std::is_void_v<R>) {
      cluster::wait(store(), ref);
    } else {
      return store().template materialize<R>(ref);
    }
  }
  // fn on every worker of every host; waits for all; the result refs in
  // ascending worker order. If any fails, every result is erased and
  // WorkerFailed names each failure. Errors: as run_at, WorkerFailed.
  template <class... A>
  std::vector<RemoteRef> everywhere(std::string_view fn, const A&... args) {
    sealstore::detail::ArgWriter w;
    (w.add(args), ...);
    return broadcast(fn, w);
  }

  void replicate(const RemoteRef& ref);
  TransferStats stats(std::size_t host);

 private:
  explicit Cluster(std::unique_ptr<detail::ClusterImpl> impl) noexcept;
  detail::ClusterImpl& impl() const;
  std::vector<RemoteRef> broadcast(std::string_view fn, const sealstore::detail::ArgWriter& args);
  static void erase_quietly(Store& s, const RemoteRef& r) noexcept;

  std::unique_ptr<detail::ClusterImpl> impl_;
};

}  // namespace sealstore
