// The serving half of the cluster: one loop per host (the driver's in a
// thread of its own, a serving rank's in its main thread) that answers the
// requests of the host's processes (cluster_link.hpp) and of other hosts
// (MPI messages), and moves objects between hosts.
//
// Messages, on a duplicate of the program's communicator:
//   kTagCall  [CallHead][payload]    a request to another host's loop
//   kTagAnswer [AnswerHead][payload or error message]
// and object bytes on a second duplicate, tagged with the transfer's call
// id, in chunks of at most chunk_bytes. A fetch is two-phase: the holder
// answers with the object's size and type (keeping it pinned); the asker
// makes the replica's writer, posts a receive per chunk straight into it,
// and says Go; the holder then sends. Broadcasts run on a third duplicate,
// one at a time (rank 0 orders them), so every rank enters them in the
// same order.
#include "sealstore/cluster.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <thread>
#include <utility>

#include "pool/registry.hpp"
#include "store/cluster_link.hpp"
#include "store/session.hpp"

namespace sealstore {

namespace detail {

using cluster::append;
using cluster::ClusterMap;
using cluster::Kind;
using cluster::Reader;

namespace {

constexpr int kTagCall = 1;
constexpr int kTagAnswer = 2;
constexpr Kind kGo = Kind::Go;
constexpr Kind kCancel = Kind::Cancel;
constexpr Kind kBcastRun = Kind::BcastRun;
constexpr Kind kBcastGo = Kind::BcastGo;

struct CallHead {
  Kind kind;
  std::uint32_t reserved;
  std::uint64_t call;
};
struct AnswerHead {
  std::uint64_t call;
  std::uint32_t code;
  std::uint32_t reserved;
};
struct ObjectHead {
  std::uint64_t size;
  ValueType type;
  std::uint64_t chunk;  // the sender's chunk_bytes: the receiver splits the same way
};

[[noreturn]] void throw_mpi(int rc, std::string_view what) {
  std::array<char, MPI_MAX_ERROR_STRING> text{};
  int len = 0;
  MPI_Error_string(rc, text.data(), &len);
  throw Error(Errc::Corrupt,
              fmt::format("MPI failed in {}: {}", what, std::string_view(text.data(), static_cast<std::size_t>(len))));
}
void check(int rc, std::string_view what) {
  if (rc != MPI_SUCCESS) throw_mpi(rc, what);
}

std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};  // NOLINT: chars as bytes
}
template <class T>
std::vector<std::byte> pack(const T& v) {
  std::vector<std::byte> out;
  append(out, v);
  return out;
}
std::vector<std::byte> pack_ids(const std::vector<WorkerId>& ids) {
  std::vector<std::byte> out(ids.size() * sizeof(WorkerId));
  if (!ids.empty()) std::memcpy(out.data(), ids.data(), out.size());
  return out;
}
std::vector<WorkerId> unpack_ids(std::span<const std::byte> b) {
  std::vector<WorkerId> ids(b.size() / sizeof(WorkerId));
  if (!ids.empty()) std::memcpy(ids.data(), b.data(), ids.size() * sizeof(WorkerId));
  return ids;
}

// An answer: code 0 and a payload, or an error's code and message.
struct Answer {
  std::uint32_t code = 0;
  std::vector<std::byte> body;
  static Answer ok(std::vector<std::byte> b = {}) { return {0, std::move(b)}; }
  static Answer error(const Error& e) {
    // The message without what() prefixes (the code's name): the asker's Error adds it again.
    std::string_view w = e.what();
    std::string_view name = to_string(e.code());
    if (w.starts_with(name) && w.substr(name.size()).starts_with(": ")) w.remove_prefix(name.size() + 2);
    return {static_cast<std::uint32_t>(e.code()), {bytes_of(w).begin(), bytes_of(w).end()}};
  }
  static Answer error(Errc c, std::string_view message) {
    return {static_cast<std::uint32_t>(c), {bytes_of(message).begin(), bytes_of(message).end()}};
  }
};

}  // namespace

class ClusterImpl {
 public:
  ClusterImpl(std::string_view segment, const ClusterOptions& o);
  ~ClusterImpl();
  ClusterImpl(const ClusterImpl&) = delete;
  void init(std::string_view segment, const ClusterOptions& o);
  void release_mpi() noexcept;
  ClusterImpl& operator=(const ClusterImpl&) = delete;

  bool is_driver() const noexcept { return rank_ == 0; }
  int serve();
  void start_thread() {
    service_ = std::thread([this] {
      try {
        loop();
      } catch (const std::exception& e) {
        fmt::print(stderr, "sealstore cluster: host {} stopped serving: {}\n", host_, e.what());
        std::fflush(stderr);
        MPI_Abort(comm_, 1);
      }
    });
  }
  const ClusterMap& map() const noexcept { return map_; }
  std::size_t host() const noexcept { return host_; }
  Pool& pool() noexcept { return *pool_; }
  Store& store() noexcept { return pool_->store(); }

 private:
  // ---- the loop
  void loop();
  bool poll_mpi();
  bool poll_local(std::chrono::nanoseconds sleep);
  bool progress_transfers();
  bool recheck_held();
  void handle_event(const SealEvent& ev);
  void rescan_requests();
  void take_request(const RemoteRef& ref);

  // ---- requests of this host's processes
  void answer_local(const RemoteRef& reply, const Answer& a);
  void local_request(Kind kind, Reader& in, const RemoteRef& reply);
  void fetch_for_host(const RemoteRef& ref, const RemoteRef& reply);
  // Runs kind here if it is for this host, else asks host h's loop; done
  // gets the answer either way.
  void route(std::size_t h, Kind kind, std::vector<std::byte> payload, std::function<void(Answer)> done);
  void run_here(Kind kind, Reader& in, std::function<void(Answer)> done);
  bool submit_runs();
  void in_background(std::function<void(Answer)> done, std::function<Answer()> work);
  bool finish_background();
  void begin_stop(std::function<void(Answer)> done);
  void gather_workers(std::function<void(Answer)> done);
  void replicate(const RemoteRef& ref, std::function<void(Answer)> done);
  void next_broadcast();

  // ---- calls from other hosts
  void remote_call(int source, Kind kind, std::uint64_t call, Reader& in);
  void hold(int source, std::uint64_t call, const RemoteRef& ref, Kind kind);
  void run_broadcast(const RemoteRef& ref, std::int32_t root, std::optional<View> view, ObjectHead head);

