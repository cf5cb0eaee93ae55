// The owner side of the pool: spawning workers (Boost.Process), watching
// them (one pidfd each, polled by a supervisor thread), queueing tasks in
// their rings, and failing the tasks of a worker that dies.
//
// Locks, always taken in this order: manage_mu_ (add, remove, sticky
// broadcasts, shutdown: one at a time), a worker's submit_mu (its ring and
// in-flight list), mu_ (the worker table). The supervisor thread never
// takes manage_mu_.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <linux/close_range.h>
#include <algorithm>
#include <atomic>
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "pool/control.hpp"
#include "pool/emergency.hpp"
#include "pool/registry.hpp"
#include "pool/task.hpp"
#include "sealstore/pool.hpp"
#include "sync/atomics.hpp"

namespace sealstore {
namespace detail {

namespace {

namespace bp = boost::process;
using Clock = std::chrono::steady_clock;

// How often a waiter re-checks what a futex wake-up might have missed.
constexpr std::chrono::milliseconds kRecheck{50};

enum Status : int { kStarting, kReady, kStopping, kDead };

// Tells a worker something changed (a task published, stop set): bumps the
// bell it sleeps on after the change, then wakes it if it sleeps.
void ring(WorkerControl& w) {
  atomic(w.bell).fetch_add(1);
  if (load(w.worker_sleeping) != 0) futex_wake_all(&w.bell);
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

std::string this_executable() {
  std::array<char, PATH_MAX> buf{};
  ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  std::string path = n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
  // A rebuilt (deleted) binary is still reachable through the magic link.
  if (path.empty() || path.ends_with(" (deleted)")) return "/proc/self/exe";
  return path;
}

// True when this process was started as a pool worker (its argv says so),
// whatever main() did with it.
bool started_as_worker() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string argv0;
  std::string argv1;
  std::getline(in, argv0, '\0');
  std::getline(in, argv1, '\0');
  return argv1 == "--sealstore-worker";
}

void erase_quietly(Store& s, const RemoteRef& r) noexcept {
  try {
    s.erase(r);
  } catch (...) {  // NOLINT(bugprone-empty-catch): already erased, or a writer still fills it
  }
}

}  // namespace

struct InFlight {
  std::uint32_t seq;
  RemoteRef result;
  std::string function;
};

// One worker process, as the owner knows it.
struct WorkerRec {
  std::uint32_t slot = 0;
  pid_t pid = 0;
  int pidfd = -1;               // under PoolImpl::mu_ once published; closed when reaped
  std::atomic<WorkerId> id{0};  // set when it is Ready
  std::atomic<int> status{kStarting};
  bool reaped = false;      // under mu_
  std::string kill_reason;  // under mu_: why the pool killed it
  std::string end;          // under mu_: how it ended, once reaped
  std::mutex submit_mu;
  std::deque<InFlight> in_flight;  // under submit_mu
};

class PoolImpl {
 public:
  PoolImpl(std::string_view segment, const PoolOptions& o);
  ~PoolImpl();
  PoolImpl(const PoolImpl&) = delete;
  PoolImpl& operator=(const PoolImpl&) = delete;

  Store& store() noexcept { return *store_; }
  std::int32_t pid(WorkerId id) const { return find_live(id)->pid; }
  std::vector<WorkerId> add(std::size_t n);
  void remove(WorkerId id, std::chrono::milliseconds timeout);
  RemoteRef submit(WorkerId id, std::string_view fn, const ArgWriter& args);
  // wait false: nullopt, not a wait, when the worker's queue is full.
  std::optional<RemoteRef> submit_checked(WorkerId id, std::string_view fn, std::span<const std::byte> args, bool wait);
  std::vector<RemoteRef> broadcast(const EverywhereOptions& o, std::string_view fn, const ArgWriter& args);
  const PoolOptions& options() const noexcept { return opts_; }

 private:
  struct Sticky {
    std::string function;
    std::vector<std::byte> args;
  };

