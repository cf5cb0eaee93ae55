// sealstore-torture: N worker processes do random put / writer+seal /
// fetch+verify / materialize / erase / pin / name operations on one segment
// while the supervisor SIGKILLs a random one every few milliseconds and
// respawns it. At the end it checks that every sealed object that was not
// erased is present and intact, that recover() leaves no pin of a dead
// process, that erasing everything gives back exactly an empty segment's
// free space, and that no operation blocked longer than the bound. Prints
// the counts; exits 0 only if every check passed.
//
// With --hostile, another process scribbles random bytes over the
// segment's header and tables meanwhile, and the workers check instead
// that they never crash, never read outside the segment's mappings and
// never block past the bound (docs/reliability.md, the threat model).
//
// Usage: sealstore-torture [--seconds N] [--workers N] [--capacity-mib N]
//          [--max-objects N] [--max-object-kib N] [--kill-ms MIN-MAX]
//          [--bound-ms N] [--seed N] [--hostile] [--scribble-us N] [--verbose]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ledger.hpp"
#include "worker.hpp"

namespace torture {
namespace {

using sealstore::Errc;
using sealstore::Error;
using sealstore::ObjectState;
using sealstore::RemoteRef;
using sealstore::Store;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Proc {
  pid_t pid = -1;
  int pidfd = -1;
  std::uint64_t life = 0;
};

struct Counts {
  std::uint64_t kills = 0;
  std::uint64_t spawns = 0;
  std::uint64_t retired = 0;
  std::uint64_t reaped_by_recover = 0;  // dead processes our recover() calls cleaned up
  std::uint64_t adopted = 0;            // pending records found sealed after their writer died
  std::uint64_t dropped = 0;            // pending records whose object never got sealed
  std::uint64_t erase_resolved = 0;     // erase claims of the dead, settled
  std::uint64_t orphans = 0;            // unrecorded abandoned / unfilled objects erased
  std::uint64_t verified_recorded = 0;
  std::uint64_t verified_unrecorded = 0;
  std::uint64_t views_at_end = 0;
};

class Supervisor {
 public:
  explicit Supervisor(const Config& cfg)
      : cfg_(cfg), ledger_(cfg.workers, cfg.max_objects / cfg.workers), me_(cfg.workers), rng_(cfg.seed) {}

  int run() {
    sealstore::CreateOptions o;
    o.capacity = cfg_.capacity;
    o.max_objects = cfg_.max_objects;
    o.max_names = cfg_.workers * kNamesPerWorker;
    o.spill_directory = cfg_.spill_dir;
    store_.emplace(Store::create(cfg_.segment, o));
    struct Remover {
      const std::string& name;
      ~Remover() {
        try {
          Store::remove(name);
        } catch (...) {  // NOLINT(bugprone-empty-catch): best effort on the way out
        }
      }
    } remover{cfg_.segment};
    struct SpillRemover {  // the directory it spilled into, whatever happens
      const std::string& dir;
      ~SpillRemover() {
        if (dir.empty()) return;
        std::error_code ec;
        std::filesystem::path root = std::filesystem::path(dir).parent_path();
        if (root.filename().string().starts_with("sealstore-torture-")) {
          std::filesystem::remove_all(root, ec);
        } else {
          std::filesystem::remove_all(dir, ec);
        }
      }
    } spill_remover{cfg_.spill_dir};
    tag_ = store_->info().segment_tag;
    ledger_.area(me_).pid.store(::getpid());
    procs_.resize(cfg_.workers);
    for (std::uint32_t k = 0; k < cfg_.workers; ++k) spawn(k);
    if (cfg_.hostile) spawn_scribbler();

    auto start = Clock::now();
    auto deadline = start + std::chrono::seconds(cfg_.seconds);
    auto next_kill = start + kill_interval();
    for (;;) {
      auto now = Clock::now();
      if (now >= deadline) break;
      // Never negative: respawning a worker that exited can take us past
      // the next kill, and poll() takes a negative timeout as "for ever".
      auto wait =
          std::max(std::chrono::duration_cast<milliseconds>(std::min(next_kill, deadline) - now), milliseconds(0));
      watch(wait + milliseconds(1));
      if (cfg_.spilling()) sample();
      if (Clock::now() >= next_kill) {
        auto k = static_cast<std::uint32_t>(rng_() % cfg_.workers);
        kill_and_clean(k);
        spawn(k);
        next_kill = Clock::now() + kill_interval();
      }
    }
    // The end: every worker dies by SIGKILL, wherever it is.
    if (scribbler_ > 0) {
      ::kill(scribbler_, SIGKILL);
      ::waitpid(scribbler_, nullptr, 0);
    }
    for (std::uint32_t k = 0; k < cfg_.workers; ++k) kill_and_clean(k);
    auto elapsed = Clock::now() - start;
    if (!cfg_.hostile) final_checks();
    report(elapsed);
    return total_violations() == 0 ? 0 : 1;
  }