  // ---- MPI
  std::uint64_t call(std::size_t h, Kind kind, std::span<const std::byte> payload, std::function<void(Answer)> done);
  void send(int dest, int tag, std::vector<std::byte> bytes);
  void answer_remote(int dest, std::uint64_t call, const Answer& a);
  int data_tag(std::uint64_t call) const noexcept {
    return static_cast<int>(call % static_cast<std::uint64_t>(tag_ub_));
  }
  std::vector<MPI_Request> post_chunks(bool receive, std::byte* at, std::uint64_t size, std::uint64_t chunk, int peer,
                                       int tag);

  ClusterOptions opts_;
  bool owns_mpi_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm data_ = MPI_COMM_NULL;
  MPI_Comm bcast_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;
  std::size_t host_ = 0;
  std::unique_ptr<Pool> pool_;
  Subscription sub_;
  ClusterMap map_;
  std::thread service_;
  bool stop_ = false;
  cluster::TransferStats stats_;
  std::uint64_t next_call_ = 1;
  std::uint64_t last_seq_ = 0;

  struct Outgoing {
    std::vector<std::byte> bytes;
    MPI_Request req = MPI_REQUEST_NULL;
  };
  std::list<Outgoing> outgoing_;
  std::map<std::uint64_t, std::function<void(Answer)>> calls_;  // asked of other hosts, by call id

  // A ref of this host another host asked for (or waits on), until sealed.
  struct Held {
    int source;
    std::uint64_t call;
    RemoteRef ref;
    Kind kind;  // Fetch, Wait or kBcastRun
  };
  std::deque<Held> held_;
  // Pinned for another host between its Fetch and its Go.
  std::map<std::pair<int, std::uint64_t>, View> offered_;
  struct Send {
    View view;
    std::vector<MPI_Request> reqs;
  };
  std::list<Send> sends_;
  // Replicas being received here, by the foreign ref's identity.
  struct Incoming {
    RemoteRef ref;
    std::vector<RemoteRef> replies;  // local askers to answer with the replica
    std::optional<Writer> writer;
    std::vector<MPI_Request> reqs;
    std::uint64_t size = 0;
    std::size_t from = 0;  // the host it comes from
  };
  std::map<std::pair<std::uint32_t, std::uint64_t>, Incoming> incoming_;
  // Tasks for this host's workers, waiting for room in a full queue.
  struct Run {
    WorkerId id;
    std::string function;
    std::vector<std::byte> args;
    std::function<void(Answer)> done;
  };
  std::deque<Run> runs_;
  // Adding and removing workers wait for processes: done by threads.
  struct BackgroundJob {
    std::thread thread;
    std::atomic<bool> finished{false};
    Answer answer;
    std::function<void(Answer)> done;
  };
  std::list<std::shared_ptr<BackgroundJob>> background_;
  // The driver's stop, waiting for the broadcasts in hand to finish.
  std::function<void(Answer)> stop_waiting_;
  // Broadcasts wait their turn at rank 0.
  std::deque<std::pair<RemoteRef, std::function<void(Answer)>>> bcast_queue_;
  bool bcast_busy_ = false;
};

// ---- set-up

ClusterImpl::ClusterImpl(std::string_view segment, const ClusterOptions& o) : opts_(o) {
  try {
    init(segment, o);
  } catch (...) {
    // What init() made is undone: this host's pool and segment, the
    // communicators, and MPI itself if init() started it.
    sub_ = Subscription();
    pool_.reset();
    release_mpi();
    throw;
  }
}

void ClusterImpl::release_mpi() noexcept {
  for (MPI_Comm* c : {&comm_, &data_, &bcast_}) {
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && finalized == 0) MPI_Finalize();
  owns_mpi_ = false;
}

void ClusterImpl::init(std::string_view segment, const ClusterOptions& o) {
  if (o.chunk_bytes == 0 || o.chunk_bytes > (std::uint64_t{1} << 30U)) {
    throw Error(Errc::InvalidArgument, fmt::format("chunk_bytes {} is out of range (1 byte to 1 GiB)", o.chunk_bytes));
  }
  if (o.idle_sleep.count() <= 0 || o.deep_idle_sleep < o.idle_sleep || o.deep_idle_after.count() < 0) {
    throw Error(Errc::InvalidArgument,
                fmt::format("idle sleeps {} us, then {} us after {} ms idle: each must be "
                            "positive and the second at least the first",
                            o.idle_sleep.count(), o.deep_idle_sleep.count(), o.deep_idle_after.count()));
  }
  int inited = 0;
  check(MPI_Initialized(&inited), "MPI_Initialized");
  int provided = 0;
  if (inited == 0) {
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    owns_mpi_ = true;
  } else {
    check(MPI_Query_thread(&provided), "MPI_Query_thread");
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    throw Error(Errc::InvalidArgument,
                "MPI runs at a thread level below MPI_THREAD_SERIALIZED; the cluster serves "
                "from a thread of its own (initialise MPI with MPI_Init_thread)");
  }
  check(MPI_Comm_dup(o.communicator, &comm_), "MPI_Comm_dup");
  check(MPI_Comm_dup(o.communicator, &data_), "MPI_Comm_dup");
  check(MPI_Comm_dup(o.communicator, &bcast_), "MPI_Comm_dup");
  for (MPI_Comm c : {comm_, data_, bcast_}) MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  void* ub = nullptr;
  int flag = 0;
  MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &flag);
  if (flag != 0 && ub != nullptr) tag_ub_ = *static_cast<int*>(ub);
  host_ = static_cast<std::size_t>(rank_);
  if (static_cast<std::size_t>(size_) > cluster::kMaxHosts) {
    throw Error(Errc::InvalidArgument,
                fmt::format("a cluster has at most {} hosts, not {}", cluster::kMaxHosts, size_));
  }

  // Every rank makes its host's segment; all learn whether all did.
  PoolOptions po = o.pool;
  po.store.first_worker_id = static_cast<std::uint32_t>(host_) * cluster::kIdsPerHost + 1;
  std::string name = fmt::format("{}.host{}", segment, host_);
  cluster::DirectoryHost mine{};
  std::string failure;
  try {
    pool_ = std::make_unique<Pool>(Pool::create(name, po));
    sub_ = pool_->store().subscribe();
    mine.segment_tag = pool_->store().info().segment_tag;
  } catch (const std::exception& e) {  // every rank must reach the exchange below, failed or not
    failure = fmt::format("host {} (rank {}): {}", host_, rank_, e.what());
  }
  mine.rank = rank_;
  mine.first_id = po.store.first_worker_id;
  std::array<char, 256> hn{};
  ::gethostname(hn.data(), hn.size() - 1);
  std::memcpy(mine.hostname.data(), hn.data(), std::min(strnlen(hn.data(), hn.size()), mine.hostname.size() - 1));
  std::memcpy(mine.segment.data(), name.data(), std::min(name.size(), mine.segment.size() - 1));
  std::vector<cluster::DirectoryHost> all(static_cast<std::size_t>(size_));
  check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm_), "MPI_Allgather");
  std::array<char, 512> why{};
  std::memcpy(why.data(), failure.data(), std::min(failure.size(), why.size() - 1));
  std::vector<char> whys(why.size() * static_cast<std::size_t>(size_));
  check(MPI_Allgather(why.data(), static_cast<int>(why.size()), MPI_CHAR, whys.data(), static_cast<int>(why.size()),
                      MPI_CHAR, comm_),
        "MPI_Allgather");
  for (int r = 0; r < size_; ++r) {
    const char* w = &whys[static_cast<std::size_t>(r) * why.size()];
    if (w[0] != '\0') {
      pool_.reset();
      throw Error(Errc::InvalidArgument,
                  fmt::format("the cluster could not start: {}", std::string_view(w, strnlen(w, why.size()))));
    }
  }
  map_.this_host = host_;
  map_.chunk_bytes = o.chunk_bytes;
  for (const auto& d : all) {
    map_.hosts.push_back(cluster::HostEntry{d.segment_tag,
                                            d.rank,
                                            d.first_id,
                                            {d.hostname.data(), strnlen(d.hostname.data(), d.hostname.size())},
                                            {d.segment.data(), strnlen(d.segment.data(), d.segment.size())}});
  }
  Store& s = pool_->store();
  std::vector<std::byte> dir = cluster::encode_directory(map_);
  s.bind(cluster::kDirectoryName, s.put_bytes(ValueType{}, dir));
  check(MPI_Barrier(comm_), "MPI_Barrier");  // every host can be asked from here on
}