  void release() noexcept;
  void supervise();
  void wake_supervisor() const noexcept;
  void spawn(std::size_t n);
  std::shared_ptr<WorkerRec> spawn_one();
  void reap(const std::shared_ptr<WorkerRec>& rec);
  void stop_all();
  std::string wait_ready(const std::shared_ptr<WorkerRec>& rec, Clock::time_point deadline);
  void kill(const std::shared_ptr<WorkerRec>& rec, const std::string& reason);
  bool wait_reaped(const std::vector<std::shared_ptr<WorkerRec>>& recs, std::optional<Clock::time_point> deadline);
  void abandon(const std::vector<std::shared_ptr<WorkerRec>>& recs, const std::string& reason);
  std::shared_ptr<WorkerRec> find_live(WorkerId id) const;
  std::vector<std::shared_ptr<WorkerRec>> ready_workers() const;
  std::optional<RemoteRef> submit_to(WorkerRec& rec, std::string_view fn, std::span<const std::byte> args,
                                     bool wait = true);
  RemoteRef run_here(std::string_view fn, std::span<const std::byte> args);

  PoolOptions opts_;
  std::string exe_;
  std::string segment_;
  std::optional<Store> store_;
  int memfd_ = -1;
  ControlBlock cb_;
  int event_fd_ = -1;
  int emergency_ = emergency::kNone;
  std::thread supervisor_;

  std::mutex manage_mu_;
  std::vector<Sticky> sticky_;  // under manage_mu_