 private:
  milliseconds kill_interval() {
    auto span = static_cast<std::uint64_t>((cfg_.kill_max - cfg_.kill_min).count()) + 1;
    return cfg_.kill_min + milliseconds(static_cast<std::int64_t>(rng_() % span));
  }

  void violation(const std::string& what) { ledger_.violation(me_, what); }

  // How big the workload got: sealed objects and their bytes, wherever they are.
  void sample() {
    sealstore::SegmentInfo i = store_->info();
    peak_objects_ = std::max<std::uint64_t>(peak_objects_, i.objects);
    peak_bytes_ = std::max(peak_bytes_, i.used + i.spilled_bytes);
  }

  void spawn(std::uint32_t k) {
    Proc& p = procs_[k];
    p.life += 1;
    ledger_.area(k).worker_id.store(0);
    std::fflush(nullptr);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(fmt::format("fork failed: {}", std::strerror(errno)));
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(5);
      ledger_.area(k).pid.store(::getpid());
      int code = 4;
      try {
        code = cfg_.hostile ? run_hostile_worker(cfg_, ledger_, k, p.life) : run_worker(cfg_, ledger_, k, p.life);
      } catch (const std::exception& e) {
        ledger_.violation(k, fmt::format("worker stopped by an exception: {}", e.what()));
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    ledger_.area(k).pid.store(pid);
    p.pid = pid;
    p.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (p.pidfd < 0) throw std::runtime_error(fmt::format("pidfd_open failed: {}", std::strerror(errno)));
    counts_.spawns += 1;
  }

  void spawn_scribbler() {
    std::fflush(nullptr);
    pid_t parent = ::getpid();
    scribbler_ = ::fork();
    if (scribbler_ < 0) throw std::runtime_error(fmt::format("fork failed: {}", std::strerror(errno)));
    if (scribbler_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(5);
      run_scribbler(cfg_, ledger_, me_);
    }
  }

  // Waits up to `wait` for a worker to exit by itself (it retired, or it
  // failed), cleans up after it and respawns it.
  void watch(milliseconds wait) {
    std::vector<pollfd> fds;
    for (const Proc& p : procs_) fds.push_back(pollfd{p.pidfd, POLLIN, 0});
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
    if (n <= 0) return;
    for (std::uint32_t k = 0; k < cfg_.workers; ++k) {
      if ((fds[k].revents & POLLIN) == 0) continue;
      siginfo_t info = reap(k);
      if (info.si_code == CLD_EXITED && info.si_status == 0) {
        counts_.retired += 1;
      } else {
        violation(fmt::format("worker {} (pid {}) ended by itself: {} {}", k, info.si_pid,
                              info.si_code == CLD_EXITED ? "exit code" : "signal", info.si_status));
      }
      clean_after(k, info.si_pid);
      spawn(k);
    }
  }

  siginfo_t reap(std::uint32_t k) {
    Proc& p = procs_[k];
    siginfo_t info{};
    ::waitid(P_PIDFD, static_cast<id_t>(p.pidfd), &info, WEXITED);
    ::close(p.pidfd);
    p.pidfd = -1;
    return info;
  }

  void kill_and_clean(std::uint32_t k) {
    Proc& p = procs_[k];
    ::syscall(SYS_pidfd_send_signal, p.pidfd, SIGKILL, nullptr, 0);
    siginfo_t info = reap(k);
    if (info.si_code == CLD_EXITED && info.si_status != 0) {
      violation(fmt::format("worker {} (pid {}) exited with code {} before the kill", k, p.pid, info.si_status));
    }
    counts_.kills += 1;
    clean_after(k, p.pid);
  }

  // What the supervisor does after a worker died: recover(), then settle
  // the dead one's ledger records and erase what it made but never recorded.
  void clean_after(std::uint32_t k, pid_t dead) {
    auto start = Clock::now();
    if (cfg_.hostile) {  // nothing to settle: only that cleaning up works or says why not
      try {
        counts_.reaped_by_recover += store_->recover();
      } catch (const Error& e) {
        auto code = static_cast<std::size_t>(e.code());
        if (code < 16) ledger_.area(me_).errors[code].fetch_add(1);  // NOLINT
      }
      note_latency(ledger_, me_, kRecover, Clock::now() - start, cfg_.bound);
      return;
    }
    std::uint32_t dead_id = ledger_.area(k).worker_id.load();
    try {
      counts_.reaped_by_recover += store_->recover();
      for (std::uint32_t i = 0; i < ledger_.records(); ++i) {
        Record& r = ledger_.record(k, i);
        Snapshot snap;
        if (snapshot(r, tag_, snap) && snap.state.kind == Kind::Pending) settle_pending(r, snap);
      }
      for (std::uint32_t w = 0; w < cfg_.workers; ++w) {
        for (std::uint32_t i = 0; i < ledger_.records(); ++i) {
          Record& r = ledger_.record(w, i);
          Snapshot snap;
          if (snapshot(r, tag_, snap) && snap.state.kind == Kind::Erasing && snap.state.pid == dead) {
            settle_erasing(r, snap);
          }
        }
      }
      for (const auto& o : store_->objects()) {
        bool orphan = o.state == ObjectState::Abandoned ||
                      (o.state == ObjectState::Unfilled && dead_id != 0 && o.ref.whence() == dead_id);
        if (!orphan) continue;
        try {
          store_->erase(o.ref);
          counts_.orphans += 1;
        } catch (const Error& e) {
          if (e.code() != Errc::NotFound) throw;
        }
      }
    } catch (const Error& e) {
      violation(fmt::format("cleaning up after worker {} (pid {}): {}", k, dead, e.what()));
    }
    note_latency(ledger_, me_, kRecover, Clock::now() - start, cfg_.bound);
  }

  // The owner died between making the ref and recording the seal: the
  // object is sealed (adopt it), or it never will be (erase it).
  void settle_pending(Record& r, const Snapshot& snap) {
    try {
      std::optional<sealstore::View> v = store_->try_fetch(snap.ref);
      if (v) {
        std::string err = check_object(v->bytes(), snap.ref.id());
        if (!err.empty())
          violation(fmt::format("{} sealed by a killed worker is damaged: {}", snap.ref.to_string(), err));
        ObjectHeader h{};
        std::memcpy(&h, v->bytes().data(), std::min(sizeof h, v->size()));
        r.size.store(v->size(), std::memory_order_release);
        r.sum.store(h.sum, std::memory_order_release);
        r.state.store(snap.state.next(Kind::Sealed, 0), std::memory_order_release);
        counts_.adopted += 1;
        return;
      }
      store_->erase(snap.ref);  // unfilled; a dead writer's object is abandoned by now
    } catch (const Error& e) {
      if (e.code() == Errc::WorkerFailed) {
        store_->erase(snap.ref);
      } else if (e.code() != Errc::NotFound) {
        violation(fmt::format("settling {} of a killed worker: {}", snap.ref.to_string(), e.what()));
        return;
      }
    }
    r.state.store(snap.state.next(Kind::Free, 0), std::memory_order_release);
    counts_.dropped += 1;
  }

  // The claimant died erasing: the object is gone, or untouched and intact.
  void settle_erasing(Record& r, const Snapshot& snap) {
    counts_.erase_resolved += 1;
    if (!store_->contains(snap.ref)) {
      r.state.store(snap.state.next(Kind::Free, 0), std::memory_order_release);
      return;
    }
    try {
      std::optional<sealstore::View> v = store_->try_fetch(snap.ref);
      if (!v) {
        violation(fmt::format("{}, half-erased by a killed worker, is not sealed", snap.ref.to_string()));
      } else if (std::string err = check_object(v->bytes(), snap.ref.id()); !err.empty()) {
        violation(fmt::format("{}, half-erased by a killed worker, is damaged: {}", snap.ref.to_string(), err));
      }
    } catch (const Error& e) {
      if (e.code() == Errc::NotFound) {  // erased after all (a deferred free completing)
        r.state.store(snap.state.next(Kind::Free, 0), std::memory_order_release);
        return;
      }
      violation(fmt::format("{}, half-erased by a killed worker: {}", snap.ref.to_string(), e.what()));
    }
    r.state.store(snap.state.next(Kind::Sealed, 0), std::memory_order_release);
  }

  void final_checks() {
    try {
      counts_.reaped_by_recover += store_->recover();
      // No slot of a dead process, so no pin of one.
      for (const auto& p : store_->processes()) {
        if (!p.alive || p.id != store_->myid()) {
          violation(
              fmt::format("after recover(), process slot {} (worker {}, pid {}, {}) is still attached with {} "
                          "pins",
                          p.slot, p.id, p.pid, p.alive ? "alive" : "dead", p.pinned_objects));
        }
      }
      std::unordered_set<std::uint64_t> recorded;
      for (std::uint32_t w = 0; w < cfg_.workers; ++w) {
        for (std::uint32_t i = 0; i < ledger_.records(); ++i) {
          Snapshot snap;
          if (!snapshot(ledger_.record(w, i), tag_, snap)) {
            violation("a ledger record changed with every worker dead");
            continue;
          }
          if (snap.state.kind == Kind::Free) continue;
          if (snap.state.kind != Kind::Sealed) {
            violation(fmt::format("record of {} left unsettled ({})", snap.ref.to_string(),
                                  static_cast<int>(snap.state.kind)));
            continue;
          }
          recorded.insert(snap.ref.id());
          verify(snap.ref, &snap);
          counts_.verified_recorded += 1;
        }
      }
      for (const auto& o : store_->objects()) {
        if (!o.pinned_by.empty()) {
          violation(fmt::format("{} is still pinned by {} worker(s) after every worker died", o.ref.to_string(),
                                o.pinned_by.size()));
        }
        if (o.state == ObjectState::Sealed && recorded.count(o.ref.id()) == 0) {
          verify(o.ref, nullptr);
          counts_.verified_unrecorded += 1;
        } else if (o.state != ObjectState::Sealed && o.state != ObjectState::Unfilled &&
                   o.state != ObjectState::Abandoned) {
          violation(fmt::format("{} is {} with every worker dead", o.ref.to_string(), sealstore::to_string(o.state)));
        }
      }
      // Erase everything: the free space must be exactly an empty segment's.
      for (const auto& o : store_->objects()) {
        try {
          store_->erase(o.ref);
        } catch (const Error& e) {
          violation(fmt::format("final erase of {}: {}", o.ref.to_string(), e.what()));
        }
      }
      for (std::uint32_t w = 0; w < cfg_.workers; ++w) {
        for (std::uint32_t n = 0; n < kNamesPerWorker; ++n) {
          if (auto r = store_->lookup(object_name(w, n))) {
            violation(fmt::format("name '{}' still resolves to {} after everything was erased", object_name(w, n),
                                  r->to_string()));
          }
        }
      }
      // Detached, the supervisor gives back the entries and extents its
      // cache held: then nothing may be left but an empty segment.
      sealstore::AttachOptions observer;
      observer.observer = true;
      store_.emplace(Store::attach(cfg_.segment, observer));
      end_ = store_->info();
      empty_ = empty_segment_info();
      if (cfg_.spilling()) {
        // Every spill file went with its object.
        std::error_code ec;
        std::size_t files = 0;
        for (const auto& f : std::filesystem::recursive_directory_iterator(cfg_.spill_dir, ec)) {
          files += f.is_regular_file() ? 1U : 0U;
        }
        if (files != 0 || end_.spilled_objects != 0 || end_.spilled_bytes != 0) {
          violation(
              fmt::format("after erasing everything: {} spill file(s) left, {} objects ({} bytes) counted "
                          "spilled",
                          files, end_.spilled_objects, end_.spilled_bytes));
        }
      }
      if (end_.objects != 0 || end_.used != 0 || end_.largest_free != end_.capacity || end_.free_extents != 1 ||
          end_.used != empty_.used || end_.largest_free != empty_.largest_free ||
          end_.free_extents != empty_.free_extents) {
        violation(
            fmt::format("after erasing everything: {} objects, {} bytes used, largest free {} in {} extents; an "
                        "empty segment has 0, {}, {} in {}",
                        end_.objects, end_.used, end_.largest_free, end_.free_extents, empty_.used, empty_.largest_free,
                        empty_.free_extents));
      }
    } catch (const Error& e) {
      violation(fmt::format("final checks: {}", e.what()));
    }
  }

  void verify(const RemoteRef& ref, const Snapshot* snap) {
    try {
      std::optional<sealstore::View> v = store_->try_fetch(ref);
      if (!v) {
        violation(fmt::format("sealed {} is not sealed at the end", ref.to_string()));
        return;
      }
      std::string err = check_object(v->bytes(), ref.id());
      if (err.empty() && snap != nullptr) {
        ObjectHeader h{};
        std::memcpy(&h, v->bytes().data(), sizeof h);
        if (v->size() != snap->size || h.sum != snap->sum) err = "it is not the object recorded";
      }
      if (!err.empty()) violation(fmt::format("sealed {} is damaged: {}", ref.to_string(), err));
    } catch (const Error& e) {
      violation(fmt::format("sealed {} was lost: {}", ref.to_string(), e.what()));
    }
  }

  sealstore::SegmentInfo empty_segment_info() const {
    std::string name = cfg_.segment + "-empty";
    sealstore::CreateOptions o;
    o.capacity = cfg_.capacity;
    o.max_objects = cfg_.max_objects;
    o.max_names = cfg_.workers * kNamesPerWorker;
    Store::remove(name);
    sealstore::SegmentInfo i = Store::create(name, o).info();
    Store::remove(name);
    return i;
  }

  std::uint64_t total_violations() const {
    std::uint64_t v = 0;
    for (std::uint32_t w = 0; w <= cfg_.workers; ++w) v += ledger_.area(w).violations.load();
    return v;
  }

  void report(Clock::duration elapsed) const {
    std::array<std::uint64_t, kOps> ops{};
    std::uint64_t total = 0;
    std::uint64_t max_ns = 0;
    std::uint32_t max_op = 0;
    for (std::uint32_t w = 0; w <= cfg_.workers; ++w) {
      const WorkerArea& a = ledger_.area(w);
      for (std::uint32_t op = 0; op < kOps; ++op) {
        ops[op] += a.ops[op].load();  // NOLINT
        total += a.ops[op].load();    // NOLINT
      }
      if (a.max_latency_ns.load() > max_ns) {
        max_ns = a.max_latency_ns.load();
        max_op = a.max_latency_op.load();
      }
    }
    double secs = std::chrono::duration<double>(elapsed).count();
    fmt::print("sealstore-torture: {:.1f} s, {} workers, segment '{}' ({} MiB, {} objects), seed {}\n", secs,
               cfg_.workers, cfg_.segment, cfg_.capacity >> 20U, cfg_.max_objects, cfg_.seed);
    fmt::print("operations: {} ({:.0f}/s)\n ", total, static_cast<double>(total) / secs);
    for (std::uint32_t op = 0; op < kOps; ++op) fmt::print(" {} {}", op_name(op), ops[op]);  // NOLINT
    fmt::print("\nkills: {} (SIGKILL, one every {}-{} ms), spawns: {}, retired: {}\n", counts_.kills,
               cfg_.kill_min.count(), cfg_.kill_max.count(), counts_.spawns, counts_.retired);
    if (cfg_.spilling()) {
      fmt::print("spilling into {}: {} spills, {} restores; at most {} objects ({} MiB) ever sealed at once\n",
                 cfg_.spill_dir, end_.spills, end_.restores, peak_objects_, peak_bytes_ >> 20U);
    }
    if (cfg_.hostile) {
      std::array<std::uint64_t, 16> errors{};
      for (std::uint32_t w = 0; w <= cfg_.workers; ++w) {
        for (std::size_t c = 0; c < errors.size(); ++c) errors[c] += ledger_.area(w).errors[c].load();  // NOLINT
      }
      fmt::print("hostile peer: {} bytes scribbled over the header and tables (one run every {} us on average)\n",
                 ledger_.area(me_).scribbles.load(), cfg_.scribble_every.count());
      fmt::print("errors the honest processes got:");
      for (std::size_t c = 1; c < errors.size(); ++c) {
        if (errors[c] != 0) fmt::print(" {} {}", sealstore::to_string(static_cast<Errc>(c)), errors[c]);  // NOLINT
      }
      fmt::print("\nrecoveries: {} dead processes cleaned up by the supervisor's recover()\n",
                 counts_.reaped_by_recover);
      fmt::print("longest operation: {:.1f} ms ({}), bound {} ms\n", static_cast<double>(max_ns) / 1e6, op_name(max_op),
                 cfg_.bound.count());
    } else {
      report_checks(max_ns, max_op);
    }
    std::uint64_t v = total_violations();
    fmt::print("violations: {}\n", v);
    for (std::uint32_t w = 0; w <= cfg_.workers; ++w) {
      const WorkerArea& a = ledger_.area(w);
      if (a.violations.load() != 0) {
        fmt::print("  {} {}: {} violation(s), first: {}\n", w == me_ ? "supervisor" : "worker", w, a.violations.load(),
                   a.message);
      }
    }
    fmt::print("{}\n", v == 0 ? "PASS" : "FAIL");
  }

  void report_checks(std::uint64_t max_ns, std::uint32_t max_op) const {
    fmt::print(
        "recoveries: {} dead processes cleaned up ({} by the supervisor's recover()); {} of them died holding "
        "the lock\n",
        end_.recoveries, counts_.reaped_by_recover, end_.lock_repairs);
    fmt::print("settled after deaths: {} pending records adopted, {} dropped, {} erase claims, {} orphans erased\n",
               counts_.adopted, counts_.dropped, counts_.erase_resolved, counts_.orphans);
    fmt::print("objects verified at the end: {} ({} in the ledger + {} not in it)\n",
               counts_.verified_recorded + counts_.verified_unrecorded, counts_.verified_recorded,
               counts_.verified_unrecorded);
    fmt::print("longest operation: {:.1f} ms ({}), bound {} ms\n", static_cast<double>(max_ns) / 1e6, op_name(max_op),
               cfg_.bound.count());
    fmt::print(
        "after erasing everything: {} objects, used {}, largest free {} of {}, {} free extent(s) "
        "(empty segment: used {}, largest free {}, {} extent(s))\n",
        end_.objects, end_.used, end_.largest_free, end_.capacity, end_.free_extents, empty_.used, empty_.largest_free,
        empty_.free_extents);
  }

  const Config& cfg_;
  Ledger ledger_;
  std::uint32_t me_;
  std::mt19937_64 rng_;
  std::optional<Store> store_;
  std::uint32_t tag_ = 0;
  std::vector<Proc> procs_;
  pid_t scribbler_ = -1;
  Counts counts_;
  sealstore::SegmentInfo end_;
  sealstore::SegmentInfo empty_;
  std::uint64_t peak_objects_ = 0;
  std::uint64_t peak_bytes_ = 0;
};

constexpr const char* kUsage =
    "usage: sealstore-torture [--seconds N] [--workers N] [--capacity-mib N] [--max-objects N]\n"
    "                         [--max-object-kib N] [--kill-ms MIN-MAX] [--bound-ms N] [--seed N]\n"
    "                         [--hostile] [--scribble-us N] [--spill | --spill-dir DIR]\n"
    "                         [--verbose] [--help]\n";

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "sealstore-torture: %s\n%s", why.c_str(), kUsage);
  std::exit(2);
}

[[noreturn]] void help() {
  std::printf(
      "%s\n"
      "Runs worker processes doing random store operations on one segment while the\n"
      "supervisor SIGKILLs one every few milliseconds, then checks that nothing sealed\n"
      "was lost or damaged and that every byte of space came back. Exits 0 when no\n"
      "violation was found, 1 otherwise, 2 on bad arguments.\n\n"
      "  --seconds N         how long to run (default 10)\n"
      "  --workers N         worker processes (default 4)\n"
      "  --capacity-mib N    segment size (default 64)\n"
      "  --max-objects N     object table entries (default 4096)\n"
      "  --max-object-kib N  largest object (default 256)\n"
      "  --kill-ms MIN-MAX   time between SIGKILLs (default 1-8)\n"
      "  --bound-ms N        longest any operation may take (default 5000)\n"
      "  --seed N            random seed (default: a random one, printed)\n"
      "  --hostile           add a peer that scribbles random bytes over the segment's\n"
      "                      tables; honest workers may get errors, never crash or hang\n"
      "  --scribble-us N     mean time between the hostile peer's writes (default 500)\n"
      "  --spill             the segment spills into a fresh directory (removed at the\n"
      "                      end); the workload grows to several times the segment\n"
      "  --spill-dir DIR     the same, into DIR (which must not exist yet)\n"
      "  --verbose           report progress as it goes\n",
      kUsage);
  std::exit(0);
}

std::uint64_t number(std::string_view flag, std::string_view text) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size())
    usage(fmt::format("{} needs a number, not '{}'", flag, text));
  return v;
}