ClusterImpl::~ClusterImpl() {
  if (service_.joinable()) {
    try {
      cluster::ask(store(), Kind::Stop, {});
    } catch (const Error& e) {
      fmt::print(stderr, "sealstore cluster: stopping the hosts failed: {}\n", e.what());
    }
    service_.join();
  }
  for (auto& job : background_) job->thread.join();  // a worker starting or stopping
  sub_ = Subscription();
  pool_.reset();  // stops this host's workers, removes its segment
  release_mpi();
}

int ClusterImpl::serve() {
  if (is_driver()) {
    throw Error(Errc::InvalidArgument, "serve() is for serving ranks: the driver's host is served by a thread");
  }
  loop();
  return 0;
}

// ---- the loop

void ClusterImpl::loop() {
  // Asleep between looks at MPI, which cannot wake a sleeper: the sleep
  // doubles from 20 us up to idle_sleep, and after deep_idle_after of
  // nothing up to deep_idle_sleep. A seal in the segment (a local request)
  // wakes it at once; anything happening starts it over.
  constexpr auto kFirst = std::chrono::microseconds(20);
  std::chrono::nanoseconds sleep = kFirst;
  auto idle_since = std::chrono::steady_clock::now();
  auto transferring = [this] {
    return !sends_.empty() || !outgoing_.empty() ||
           std::any_of(incoming_.begin(), incoming_.end(), [](const auto& i) { return !i.second.reqs.empty(); });
  };
  while (!stop_ || transferring()) {
    bool busy = poll_mpi();
    busy = progress_transfers() || busy;
    busy = recheck_held() || busy;
    busy = submit_runs() || busy;
    busy = finish_background() || busy;
    bool active = transferring();
    if (stop_) continue;
    busy = poll_local(busy || active ? std::chrono::nanoseconds::zero() : sleep) || busy;
    auto now = std::chrono::steady_clock::now();
    if (busy || active) {
      sleep = kFirst;
      idle_since = now;
    } else {
      // Waiting on workers (a full queue, a start or a stop): no deep sleep.
      bool deep = now - idle_since >= opts_.deep_idle_after && runs_.empty() && background_.empty();
      sleep = std::min<std::chrono::nanoseconds>(sleep * 2, deep ? opts_.deep_idle_sleep : opts_.idle_sleep);
    }
  }
}

bool ClusterImpl::poll_local(std::chrono::nanoseconds sleep) {
  bool any = false;
  std::optional<SealEvent> ev = sub_.next(sleep);
  while (ev) {
    any = true;
    handle_event(*ev);
    ev = sub_.try_next();
  }
  return any;
}

void ClusterImpl::handle_event(const SealEvent& ev) {
  if (ev.missed != 0) rescan_requests();
  if (ev.type == cluster::request_type()) take_request(ev.ref);
}

void ClusterImpl::rescan_requests() {
  for (const ObjectInfo& o : store().objects()) {
    if (o.state == ObjectState::Sealed && o.type == cluster::request_type()) take_request(o.ref);
  }
}

void ClusterImpl::take_request(const RemoteRef& ref) {
  Store& s = store();
  std::vector<std::byte> bytes;
  try {
    View v = s.fetch(ref);
    bytes.assign(v.bytes().begin(), v.bytes().end());
    v = View();
    s.erase(ref);
  } catch (const Error&) {
    return;  // taken already (a rescan), or erased by its asker
  }
  ++stats_.requests;
  RemoteRef reply;
  try {
    Reader in(bytes);
    auto head = in.get<cluster::RequestHead>();
    reply = head.reply;
    if (head.magic != cluster::kRequestMagic || head.payload_bytes > in.left()) {
      throw Error(Errc::InvalidArgument, "a cluster request of an unknown form");
    }
    Reader payload(in.take(head.payload_bytes));
    local_request(head.kind, payload, reply);
  } catch (const Error& e) {
    answer_local(reply, Answer::error(e));
  }
}