  mutable std::mutex mu_;
  std::condition_variable cv_;                    // a worker was reaped, or a spawn finished
  std::vector<std::shared_ptr<WorkerRec>> recs_;  // by slot; null when the slot is free
  std::map<WorkerId, std::string> gone_;          // ids that were workers, and how they ended
  std::size_t spawn_request_ = 0;
  bool spawn_done_ = false;
  std::vector<std::shared_ptr<WorkerRec>> spawned_;
  std::string spawn_error_;  // why the last spawn stopped short, if it did
  bool quit_ = false;
};

PoolImpl::PoolImpl(std::string_view segment, const PoolOptions& o) : opts_(o), segment_(segment) {
  if (started_as_worker() && !in_worker_main()) {
    throw Error(Errc::InvalidArgument,
                "this process was started as a pool worker, but its main() did not hand it to "
                "Pool::worker_main first (see docs/pool.md); it may not make a pool of its own");
  }
  check_registrations();
  if (o.max_workers == 0 || o.max_workers > kMaxPoolWorkers) {
    throw Error(Errc::InvalidArgument,
                fmt::format("max_workers {} for pool '{}' must be 1 to {}", o.max_workers, segment, kMaxPoolWorkers));
  }
  if (o.queue_depth == 0 || o.queue_depth > 4096 || (o.queue_depth & (o.queue_depth - 1)) != 0) {
    throw Error(Errc::InvalidArgument,
                fmt::format("queue_depth {} for pool '{}' must be a power of two, 1 to 4096", o.queue_depth, segment));
  }
  if (o.start_timeout.count() <= 0 || o.stop_timeout.count() < 0) {
    throw Error(Errc::InvalidArgument,
                fmt::format("start_timeout of pool '{}' must be positive, stop_timeout not negative", segment));
  }
  exe_ = o.executable.empty() ? this_executable() : o.executable;
  store_.emplace(Store::create(segment, o.store));
  try {
    memfd_ = ::memfd_create("sealstore-pool", MFD_CLOEXEC);
    if (memfd_ < 0) throw Error(Errc::OutOfMemory, fmt::format("memfd_create failed: {}", ::strerror(errno)));
    std::uint64_t bytes = ControlBlock::bytes_for(o.max_workers, o.queue_depth);
    if (::ftruncate(memfd_, static_cast<off_t>(bytes)) != 0) {
      throw Error(Errc::OutOfMemory,
                  fmt::format("cannot size the pool's control block ({} bytes): {}", bytes, ::strerror(errno)));
    }
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
    if (p == MAP_FAILED) {
      throw Error(Errc::OutOfMemory, fmt::format("cannot map the pool's control block: {}", ::strerror(errno)));
    }
    cb_ = ControlBlock(static_cast<std::byte*>(p), bytes);
    cb_.init(o.max_workers, o.queue_depth, store_->info().segment_tag, static_cast<std::int32_t>(::getpid()));
    event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (event_fd_ < 0) throw Error(Errc::OutOfMemory, fmt::format("eventfd failed: {}", ::strerror(errno)));
    recs_.resize(o.max_workers);
    emergency_ = emergency::enroll(store_->info().path, o.handle_signals);
    // Workers are spawned from this thread, which lives as long as the pool:
    // PR_SET_PDEATHSIG fires when the spawning thread ends, not the process.
    supervisor_ = std::thread([this] { supervise(); });
  } catch (...) {
    release();
    throw;
  }
}

PoolImpl::~PoolImpl() {
  try {
    stop_all();
  } catch (...) {  // NOLINT(bugprone-empty-catch): the supervisor and PR_SET_PDEATHSIG still end them
  }
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  wake_supervisor();
  if (supervisor_.joinable()) supervisor_.join();
  release();
}

void PoolImpl::release() noexcept {
  if (cb_.base() != nullptr) ::munmap(cb_.base(), cb_.bytes());
  cb_ = ControlBlock();
  if (memfd_ >= 0) ::close(memfd_);
  if (event_fd_ >= 0) ::close(event_fd_);
  memfd_ = event_fd_ = -1;
  if (store_) {
    std::string dir = opts_.store.directory;
    store_.reset();
    try {
      Store::remove(segment_, dir);
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing more to do in a destructor
    }
  }
  emergency::withdraw(emergency_);
  emergency_ = emergency::kNone;
}

// ---- the supervisor thread

void PoolImpl::wake_supervisor() const noexcept {
  std::uint64_t one = 1;
  if (event_fd_ >= 0) (void)!::write(event_fd_, &one, sizeof one);
}

void PoolImpl::supervise() {
  std::vector<pollfd> fds;
  std::vector<std::shared_ptr<WorkerRec>> watched;
  for (;;) {
    std::size_t spawn_n = 0;
    {
      std::lock_guard lock(mu_);
      if (quit_) return;
      spawn_n = std::exchange(spawn_request_, 0);
      fds.assign(1, pollfd{event_fd_, POLLIN, 0});
      watched.clear();
      for (const auto& r : recs_) {
        if (r && !r->reaped) {
          fds.push_back(pollfd{r->pidfd, POLLIN, 0});
          watched.push_back(r);
        }
      }
    }
    if (spawn_n > 0) {
      spawn(spawn_n);
      continue;
    }
    int n = ::poll(fds.data(), fds.size(), -1);
    if (n < 0) continue;  // EINTR
    if ((fds[0].revents & POLLIN) != 0) {
      std::uint64_t v = 0;
      (void)!::read(event_fd_, &v, sizeof v);
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) reap(watched[i - 1]);
    }
  }
}

void PoolImpl::spawn(std::size_t n) {
  std::vector<std::shared_ptr<WorkerRec>> made;
  // The error goes across as text: an exception_ptr released in another
  // thread than the one that made it is a data race to ThreadSanitizer
  // (libstdc++'s count is not instrumented).
  std::string error;
  try {
    for (std::size_t k = 0; k < n; ++k) made.push_back(spawn_one());
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "an exception of unknown type";
  }
  {
    std::lock_guard lock(mu_);
    spawned_ = std::move(made);
    spawn_error_ = std::move(error);
    spawn_done_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<WorkerRec> PoolImpl::spawn_one() {
  auto rec = std::make_shared<WorkerRec>();
  {
    std::lock_guard lock(mu_);
    std::uint32_t s = 0;
    while (s < recs_.size() &&
           (recs_[s] || load(cb_.worker(s).state) != static_cast<std::uint32_t>(WorkerState::Free))) {
      ++s;
    }
    if (s == recs_.size()) {
      throw Error(Errc::OutOfMemory, fmt::format("pool '{}' has room for {} workers", segment_, recs_.size()));
    }
    rec->slot = s;
  }
  WorkerControl& w = cb_.worker(rec->slot);
  detail::store(w.head, 0U);
  detail::store(w.tail, 0U);
  detail::store(w.done, 0U);
  detail::store(w.stop, 0U);
  detail::store(w.worker_sleeping, 0U);
  detail::store(w.bell, 0U);
  detail::store(w.owner_waiting, 0U);
  detail::store(w.worker_id, 0U);
  detail::store(w.pid, 0);
  detail::store(w.state, static_cast<std::uint32_t>(WorkerState::Starting));

  std::vector<std::string> args = {"--sealstore-worker",
                                   segment_,
                                   opts_.store.directory.empty() ? "-" : opts_.store.directory,
                                   std::to_string(memfd_),
                                   std::to_string(rec->slot),
                                   std::to_string(::getpid())};
  int fd = memfd_;
  std::error_code ec;
  bp::child c(
      bp::exe = exe_, bp::args = args, bp::std_in < bp::null,
      bp::extend::on_exec_setup =
          [fd](auto& /*exec*/) {
            // Between fork and exec, async-signal-safe calls only. The
            // child shares no descriptor of ours but the control block.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
            ::fcntl(fd, F_SETFD, 0);
          },
      bp::extend::on_error =
          [](auto& exec, const std::error_code& /*ec*/) {
            if (exec.pid > 0) ::waitpid(exec.pid, nullptr, 0);  // a child whose exec failed: reap it
          },
      ec);
  if (ec) {
    detail::store(w.state, static_cast<std::uint32_t>(WorkerState::Free));
    throw Error(Errc::WorkerFailed,
                fmt::format("cannot start a worker of pool '{}' from '{}': {}", segment_, exe_, ec.message()));
  }
  rec->pid = c.id();
  c.detach();  // reaped through its pidfd, not by Boost
  rec->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, rec->pid, 0));
  if (rec->pidfd < 0) {
    int err = errno;
    ::kill(rec->pid, SIGKILL);
    ::waitpid(rec->pid, nullptr, 0);
    detail::store(w.state, static_cast<std::uint32_t>(WorkerState::Free));
    throw Error(Errc::WorkerFailed,
                fmt::format("pidfd_open of worker process {} failed: {}", rec->pid, ::strerror(err)));
  }
  emergency::set_worker(emergency_, rec->slot, rec->pidfd);
  std::lock_guard lock(mu_);
  recs_[rec->slot] = rec;
  return rec;
}

void PoolImpl::reap(const std::shared_ptr<WorkerRec>& rec) {
  siginfo_t info{};
  if (::waitid(P_PIDFD, static_cast<id_t>(rec->pidfd), &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) return;
  int previous = rec->status.exchange(kDead);  // first: a submitter waiting for room gives up
  WorkerControl& w = cb_.worker(rec->slot);
  futex_wake_all(&w.tail);
  futex_wake_all(&w.state);

  std::string how;
  std::string kill_reason;
  {
    std::lock_guard lock(mu_);
    kill_reason = rec->kill_reason;
  }
  if (info.si_code == CLD_EXITED) {
    how = fmt::format("exited with code {}", info.si_status);
  } else if (!kill_reason.empty()) {
    how = fmt::format("was killed with {} because it {}", signal_name(info.si_status), kill_reason);
  } else {
    how = fmt::format("was killed by signal {} ({})", info.si_status, signal_name(info.si_status));
  }
  WorkerId id = rec->id.load();
  std::string who =
      id != 0 ? fmt::format("worker {} (pid {})", id, rec->pid) : fmt::format("worker process {}", rec->pid);
  {
    std::lock_guard lock(rec->submit_mu);
    std::uint32_t done = load(w.done);
    std::uint32_t tail = load(w.tail);
    for (const InFlight& f : rec->in_flight) {
      if (static_cast<std::int32_t>(f.seq - done) < 0) continue;  // finished
      bool running = static_cast<std::int32_t>(f.seq - tail) < 0;
      try {
        store_->fail(f.result,
                     fmt::format("{} {}, {} '{}'", who, how, running ? "while running" : "before it ran", f.function));
      } catch (...) {  // NOLINT(bugprone-empty-catch): sealed just before it died, or erased
      }
    }
    rec->in_flight.clear();
  }
  try {
    store_->recover();  // its pins, its half-written objects, its process slot
  } catch (...) {       // NOLINT(bugprone-empty-catch): the next attach or recover() does it
  }
  {
    std::lock_guard lock(mu_);
    emergency::set_worker(emergency_, rec->slot, -1);
    ::close(rec->pidfd);
    rec->pidfd = -1;
    rec->end = how;
    rec->reaped = true;
    // A worker that stopped when asked "was removed"; one killed for not
    // stopping in time says so.
    if (id != 0) gone_[id] = previous == kStopping && kill_reason.empty() ? std::string("was removed") : how;
    recs_[rec->slot] = nullptr;
    detail::store(w.state, static_cast<std::uint32_t>(WorkerState::Free));
  }
  cv_.notify_all();
}

// ---- managing workers

void PoolImpl::kill(const std::shared_ptr<WorkerRec>& rec, const std::string& reason) {
  std::lock_guard lock(mu_);
  if (rec->reaped) return;
  if (rec->kill_reason.empty()) rec->kill_reason = reason;
  ::syscall(SYS_pidfd_send_signal, rec->pidfd, SIGKILL, nullptr, 0);
}

bool PoolImpl::wait_reaped(const std::vector<std::shared_ptr<WorkerRec>>& recs,
                           std::optional<Clock::time_point> deadline) {
  std::unique_lock lock(mu_);
  auto all = [&] { return std::all_of(recs.begin(), recs.end(), [](const auto& r) { return r->reaped; }); };
  if (!deadline) {
    cv_.wait(lock, all);
    return true;
  }
  return cv_.wait_until(lock, *deadline, all);
}

void PoolImpl::abandon(const std::vector<std::shared_ptr<WorkerRec>>& recs, const std::string& reason) {
  for (const auto& r : recs) kill(r, reason);
  wait_reaped(recs, std::nullopt);
}

std::string PoolImpl::wait_ready(const std::shared_ptr<WorkerRec>& rec, Clock::time_point deadline) {
  WorkerControl& w = cb_.worker(rec->slot);
  for (;;) {
    if (rec->status.load() == kDead) {
      wait_reaped({rec}, std::nullopt);
      std::lock_guard lock(mu_);
      return fmt::format(
          "worker process {} {} before it attached to segment '{}' (a program's main() must begin "
          "with Pool::is_worker/worker_main; see docs/pool.md)",
          rec->pid, rec->end, segment_);
    }
    std::uint32_t st = load(w.state);
    if (st == static_cast<std::uint32_t>(WorkerState::Ready)) {
      int expected = kStarting;
      rec->id.store(load(w.worker_id));
      if (rec->status.compare_exchange_strong(expected, kReady)) return {};
      continue;  // it died meanwhile
    }
    auto now = Clock::now();
    if (now >= deadline) {
      kill(rec, fmt::format("did not attach within {} ms", opts_.start_timeout.count()));
      wait_reaped({rec}, std::nullopt);
      return fmt::format("worker process {} did not attach to segment '{}' within {} ms", rec->pid, segment_,
                         opts_.start_timeout.count());
    }
    futex_wait(&w.state, st, std::min<Clock::duration>(deadline - now, kRecheck));
  }
}

std::vector<WorkerId> PoolImpl::add(std::size_t n) {
  std::lock_guard manage(manage_mu_);
  if (n == 0) return {};
  {
    std::lock_guard lock(mu_);
    auto live =
        static_cast<std::size_t>(std::count_if(recs_.begin(), recs_.end(), [](const auto& r) { return r != nullptr; }));
    if (live + n > recs_.size()) {
      throw Error(Errc::OutOfMemory, fmt::format("pool '{}' has room for {} workers: {} are running, {} more asked",
                                                 segment_, recs_.size(), live, n));
    }
    spawn_request_ = n;
    spawn_done_ = false;
  }
  wake_supervisor();
  std::vector<std::shared_ptr<WorkerRec>> batch;
  std::vector<std::string> failures;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return spawn_done_; });
    batch = std::move(spawned_);
    spawned_.clear();
    if (!spawn_error_.empty()) failures.push_back(std::exchange(spawn_error_, {}));
  }
  auto deadline = Clock::now() + opts_.start_timeout;
  for (const auto& rec : batch) {
    std::string f = wait_ready(rec, deadline);
    if (!f.empty()) failures.push_back(std::move(f));
  }
  if (!failures.empty()) {
    abandon(batch, "belonged to an add() that failed");
    throw Error(Errc::WorkerFailed,
                fmt::format("adding {} worker(s) to pool '{}' failed: {}", n, segment_, fmt::join(failures, "; ")));
  }
  // The pool's set-up follows it as it grows.
  if (!sticky_.empty()) {
    std::vector<RemoteRef> refs;
    for (const auto& rec : batch) {
      for (const Sticky& s : sticky_) {
        try {
          refs.push_back(*submit_to(*rec, s.function, s.args));
        } catch (const Error& e) {
          failures.emplace_back(e.what());
        }
      }
    }
    for (const RemoteRef& r : refs) {
      try {
        store_->fetch(r);
      } catch (const Error& e) {
        failures.emplace_back(e.what());
      }
      erase_quietly(*store_, r);
    }
    if (!failures.empty()) {
      abandon(batch, "failed a sticky broadcast");
      throw Error(Errc::WorkerFailed, fmt::format("a sticky broadcast failed on a new worker of pool '{}': {}",
                                                  segment_, fmt::join(failures, "; ")));
    }
  }
  std::vector<WorkerId> ids;
  ids.reserve(batch.size());
  for (const auto& rec : batch) ids.push_back(rec->id.load());
  std::sort(ids.begin(), ids.end());
  return ids;
}