Config parse(int argc, char** argv) {
  Config c;
  bool spill = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= args.size()) usage(fmt::format("{} needs a value", a));
      return args[++i];
    };
    if (a == "--help" || a == "-h") help();
    if (a == "--seconds") {
      c.seconds = number(a, value());
    } else if (a == "--workers") {
      c.workers = static_cast<std::uint32_t>(number(a, value()));
    } else if (a == "--capacity-mib") {
      c.capacity = number(a, value()) << 20U;
    } else if (a == "--max-objects") {
      c.max_objects = static_cast<std::uint32_t>(number(a, value()));
    } else if (a == "--max-object-kib") {
      c.max_object = number(a, value()) << 10U;
    } else if (a == "--kill-ms") {
      std::string_view v = value();
      auto dash = v.find('-');
      if (dash == std::string_view::npos) usage("--kill-ms needs MIN-MAX");
      c.kill_min = milliseconds(number(a, v.substr(0, dash)));
      c.kill_max = milliseconds(number(a, v.substr(dash + 1)));
    } else if (a == "--bound-ms") {
      c.bound = milliseconds(number(a, value()));
    } else if (a == "--seed") {
      c.seed = number(a, value());
    } else if (a == "--hostile") {
      c.hostile = true;
    } else if (a == "--scribble-us") {
      c.scribble_every = std::chrono::microseconds(number(a, value()));
    } else if (a == "--spill") {
      spill = true;
    } else if (a == "--spill-dir") {
      c.spill_dir = value();
      if (c.spill_dir.empty()) usage("--spill-dir needs a directory");
      if (::access(c.spill_dir.c_str(), F_OK) == 0) usage(fmt::format("--spill-dir {} exists already", c.spill_dir));
    } else if (a == "--verbose") {
      c.verbose = true;
    } else {
      usage(fmt::format("unknown argument '{}'", a));
    }
  }
  if (c.workers < 1 || c.workers > 64) usage("--workers must be 1 to 64");
  if (spill && !c.spill_dir.empty()) usage("--spill and --spill-dir do not go together");
  if ((spill || !c.spill_dir.empty()) && c.hostile) usage("--spill and --hostile do not go together");
  if (spill) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/sealstore-torture-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) usage(fmt::format("cannot make a directory {}", pattern));
    c.spill_dir = pattern + "/spill";
  }
  if (c.kill_min.count() < 1 || c.kill_max < c.kill_min) usage("--kill-ms needs 1 <= MIN <= MAX");
  if (c.max_objects < c.workers * 16) usage("--max-objects must be at least 16 per worker");
  if (c.max_object < kMinObject || c.max_object > c.capacity / 4)
    usage("--max-object-kib must be under a quarter of the capacity");
  std::uint64_t r = 0;
  if (::getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) r = static_cast<std::uint64_t>(::getpid());
  if (c.seed == 0) c.seed = r | 1U;
  // A fresh, unguessable name: created with O_EXCL, so nothing planted there is used.
  c.segment = fmt::format("torture-{}-{:016x}", ::getpid(), r * 0x9E3779B97F4A7C15ULL);
  return c;
}

}  // namespace
}  // namespace torture

int main(int argc, char** argv) {
  torture::Config cfg = torture::parse(argc, argv);
  try {
    torture::Supervisor s(cfg);
    return s.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sealstore-torture: %s\n", e.what());
    return 1;
  }
}