void ClusterImpl::answer_local(const RemoteRef& reply, const Answer& a) {
  if (reply.is_null()) return;
  std::vector<std::byte> out;
  append(out, cluster::ReplyHead{a.code, static_cast<std::uint32_t>(a.body.size())});
  out.insert(out.end(), a.body.begin(), a.body.end());
  try {
    store().put_bytes(reply, ValueType{}, out);
  } catch (const Error&) {  // the asker gave up (erased its reply ref) or is gone
  }
}

// ---- requests of this host's processes

void ClusterImpl::local_request(Kind kind, Reader& in, const RemoteRef& reply) {
  auto done = [this, reply](Answer a) { answer_local(reply, a); };
  auto host_of_ref = [this](const RemoteRef& r) -> std::size_t {
    std::optional<std::size_t> h = map_.host_of_tag(r.segment_tag());
    if (!h) {
      throw Error(Errc::NotFound, fmt::format("{} belongs to no host of this cluster (no segment has tag {:08x})",
                                              r.to_string(), r.segment_tag()));
    }
    return *h;
  };
  std::span<const std::byte> left = in.take(in.left());
  std::vector<std::byte> rest(left.begin(), left.end());
  Reader again(rest);
  switch (kind) {
    case Kind::Fetch: {
      auto ref = again.get<RemoteRef>();
      host_of_ref(ref);
      fetch_for_host(ref, reply);
      return;
    }
    case Kind::Wait:
    case Kind::Erase: {
      auto ref = again.get<RemoteRef>();
      std::size_t h = host_of_ref(ref);
      if (kind == Kind::Erase) {
        if (std::optional<RemoteRef> local = store().lookup(cluster::replica_name(ref, h))) {
          try {
            store().erase(*local);
          } catch (const Error&) {  // erased already
          }
        }
      }
      route(h, kind, rest, done);
      return;
    }
    case Kind::Workers: gather_workers(done); return;
    case Kind::Add: {
      again.get<std::uint64_t>();
      auto h = again.get<std::uint64_t>();
      if (h >= map_.hosts.size()) {
        throw Error(Errc::InvalidArgument, fmt::format("there is no host {}: the cluster has {} (0 to {})", h,
                                                       map_.hosts.size(), map_.hosts.size() - 1));
      }
      route(h, kind, rest, done);
      return;
    }
    case Kind::Remove:
    case Kind::RunAt:
    case Kind::Pids: route(map_.host_of_id(again.get<WorkerId>()), kind, rest, done); return;
    case Kind::Stats: {
      auto h = again.get<std::uint64_t>();
      if (h >= map_.hosts.size()) throw Error(Errc::InvalidArgument, fmt::format("there is no host {}", h));
      route(h, kind, rest, done);
      return;
    }
    case Kind::Replicate: {
      auto ref = again.get<RemoteRef>();
      host_of_ref(ref);
      if (rank_ == 0) {
        replicate(ref, done);
      } else {
        call(0, Kind::Replicate, rest, done);
      }
      return;
    }
    case Kind::Stop: {
      if (!is_driver()) throw Error(Errc::InvalidArgument, "only the driver stops the cluster");
      if (bcast_busy_ || !bcast_queue_.empty()) {
        stop_waiting_ = done;  // every rank must have left the broadcasts first
        return;
      }
      begin_stop(done);
      return;
    }
    default: throw Error(Errc::InvalidArgument, fmt::format("unknown cluster request kind {}", static_cast<int>(kind)));
  }
}

void ClusterImpl::fetch_for_host(const RemoteRef& ref, const RemoteRef& reply) {
  Store& s = store();
  std::size_t from = *map_.host_of_tag(ref.segment_tag());
  if (from == host_) return answer_local(reply, Answer::ok(pack(ref)));  // an object of this host: itself
  if (std::optional<RemoteRef> local = s.lookup(cluster::replica_name(ref, from))) {
    return answer_local(reply, Answer::ok(pack(*local)));
  }
  auto key = std::make_pair(ref.segment_tag(), ref.id());
  auto [it, fresh] = incoming_.try_emplace(key);
  if (!reply.is_null()) it->second.replies.push_back(reply);
  if (!fresh) return;  // one transfer for every asker
  it->second.ref = ref;
  it->second.from = from;
  int peer = map_.hosts[from].rank;
  call(from, Kind::Fetch, pack(ref), [this, key, peer](Answer a) {
    auto it2 = incoming_.find(key);
    if (it2 == incoming_.end()) return;
    Incoming& in = it2->second;
    auto fail_all = [&](const Answer& why) {
      for (const RemoteRef& r : in.replies) answer_local(r, why);
      incoming_.erase(it2);
    };
    if (a.code != 0) return fail_all(a);
    std::optional<std::uint64_t> call_id;
    try {
      Reader r(a.body);
      call_id = r.get<std::uint64_t>();
      auto head = r.get<ObjectHead>();
      if (head.chunk == 0) throw Error(Errc::Corrupt, "a transfer announced with chunks of 0 bytes");
      in.writer.emplace(store().create_writer(head.size, head.type));
      in.size = head.size;
      in.reqs = post_chunks(true, in.writer->bytes().data(), head.size, head.chunk, peer, data_tag(*call_id));
    } catch (const Error& e) {
      // The holder keeps the object pinned for us until told.
      if (call_id) {
        std::vector<std::byte> cancel;
        append(cancel, CallHead{kCancel, 0, 0});
        append(cancel, *call_id);
        send(peer, kTagCall, std::move(cancel));
      }
      return fail_all(Answer::error(
          e.code(), fmt::format("no replica of {} could be made here: {}", in.ref.to_string(), e.what())));
    }
    std::vector<std::byte> go;
    append(go, CallHead{kGo, 0, *call_id});
    send(peer, kTagCall, std::move(go));
  });
}

void ClusterImpl::route(std::size_t h, Kind kind, std::vector<std::byte> payload, std::function<void(Answer)> done) {
  if (h != host_) {
    call(h, kind, payload, std::move(done));
    return;
  }
  Reader in(payload);
  run_here(kind, in, std::move(done));
}