void PoolImpl::remove(WorkerId id, std::chrono::milliseconds timeout) {
  std::lock_guard manage(manage_mu_);
  if (id == store_->myid()) {
    throw Error(Errc::InvalidArgument, fmt::format("worker {} is the pool's own process; it cannot be removed", id));
  }
  if (timeout.count() < 0) throw Error(Errc::InvalidArgument, "negative timeout for remove");
  std::shared_ptr<WorkerRec> rec = find_live(id);
  // Not under submit_mu: a submitter may hold it while it waits for room in
  // a ring the worker is still draining. A task that slips in after the
  // worker saw its queue empty is failed when the worker is reaped.
  int expected = kReady;
  if (!rec->status.compare_exchange_strong(expected, kStopping)) {
    throw Error(Errc::InvalidArgument, fmt::format("worker {} of pool '{}' is already stopping", id, segment_));
  }
  WorkerControl& w = cb_.worker(rec->slot);
  detail::store(w.stop, 1U);
  ring(w);
  if (!wait_reaped({rec}, Clock::now() + timeout)) {
    kill(rec, fmt::format("did not stop within {} ms of its removal", timeout.count()));
    wait_reaped({rec}, std::nullopt);
  }
}

void PoolImpl::stop_all() {
  std::lock_guard manage(manage_mu_);
  std::vector<std::shared_ptr<WorkerRec>> live;
  {
    std::lock_guard lock(mu_);
    for (const auto& r : recs_) {
      if (r) live.push_back(r);
    }
  }
  for (const auto& r : live) {
    int expected = kReady;
    r->status.compare_exchange_strong(expected, kStopping);
    WorkerControl& w = cb_.worker(r->slot);
    detail::store(w.stop, 1U);
    ring(w);
  }
  if (!wait_reaped(live, Clock::now() + opts_.stop_timeout)) {
    for (const auto& r : live) {
      kill(r, fmt::format("did not stop within {} ms of the pool's destruction", opts_.stop_timeout.count()));
    }
    wait_reaped(live, std::nullopt);
  }
}