// Does a request of kind for this host, here, and answers through done:
// at once, or later for what must wait (a ref's seal, room in a worker's
// queue, a worker starting or stopping). The loop itself never waits on
// any of these: a task in a full queue, or a worker being stopped, may
// need this very loop to finish.
void ClusterImpl::run_here(Kind kind, Reader& in, std::function<void(Answer)> done) {
  Answer a;
  try {
    switch (kind) {
      case Kind::Wait: {
        std::uint64_t id = next_call_++;
        calls_.emplace(id, std::move(done));
        held_.push_back(Held{-1, id, in.get<RemoteRef>(), Kind::Wait});
        return;
      }
      case Kind::Erase: store().erase(in.get<RemoteRef>()); break;
      case Kind::Workers: a = Answer::ok(pack_ids(local_workers(store()))); break;
      case Kind::Add: {
        auto n = in.get<std::uint64_t>();
        in_background(std::move(done), [this, n] { return Answer::ok(pack_ids(pool_->add(n))); });
        return;
      }
      case Kind::Remove: {
        auto id = in.get<WorkerId>();
        in_background(std::move(done), [this, id] {
          pool_->remove(id);
          return Answer::ok();
        });
        return;
      }
      case Kind::Pids: {
        auto id = in.get<WorkerId>();
        a = Answer::ok(pack(id == store().myid() ? static_cast<std::int32_t>(::getpid()) : pool_->pid(id)));
        break;
      }
      case Kind::RunAt: {
        auto id = in.get<WorkerId>();
        auto name_len = in.get<std::uint32_t>();
        auto args_len = in.get<std::uint32_t>();
        std::string fn(in.text(name_len));
        std::span<const std::byte> args = in.take(args_len);
        if (id == store().myid()) {
          throw Error(Errc::InvalidArgument,
                      fmt::format("worker {} is host {}'s serving process: it runs no tasks (run them on its "
                                  "workers)",
                                  id, host_));
        }
        runs_.push_back(Run{id, std::move(fn), {args.begin(), args.end()}, std::move(done)});
        submit_runs();
        return;
      }
      case Kind::Stats: a = Answer::ok(pack(stats_)); break;
      default:
        throw Error(Errc::InvalidArgument, fmt::format("unknown cluster request kind {}", static_cast<int>(kind)));
    }
  } catch (const Error& e) {
    a = Answer::error(e);
  }
  done(std::move(a));
}

// Queues the tasks waiting for room, in order; those whose worker's queue
// is still full wait for the next look.
bool ClusterImpl::submit_runs() {
  bool any = false;
  while (!runs_.empty()) {
    Run& r = runs_.front();
    Answer a;
    try {
      std::optional<RemoteRef> ref = PoolAccess::try_submit_checked(*pool_, r.id, r.function, r.args);
      if (!ref) return any;
      a = Answer::ok(pack(*ref));
    } catch (const Error& e) {
      a = Answer::error(e);
    }
    auto done = std::move(r.done);
    runs_.pop_front();
    done(std::move(a));
    any = true;
  }
  return any;
}

void ClusterImpl::in_background(std::function<void(Answer)> done, std::function<Answer()> work) {
  auto job = std::make_shared<BackgroundJob>();
  job->done = std::move(done);
  job->thread = std::thread([job, work = std::move(work)] {
    Answer a;
    try {
      a = work();
    } catch (const Error& e) {
      a = Answer::error(e);
    } catch (const std::exception& e) {
      a = Answer::error(Errc::Corrupt, e.what());
    }
    job->answer = std::move(a);
    job->finished.store(true, std::memory_order_release);
  });
  background_.push_back(std::move(job));
}

bool ClusterImpl::finish_background() {
  bool any = false;
  for (auto it = background_.begin(); it != background_.end();) {
    std::shared_ptr<BackgroundJob> job = *it;
    if (!job->finished.load(std::memory_order_acquire)) {
      ++it;
      continue;
    }
    job->thread.join();
    it = background_.erase(it);
    job->done(std::move(job->answer));
    any = true;
  }
  return any;
}

void ClusterImpl::gather_workers(std::function<void(Answer)> done) {
  struct Gather {
    std::vector<WorkerId> ids;
    std::size_t left;
    std::optional<Answer> failed;
    std::function<void(Answer)> done;
  };
  auto g = std::make_shared<Gather>(Gather{local_workers(store()), map_.hosts.size() - 1, {}, std::move(done)});
  auto finish = [g] {
    if (g->failed) return g->done(*g->failed);
    std::sort(g->ids.begin(), g->ids.end());
    g->done(Answer::ok(pack_ids(g->ids)));
  };
  if (g->left == 0) return finish();
  for (std::size_t h = 0; h < map_.hosts.size(); ++h) {
    if (h == host_) continue;
    call(h, Kind::Workers, {}, [g, finish](const Answer& a) {
      if (a.code != 0) {
        g->failed = a;
      } else {
        std::vector<WorkerId> more = unpack_ids(a.body);
        g->ids.insert(g->ids.end(), more.begin(), more.end());
      }
      if (--g->left == 0) finish();
    });
  }
}

// At rank 0, one broadcast at a time: the root (the ref's host) waits for
// the seal, then has every rank join.
void ClusterImpl::replicate(const RemoteRef& ref, std::function<void(Answer)> done) {
  bcast_queue_.emplace_back(ref, std::move(done));
  if (!bcast_busy_) next_broadcast();
}

void ClusterImpl::begin_stop(std::function<void(Answer)> done) {
  auto pending = std::make_shared<std::size_t>(map_.hosts.size() - 1);
  auto finish = [this, done] {
    stop_ = true;
    done(Answer::ok());
  };
  if (*pending == 0) return finish();
  for (std::size_t h = 1; h < map_.hosts.size(); ++h) {
    call(h, Kind::Stop, {}, [pending, finish](const Answer&) {
      if (--*pending == 0) finish();
    });
  }
}

void ClusterImpl::next_broadcast() {
  if (bcast_queue_.empty()) {
    bcast_busy_ = false;
    if (stop_waiting_) begin_stop(std::exchange(stop_waiting_, nullptr));
    return;
  }
  bcast_busy_ = true;
  auto [r, d] = std::move(bcast_queue_.front());
  bcast_queue_.pop_front();
  std::size_t root = *map_.host_of_tag(r.segment_tag());
  auto finish = [this, d = std::move(d)](Answer a) {
    d(std::move(a));
    next_broadcast();
  };
  if (root == host_) {
    std::uint64_t id = next_call_++;
    calls_.emplace(id, std::move(finish));
    held_.push_back(Held{-1, id, r, kBcastRun});
  } else {
    call(root, kBcastRun, pack(r), std::move(finish));
  }
}

// ---- calls from other hosts

void ClusterImpl::remote_call(int source, Kind kind, std::uint64_t id, Reader& in) {
  switch (kind) {
    case Kind::Fetch:
    case Kind::Wait:
    case kBcastRun: hold(source, id, in.get<RemoteRef>(), kind); return;
    case kGo: {
      auto it = offered_.find({source, id});
      if (it == offered_.end()) return;
      Send& s = sends_.emplace_back(Send{std::move(it->second), {}});
      offered_.erase(it);
      // MPI takes a non-const buffer in older bindings; nothing is written.
      s.reqs = post_chunks(false, const_cast<std::byte*>(s.view.bytes().data()),  // NOLINT
                           s.view.size(), opts_.chunk_bytes, source, data_tag(id));
      return;
    }
    case kCancel: offered_.erase({source, in.get<std::uint64_t>()}); return;
    case kBcastGo: {
      auto ref = in.get<RemoteRef>();
      auto root = in.get<std::int32_t>();
      auto head = in.get<ObjectHead>();
      run_broadcast(ref, root, std::nullopt, head);
      return;
    }
    case Kind::Stop:
      answer_remote(source, id, Answer::ok());
      stop_ = true;
      return;
    case Kind::Replicate: {
      auto ref = in.get<RemoteRef>();
      replicate(ref, [this, source, id](const Answer& a) { answer_remote(source, id, a); });
      return;
    }
    default: run_here(kind, in, [this, source, id](const Answer& a) { answer_remote(source, id, a); });
  }
}

void ClusterImpl::hold(int source, std::uint64_t call, const RemoteRef& ref, Kind kind) {
  held_.push_back(Held{source, call, ref, kind});
  recheck_held();
}

// Answers the held refs that are sealed (or failed) now.
bool ClusterImpl::recheck_held() {
  // Those ready are taken out first: answering one may hold another.
  struct Ready {
    Held h;
    std::optional<View> v;
    Answer a;
  };
  std::vector<Ready> ready;
  for (auto it = held_.begin(); it != held_.end();) {
    Ready r{*it, {}, {}};
    try {
      r.v = store().try_fetch(r.h.ref);
      if (!r.v) {
        ++it;
        continue;
      }
    } catch (const Error& e) {
      r.a = Answer::error(e);
    }
    ready.push_back(std::move(r));
    it = held_.erase(it);
  }
  for (Ready& one : ready) {
    const Held& h = one.h;
    std::optional<View>& v = one.v;
    Answer& a = one.a;
    auto deliver = [&](Answer ans) {
      if (h.source < 0) {
        auto c = calls_.find(h.call);
        if (c == calls_.end()) return;
        auto fn = std::move(c->second);
        calls_.erase(c);
        fn(std::move(ans));
      } else {
        answer_remote(h.source, h.call, ans);
      }
    };
    if (a.code != 0) {
      deliver(a);
      continue;
    }
    ObjectHead head{v->size(), v->type(), opts_.chunk_bytes};
    if (h.kind == Kind::Wait) {
      deliver(Answer::ok(pack(head.size)));
    } else if (h.kind == Kind::Fetch) {
      std::vector<std::byte> body;
      append(body, h.call);
      append(body, head);
      offered_.emplace(std::make_pair(h.source, h.call), std::move(*v));
      deliver(Answer::ok(std::move(body)));
    } else {  // kBcastRun: this host is the root
      std::vector<std::byte> go;
      append(go, CallHead{kBcastGo, 0, 0});
      append(go, h.ref);
      append(go, static_cast<std::int32_t>(rank_));
      append(go, head);
      for (std::size_t r = 0; r < map_.hosts.size(); ++r) {
        if (r != host_) send(map_.hosts[r].rank, kTagCall, go);
      }
      try {
        run_broadcast(h.ref, rank_, std::move(v), head);
        deliver(Answer::ok());
      } catch (const Error& e) {
        deliver(Answer::error(e));
      }
    }
  }
  return !ready.empty();
}

// Every rank: the object's bytes from root into a replica here (a rank that
// has one, or no room, receives into scratch and says so).
void ClusterImpl::run_broadcast(const RemoteRef& ref, std::int32_t root, std::optional<View> view, ObjectHead head) {
  std::optional<Writer> w;
  std::vector<std::byte> scratch;
  std::string why;
  bool is_root = view.has_value();
  std::size_t from = *map_.host_of_tag(ref.segment_tag());
  // A host with a replica, or one on its way by a fetch, takes part all the same.
  bool have = store().lookup(cluster::replica_name(ref, from)).has_value() ||
              incoming_.count(std::make_pair(ref.segment_tag(), ref.id())) != 0;
  if (!is_root && !have) {
    try {
      w.emplace(store().create_writer(head.size, head.type));
    } catch (const Error& e) {
      why = fmt::format("host {}: {}", host_, e.what());
    }
  }
  std::uint64_t chunk = head.chunk;
  for (std::uint64_t off = 0; off < head.size; off += chunk) {
    auto n = static_cast<int>(std::min(chunk, head.size - off));
    std::byte* at = nullptr;
    if (is_root) {
      at = const_cast<std::byte*>(view->bytes().data()) + off;  // NOLINT: MPI only reads the root's buffer
    } else if (w) {
      at = w->bytes().data() + off;
    } else {
      scratch.resize(static_cast<std::size_t>(n));
      at = scratch.data();
    }
    check(MPI_Bcast(at, n, MPI_BYTE, root, bcast_), "MPI_Bcast");
  }
  int made = 0;
  if (w) {
    try {
      RemoteRef local = w->ref();
      std::move(*w).seal();
      store().bind(cluster::replica_name(ref, from), local);
      ++stats_.transfers_in;
      stats_.bytes_in += head.size;
      made = 1;
    } catch (const Error& e) {  // (every rank must reach the reduction below)
      why = fmt::format("host {}: {}", host_, e.what());
    }
  }
  ++stats_.broadcasts;
  std::array<int, 2> mine{why.empty() ? 0 : 1, made};
  std::array<int, 2> all{};
  check(MPI_Allreduce(mine.data(), all.data(), 2, MPI_INT, MPI_SUM, bcast_), "MPI_Allreduce");
  if (!why.empty()) fmt::print(stderr, "sealstore cluster: broadcast of {} missed {}\n", ref.to_string(), why);
  if (is_root) {
    stats_.transfers_out += static_cast<std::uint64_t>(all[1]);
    stats_.bytes_out += static_cast<std::uint64_t>(all[1]) * head.size;
    if (all[0] != 0) {
      throw Error(Errc::OutOfMemory, fmt::format("the broadcast of {} reached only some hosts: {} could not keep it "
                                                 "(see their stderr)",
                                                 ref.to_string(), all[0]));
    }
  }
}