std::shared_ptr<WorkerRec> PoolImpl::find_live(WorkerId id) const {
  std::lock_guard lock(mu_);
  for (const auto& r : recs_) {
    if (r && r->id.load() == id && id != 0) return r;
  }
  if (auto it = gone_.find(id); it != gone_.end()) {
    throw Error(Errc::InvalidArgument,
                fmt::format("worker {} of pool '{}' {}: it takes no tasks", id, segment_, it->second));
  }
  std::vector<WorkerId> ids;
  for (const auto& r : recs_) {
    if (r && r->id.load() != 0) ids.push_back(r->id.load());
  }
  std::sort(ids.begin(), ids.end());
  throw Error(Errc::InvalidArgument,
              fmt::format("{} is not a worker of pool '{}' (its workers: [{}])", id, segment_, fmt::join(ids, ", ")));
}

std::vector<std::shared_ptr<WorkerRec>> PoolImpl::ready_workers() const {
  std::vector<std::shared_ptr<WorkerRec>> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& r : recs_) {
      if (r && r->status.load() == kReady) out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->id.load() < b->id.load(); });
  return out;
}

// ---- tasks

const FunctionEntry& check_call(std::string_view fn, const ArgWriter& args) {
  const FunctionEntry* f = find_function(fn);
  if (f == nullptr) {
    throw Error(Errc::NotFound, fmt::format("no function '{}' is registered in this program (registered: {})", fn,
                                            fmt::join(function_names(20), ", ")));
  }
  auto list = [](auto sigs) {
    std::vector<std::string> d;
    for (const ArgSig& s : sigs) d.push_back(describe(s));
    return fmt::format("{}", fmt::join(d, ", "));
  };
  if (args.count() != f->params.size()) {
    throw Error(Errc::InvalidArgument, fmt::format("'{}' takes {} argument(s) ({}), not {}", fn, f->params.size(),
                                                   list(std::span<const ArgSig>(f->params)), args.count()));
  }
  if (args.overflow()) {
    throw Error(Errc::InvalidArgument,
                fmt::format("the arguments of '{}' take {} bytes; a task carries at most {}: pass large values as "
                            "RemoteRefs",
                            fn, args.needed(), kTaskArgBytes));
  }
  for (std::size_t i = 0; i < f->params.size(); ++i) {
    if (!(args.sigs()[i] == f->params[i])) {
      throw Error(Errc::TypeMismatch, fmt::format("argument {} of '{}' is {}, but '{}' takes {}", i + 1, fn,
                                                  describe(args.sigs()[i]), fn, describe(f->params[i])));
    }
  }
  return *f;
}

RemoteRef PoolImpl::run_here(std::string_view fn, std::span<const std::byte> args) {
  RemoteRef ref = store_->make_ref(store_->myid());
  run_task(*store_, ref, fn, args);
  return ref;
}

std::optional<RemoteRef> PoolImpl::submit_to(WorkerRec& rec, std::string_view fn, std::span<const std::byte> args,
                                             bool wait) {
  std::lock_guard lock(rec.submit_mu);
  WorkerId id = rec.id.load();
  int st = rec.status.load();
  if (st == kStopping) {
    throw Error(Errc::InvalidArgument,
                fmt::format("worker {} of pool '{}' is being removed: it takes no new tasks", id, segment_));
  }
  if (st != kReady) {
    throw Error(Errc::InvalidArgument, fmt::format("worker {} of pool '{}' is gone: it takes no tasks", id, segment_));
  }
  WorkerControl& w = cb_.worker(rec.slot);
  std::uint32_t depth = cb_.header().queue_depth;
  std::uint32_t head = load(w.head, std::memory_order_relaxed);  // only this side writes it
  if (!wait && head - load(w.tail) >= depth) return std::nullopt;
  while (head - load(w.tail) >= depth) {
    detail::store(w.owner_waiting, 1U);
    std::uint32_t tail = load(w.tail);
    if (head - tail >= depth) futex_wait(&w.tail, tail, kRecheck);
    detail::store(w.owner_waiting, 0U);
    if (rec.status.load() == kDead) {
      throw Error(Errc::WorkerFailed,
                  fmt::format("worker {} of pool '{}' died while '{}' waited for room in its queue", id, segment_, fn));
    }
  }
  RemoteRef ref = store_->make_ref(id);
  TaskSlot& t = cb_.task(rec.slot, head);
  t.segment_tag = ref.segment_tag();
  t.where = ref.where();
  t.ref_id = ref.id();
  t.whence = ref.whence();
  t.args_size = static_cast<std::uint32_t>(args.size());
  std::memset(t.function, 0, sizeof t.function);
  std::memcpy(t.function, fn.data(), std::min(fn.size(), sizeof t.function - 1));
  if (!args.empty()) std::memcpy(t.args, args.data(), args.size());
  // Publish, then look whether the worker sleeps (it announces a sleep,
  // then looks at head: one of the two sees the other).
  detail::store(w.head, head + 1);
  ring(w);
  std::uint32_t done = load(w.done);
  while (!rec.in_flight.empty() && static_cast<std::int32_t>(rec.in_flight.front().seq - done) < 0) {
    rec.in_flight.pop_front();
  }
  rec.in_flight.push_back(InFlight{head, ref, std::string(fn)});
  return ref;
}