// ---- MPI

std::vector<MPI_Request> ClusterImpl::post_chunks(bool receive, std::byte* at, std::uint64_t size, std::uint64_t chunk,
                                                  int peer, int tag) {
  std::vector<MPI_Request> reqs;
  for (std::uint64_t off = 0; off < size || (size == 0 && reqs.empty()); off += chunk) {
    auto n = static_cast<int>(std::min(chunk, size - off));
    MPI_Request r = MPI_REQUEST_NULL;
    int rc = receive ? MPI_Irecv(at + off, n, MPI_BYTE, peer, tag, data_, &r)
                     : MPI_Isend(at + off, n, MPI_BYTE, peer, tag, data_, &r);
    check(rc, receive ? "MPI_Irecv" : "MPI_Isend");
    reqs.push_back(r);
    if (size == 0) break;
  }
  return reqs;
}

bool ClusterImpl::progress_transfers() {
  bool any = false;
  for (auto it = outgoing_.begin(); it != outgoing_.end();) {
    int done = 0;
    check(MPI_Test(&it->req, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done != 0) {
      it = outgoing_.erase(it);
      any = true;
    } else {
      ++it;
    }
  }
  for (auto it = sends_.begin(); it != sends_.end();) {
    int done = 0;
    check(MPI_Testall(static_cast<int>(it->reqs.size()), it->reqs.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (done != 0) {
      ++stats_.transfers_out;
      stats_.bytes_out += it->view.size();
      it = sends_.erase(it);
      any = true;
    } else {
      ++it;
    }
  }
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    Incoming& in = it->second;
    int done = 0;
    if (in.reqs.empty()) {
      ++it;
      continue;
    }
    check(MPI_Testall(static_cast<int>(in.reqs.size()), in.reqs.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (done == 0) {
      ++it;
      continue;
    }
    any = true;
    RemoteRef local = in.writer->ref();
    Answer a;
    try {
      std::move(*in.writer).seal();
      store().bind(cluster::replica_name(in.ref, in.from), local);
      ++stats_.transfers_in;
      stats_.bytes_in += in.size;
      a = Answer::ok(pack(local));
    } catch (const Error& e) {
      a = Answer::error(e);
    }
    for (const RemoteRef& r : in.replies) answer_local(r, a);
    it = incoming_.erase(it);
  }
  return any;
}

bool ClusterImpl::poll_mpi() {
  bool any = false;
  for (;;) {
    int flag = 0;
    MPI_Message msg = MPI_MESSAGE_NULL;
    MPI_Status st;
    check(MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &msg, &st), "MPI_Improbe");
    if (flag == 0) return any;
    any = true;
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    std::vector<std::byte> buf(static_cast<std::size_t>(n));
    check(MPI_Mrecv(buf.data(), n, MPI_BYTE, &msg, MPI_STATUS_IGNORE), "MPI_Mrecv");
    Reader in(buf);
    if (st.MPI_TAG == kTagAnswer) {
      auto head = in.get<AnswerHead>();
      auto it = calls_.find(head.call);
      if (it == calls_.end()) continue;
      auto done = std::move(it->second);
      calls_.erase(it);
      std::span<const std::byte> body = in.take(in.left());
      try {
        done(Answer{head.code, {body.begin(), body.end()}});
      } catch (const Error& e) {
        fmt::print(stderr, "sealstore cluster: host {}: handling an answer failed: {}\n", host_, e.what());
      }
    } else {
      auto head = in.get<CallHead>();
      try {
        remote_call(st.MPI_SOURCE, head.kind, head.call, in);
      } catch (const Error& e) {
        answer_remote(st.MPI_SOURCE, head.call, Answer::error(e));
      }
    }
  }
}

std::uint64_t ClusterImpl::call(std::size_t h, Kind kind, std::span<const std::byte> payload,
                                std::function<void(Answer)> done) {
  std::uint64_t id = next_call_++;
  std::vector<std::byte> m;
  append(m, CallHead{kind, 0, id});
  m.insert(m.end(), payload.begin(), payload.end());
  calls_.emplace(id, std::move(done));
  send(map_.hosts[h].rank, kTagCall, std::move(m));
  return id;
}

void ClusterImpl::answer_remote(int dest, std::uint64_t call, const Answer& a) {
  std::vector<std::byte> m;
  append(m, AnswerHead{call, a.code, 0});
  m.insert(m.end(), a.body.begin(), a.body.end());
  send(dest, kTagAnswer, std::move(m));
}

void ClusterImpl::send(int dest, int tag, std::vector<std::byte> bytes) {
  Outgoing& o = outgoing_.emplace_back();
  o.bytes = std::move(bytes);
  check(MPI_Isend(o.bytes.data(), static_cast<int>(o.bytes.size()), MPI_BYTE, dest, tag, comm_, &o.req), "MPI_Isend");
}

}  // namespace detail

// ---- the free functions (any process of a host)

namespace cluster {

namespace {
const sealstore::detail::cluster::ClusterMap& map_of(const Store& store) {
  const auto* m = sealstore::detail::cluster::cluster_of(store);
  if (m == nullptr) throw Error(Errc::InvalidArgument, fmt::format("'{}' is not a host of a cluster", store.name()));
  return *m;
}
using sealstore::detail::cluster::ask;
using sealstore::detail::cluster::Kind;
using sealstore::detail::cluster::Reader;
}  // namespace

bool joined(const Store& store) { return sealstore::detail::cluster::cluster_of(store) != nullptr; }
std::size_t hosts(const Store& store) { return map_of(store).hosts.size(); }
std::size_t this_host(const Store& store) { return map_of(store).this_host; }

std::size_t host_of(const Store& store, WorkerId id) { return map_of(store).host_of_id(id); }

HostInfo host_info(const Store& store, std::size_t host) {
  const auto& m = map_of(store);
  if (host >= m.hosts.size()) {
    throw Error(Errc::InvalidArgument, fmt::format("there is no host {}: the cluster has {}", host, m.hosts.size()));
  }
  const auto& e = m.hosts[host];
  return HostInfo{host, e.rank, e.hostname, e.segment, e.segment_tag, e.first_id};
}

std::vector<WorkerId> add(Store& store, std::size_t n, std::size_t host) {
  std::vector<std::byte> p;
  sealstore::detail::cluster::append(p, std::uint64_t{n});
  sealstore::detail::cluster::append(p, std::uint64_t{host});
  return sealstore::detail::unpack_ids(ask(store, Kind::Add, p));
}

void remove(Store& store, WorkerId id) { ask(store, Kind::Remove, sealstore::detail::pack(id)); }

std::vector<WorkerId> workers(const Store& store) { return sealstore::workers(store); }

std::int32_t pid(Store& store, WorkerId id) {
  std::vector<std::byte> a = ask(store, Kind::Pids, sealstore::detail::pack(id));
  return Reader(a).get<std::int32_t>();
}

RemoteRef detail::run_at_packed(Store& store, WorkerId id, std::string_view fn,
                                const sealstore::detail::ArgWriter& args) {
  sealstore::detail::check_call(fn, args);
  std::vector<std::byte> p;
  sealstore::detail::cluster::append(p, id);
  sealstore::detail::cluster::append(p, static_cast<std::uint32_t>(fn.size()));
  sealstore::detail::cluster::append(p, static_cast<std::uint32_t>(args.bytes().size()));
  p.insert(p.end(), sealstore::detail::bytes_of(fn).begin(), sealstore::detail::bytes_of(fn).end());
  p.insert(p.end(), args.bytes().begin(), args.bytes().end());
  std::vector<std::byte> a = ask(store, Kind::RunAt, p);
  return Reader(a).get<RemoteRef>();
}

void wait(Store& store, const RemoteRef& ref, std::chrono::nanoseconds timeout) {
  if (ref.is_null() || ref.segment_tag() == store.session()->geo().segment_tag) {
    store.fetch(ref, timeout);
    return;
  }
  map_of(store);
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout != kForever) deadline = std::chrono::steady_clock::now() + timeout;
  ask(store, Kind::Wait, sealstore::detail::pack(ref), deadline);
}

void erase(Store& store, const RemoteRef& ref) {
  if (ref.is_null() || ref.segment_tag() == store.session()->geo().segment_tag) {
    store.erase(ref);
    return;
  }
  ask(store, Kind::Erase, sealstore::detail::pack(ref));
}

void replicate(Store& store, const RemoteRef& ref) {
  if (ref.is_null()) throw Error(Errc::InvalidArgument, "the null ref names no object");
  ask(store, Kind::Replicate, sealstore::detail::pack(ref));
}

TransferStats stats(Store& store, std::size_t host) {
  std::vector<std::byte> a = ask(store, Kind::Stats, sealstore::detail::pack(std::uint64_t{host}));
  auto s = Reader(a).get<sealstore::detail::cluster::TransferStats>();
  return TransferStats{s.transfers_in, s.bytes_in, s.transfers_out, s.bytes_out, s.broadcasts, s.requests};
}

}  // namespace cluster

// ---- Cluster

Cluster::Cluster(std::unique_ptr<detail::ClusterImpl> impl) noexcept : impl_(std::move(impl)) {}
Cluster::Cluster(Cluster&&) noexcept = default;
Cluster& Cluster::operator=(Cluster&&) noexcept = default;
Cluster::~Cluster() = default;

Cluster Cluster::start(std::string_view segment, const ClusterOptions& options) {
  auto impl = std::make_unique<detail::ClusterImpl>(segment, options);
  if (impl->is_driver()) impl->start_thread();
  return Cluster(std::move(impl));
}

detail::ClusterImpl& Cluster::impl() const {
  if (!impl_) throw Error(Errc::InvalidArgument, "this Cluster is empty (it was moved from)");
  return *impl_;
}

bool Cluster::is_driver() const { return impl().is_driver(); }
int Cluster::serve() { return impl().serve(); }
std::size_t Cluster::hosts() const { return impl().map().hosts.size(); }
std::size_t Cluster::host() const { return impl().host(); }
std::size_t Cluster::host_of(WorkerId id) const { return cluster::host_of(impl().store(), id); }
HostInfo Cluster::host_info(std::size_t host) const { return cluster::host_info(impl().store(), host); }
Store& Cluster::store() { return impl().store(); }
Pool& Cluster::pool() { return impl().pool(); }
WorkerId Cluster::myid() const { return impl().store().myid(); }
std::vector<WorkerId> Cluster::add(std::size_t n, std::size_t host) { return cluster::add(store(), n, host); }
void Cluster::remove(WorkerId id) { cluster::remove(store(), id); }
std::vector<WorkerId> Cluster::workers() const { return sealstore::workers(impl().store()); }
void Cluster::replicate(const RemoteRef& ref) { cluster::replicate(store(), ref); }
TransferStats Cluster::stats(std::size_t host) { return cluster::stats(store(), host); }

void Cluster::erase_quietly(Store& s, const RemoteRef& r) noexcept {
  try {
    cluster::erase(s, r);
  } catch (...) {  // NOLINT(bugprone-empty-catch): best effort, from a destructor
  }
}

std::vector<RemoteRef> Cluster::broadcast(std::string_view fn, const detail::ArgWriter& args) {
  detail::check_call(fn, args);
  std::vector<RemoteRef> refs;
  std::vector<std::string> failures;
  std::vector<WorkerId> ids = workers();
  for (WorkerId id : ids) {
    try {
      refs.push_back(cluster::detail::run_at_packed(store(), id, fn, args));
    } catch (const Error& e) {
      failures.emplace_back(e.what());
    }
  }
  for (const RemoteRef& r : refs) {
    try {
      cluster::wait(store(), r);
    } catch (const Error& e) {
      failures.emplace_back(e.what());
    }
  }
  if (!failures.empty()) {
    for (const RemoteRef& r : refs) erase_quietly(store(), r);
    throw Error(Errc::WorkerFailed, fmt::format("everywhere '{}' failed on {} of {} workers: {}", fn, failures.size(),
                                                ids.size(), fmt::join(failures, "; ")));
  }
  return refs;
}

}  // namespace sealstore