RemoteRef PoolImpl::submit(WorkerId id, std::string_view fn, const ArgWriter& args) {
  check_call(fn, args);
  return *submit_checked(id, fn, args.bytes(), true);
}

std::optional<RemoteRef> PoolImpl::submit_checked(WorkerId id, std::string_view fn, std::span<const std::byte> args,
                                                  bool wait) {
  if (id == store_->myid()) return run_here(fn, args);
  std::shared_ptr<WorkerRec> rec = find_live(id);
  return submit_to(*rec, fn, args, wait);
}

std::vector<RemoteRef> PoolImpl::broadcast(const EverywhereOptions& o, std::string_view fn, const ArgWriter& args) {
  check_call(fn, args);
  // A sticky broadcast and add() exclude each other, so that no worker
  // misses it or runs it twice.
  std::unique_lock manage(manage_mu_, std::defer_lock);
  if (o.sticky) manage.lock();
  std::vector<RemoteRef> refs;
  std::vector<std::string> failures;
  std::vector<std::shared_ptr<WorkerRec>> targets = ready_workers();
  std::size_t total = targets.size() + (o.include_self ? 1 : 0);
  for (const auto& rec : targets) {
    try {
      refs.push_back(*submit_to(*rec, fn, args.bytes()));
    } catch (const Error& e) {
      failures.emplace_back(e.what());
    }
  }
  if (o.include_self) refs.insert(refs.begin(), run_here(fn, args.bytes()));
  for (const RemoteRef& r : refs) {
    try {
      store_->fetch(r);
    } catch (const Error& e) {
      failures.emplace_back(e.what());
    }
  }
  if (!failures.empty()) {
    for (const RemoteRef& r : refs) erase_quietly(*store_, r);
    throw Error(Errc::WorkerFailed, fmt::format("everywhere '{}' failed on {} of {} processes: {}", fn, failures.size(),
                                                total, fmt::join(failures, "; ")));
  }
  if (o.sticky) sticky_.push_back(Sticky{std::string(fn), {args.bytes().begin(), args.bytes().end()}});
  return refs;
}

}  // namespace detail

// ---- Pool

Pool::Pool(std::unique_ptr<detail::PoolImpl> impl) noexcept : impl_(std::move(impl)) {}
Pool::Pool(Pool&&) noexcept = default;
Pool& Pool::operator=(Pool&&) noexcept = default;
Pool::~Pool() = default;

Pool Pool::create(std::string_view segment, const PoolOptions& options) {
  return Pool(std::make_unique<detail::PoolImpl>(segment, options));
}

detail::PoolImpl& Pool::impl() const {
  if (!impl_) throw Error(Errc::InvalidArgument, "this Pool is empty (it was moved from)");
  return *impl_;
}

Store& Pool::store() { return impl().store(); }
WorkerId Pool::myid() const { return impl().store().myid(); }
std::vector<WorkerId> Pool::workers() const { return sealstore::workers(impl().store()); }

std::optional<RemoteRef> detail::PoolAccess::try_submit_checked(Pool& pool, WorkerId id, std::string_view fn,
                                                                std::span<const std::byte> args) {
  return pool.impl().submit_checked(id, fn, args, false);
}
std::int32_t Pool::pid(WorkerId id) const { return impl().pid(id); }
std::vector<WorkerId> Pool::add(std::size_t n) { return impl().add(n); }
void Pool::remove(WorkerId id) { impl().remove(id, impl().options().stop_timeout); }
void Pool::remove(WorkerId id, std::chrono::milliseconds timeout) { impl().remove(id, timeout); }

RemoteRef Pool::submit(WorkerId id, std::string_view fn, const detail::ArgWriter& args) {
  return impl().submit(id, fn, args);
}

std::vector<RemoteRef> Pool::broadcast(const EverywhereOptions& options, std::string_view fn,
                                       const detail::ArgWriter& args) {
  return impl().broadcast(options, fn, args);
}

void Pool::erase_quietly(Store& s, const RemoteRef& r) noexcept { detail::erase_quietly(s, r); }

}  // namespace sealstore
