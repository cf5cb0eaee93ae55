// The sealstore tour: the Julia notebook on RemoteRef, fetch, put!, addprocs
// and @everywhere replayed with sealstore, step by step. After each step it
// prints every process's memory (shared segment and private, from
// /proc/PID/smaps) and checks what the step claims; it exits non-zero if
// any check fails, so it doubles as an end-to-end test.
//
//   sealstore-tour [N] [--shm-bytes BYTES]
//
// N is the matrix side, 500 to 100000 (default 10000: 800 MB of f64).
// When /dev/shm or memory cannot hold what the tour needs, the matrix is
// scaled down. --shm-bytes pretends /dev/shm has only that much room (to
// try the scaling).
#include <poll.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "sealstore/sealstore.hpp"

namespace {

using namespace sealstore;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20U;

// A sanitizer maps shadow memory for what a process touches, a multiple of
// it under ThreadSanitizer: private growth then has no upper bound to check.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
constexpr std::uint64_t kSmallSide = 100;  // the matrix fetch time is compared with

double mib(std::uint64_t bytes) { return static_cast<double>(bytes) / static_cast<double>(kMiB); }

// Deterministic pseudo-random doubles in [0, 1).
struct Rng {
  std::uint64_t s;
  double next() {
    s ^= s << 13U;
    s ^= s >> 7U;
    s ^= s << 17U;
    return static_cast<double>(s >> 11U) * 0x1.0p-53;
  }
};

// ---- what the workers run (registered in every process of this program)

std::vector<WorkerId> workers_seen(Context& cx) { return cx.workers(); }
SEALSTORE_REGISTER("tour.workers_seen", workers_seen);

std::string fetch_string(Context& cx, RemoteRef r) {
  std::string s(cx.store().fetch(r).as_string());
  fmt::print("    From worker {}: fetch({}) = \"{}\"\n", cx.myid(), r.to_string(), s);
  std::fflush(stdout);
  return s;
}
SEALSTORE_REGISTER("tour.fetch_string", fetch_string);

void fill_string(Context& cx, RemoteRef r, const std::string& s) { cx.store().put(r, s); }
SEALSTORE_REGISTER("tour.fill_string", fill_string);

struct CornerRead {
  double corner_sum;
  double big_ns;    // median of fetch + read of the 5x5 corner
  double small_ns;  // the same for a kSmallSide matrix
};

CornerRead read_corner(Context& cx, RemoteRef big, RemoteRef small) {
  auto time_it = [&](RemoteRef r, double& sum, std::vector<double>& row) {
    std::vector<double> ns;
    for (int i = 0; i < 201; ++i) {
      auto t0 = Clock::now();
      View v = cx.store().fetch(r);
      NdView<double> c = v.as_ndarray<double>().slice({{0, 5}, {0, 5}});
      double s = 0;
      for (std::uint64_t a = 0; a < 5; ++a) {
        for (std::uint64_t b = 0; b < 5; ++b) s += c(a, b);
      }
      auto t1 = Clock::now();
      sum = s;
      row.assign(&c(0, 0), &c(0, 0) + 5);
      ns.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    }
    std::nth_element(ns.begin(), ns.begin() + 100, ns.end());
    return ns[100];
  };
  CornerRead out{};
  std::vector<double> row;
  double ignored = 0;
  out.small_ns = time_it(small, ignored, row);
  out.big_ns = time_it(big, out.corner_sum, row);
  fmt::print("    From worker {}: fetch(rr)[1:5,1:5] first row: {:.4f}\n", cx.myid(), fmt::join(row, " "));
  std::fflush(stdout);
  return out;
}
SEALSTORE_REGISTER("tour.read_corner", read_corner);

struct CopyCheck {
  double copy00;  // the worker's copy after it changed it
  double view00;  // the sealed original, read through a view
};

NdArray<double> g_mat_worker;  // worker 2's own copy (Julia's mat_worker)

CopyCheck materialize_and_change(Context& cx, RemoteRef m) {
  g_mat_worker = cx.store().materialize<NdArray<double>>(m);
  g_mat_worker(0, 0) = -20.0;
  View v = cx.store().fetch(m);
  return CopyCheck{g_mat_worker(0, 0), v.as_ndarray<double>()(0, 0)};
}
SEALSTORE_REGISTER("tour.materialize_and_change", materialize_and_change);

std::vector<NdArray<double>> g_big_mats;  // worker 2's own allocations (Julia's big_mats)

void allocate_big(std::uint64_t count, std::uint64_t n) {
  Rng rng{0x9e3779b97f4a7c15ULL};
  for (std::uint64_t k = 0; k < count; ++k) {
    NdArray<double> a({n, n});
    for (double& x : a.flat()) x = rng.next();
    g_big_mats.push_back(std::move(a));
  }
}
SEALSTORE_REGISTER("tour.allocate_big", allocate_big);

RemoteRef make_ref_for(Context& cx, WorkerId where) { return cx.store().make_ref(where); }
SEALSTORE_REGISTER("tour.make_ref_for", make_ref_for);

double fetch_f64(Context& cx, RemoteRef r) { return cx.store().fetch(r).as<double>(); }
SEALSTORE_REGISTER("tour.fetch_f64", fetch_f64);

std::vector<double> fetch_vec(Context& cx, RemoteRef r) {
  auto s = cx.store().fetch(r).as_span<double>();
  return {s.begin(), s.end()};
}
SEALSTORE_REGISTER("tour.fetch_vec", fetch_vec);

void bind_y(Context& cx, double v) { cx.store().bind("y", cx.store().put(v)); }
SEALSTORE_REGISTER("tour.bind_y", bind_y);

double lookup_f64(Context& cx, std::string name) {
  auto r = cx.store().lookup(name);
  if (!r) throw Error(Errc::NotFound, fmt::format("worker {} finds no name '{}'", cx.myid(), name));
  return cx.store().fetch(*r).as<double>();
}
SEALSTORE_REGISTER("tour.lookup_f64", lookup_f64);

// ---- memory, as ps should have shown it

struct Mem {
  std::uint64_t segment = 0;  // resident bytes of the mappings of the segment's file
  std::uint64_t priv = 0;     // anonymous resident bytes of every other mapping
};

// Per mapping, by file, not by the kernel's shared/private split: a shared
// page counts as "Private" while only one process maps it, so the segment
// (and the program's own text, once the workers are gone) would show up as
// private. Private memory is what the process allocated itself: the
// anonymous pages of its heap, stacks and private mappings.
std::optional<Mem> read_mem(pid_t pid, const std::string& segment_path) {
  std::ifstream in(fmt::format("/proc/{}/smaps", pid));
  if (!in) return std::nullopt;
  Mem m;
  bool in_segment = false;
  std::string line;
  auto kib = [](const std::string& l) {
    std::istringstream ss(l.substr(l.find(':') + 1));
    std::uint64_t v = 0;
    ss >> v;
    return v * 1024;
  };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (std::isxdigit(static_cast<unsigned char>(line[0])) != 0 && line.find('-') != std::string::npos &&
        line.find(':') > line.find(' ')) {
      // "start-end perms offset dev inode   path"
      std::istringstream ss(line);
      std::string range, perms, offset, dev, inode;
      ss >> range >> perms >> offset >> dev >> inode;
      std::string path;
      std::getline(ss >> std::ws, path);
      in_segment = path == segment_path;
    } else if (line.rfind("Rss:", 0) == 0) {
      if (in_segment) m.segment += kib(line);
    } else if (line.rfind("Anonymous:", 0) == 0) {
      if (!in_segment) m.priv += kib(line);
    }
  }
  return m;
}

std::uint64_t file_resident(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

std::uint64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

bool process_ended(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return true;  // no such process
  pollfd p{fd, POLLIN, 0};
  bool ended = ::poll(&p, 1, 0) == 1;
  ::close(fd);
  return ended;
}

// ---- the tour

class Tour {
 public:
  Tour(std::uint64_t n, std::string segment) : n_(n), bytes_(n * n * sizeof(double)), segment_(std::move(segment)) {
    // Sanitizer builds map shadow memory for what a process touches: up to
    // 1 MiB of growth counts as none; the smallest matrix (500x500) is 1.9 MiB.
    quiet_ = std::clamp<std::uint64_t>(bytes_ / 2, kMiB, 4 * kMiB);
  }

  int run();

 private:
  template <class... A>
  void say(fmt::format_string<A...> f, A&&... a) {
    fmt::print("  {}\n", fmt::format(f, std::forward<A>(a)...));
    std::fflush(stdout);
  }
  void step(int k, std::string_view title) {
    step_ = k;
    step_failures_ = 0;
    fmt::print("\n== step {} of 8: {}\n", k, title);
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
  // Prints every attached process's memory; remembers it for the deltas.
  void table();
  // Private growth of the process of worker id since the previous table.
  std::int64_t grew(WorkerId id) const {
    auto now = now_.find(id);
    auto before = before_.find(id);
    if (now == now_.end() || before == before_.end()) return 0;
    return static_cast<std::int64_t>(now->second.priv) - static_cast<std::int64_t>(before->second.priv);
  }
  bool others_quiet(WorkerId except) {
    bool ok = true;
    for (const auto& [id, m] : now_) {
      if (id == except) continue;
      ok = expect(grew(id) < static_cast<std::int64_t>(quiet_),
                  fmt::format("the private memory of worker {} grew by {:.1f} MiB", id,
                              mib(static_cast<std::uint64_t>(std::max<std::int64_t>(grew(id), 0))))) &&
           ok;
    }
    return ok;
  }

  std::uint64_t n_;
  std::uint64_t bytes_;
  std::string segment_;
  std::uint64_t quiet_;  // "no growth": less than this many bytes
  std::optional<Pool> pool_;
  std::string path_;
  std::map<WorkerId, Mem> before_, now_;
  int step_ = 0;
  int failures_ = 0;
  int step_failures_ = 0;
};

void Tour::table() {
  before_ = now_;
  now_.clear();
  fmt::print("  {:>8} {:>3} {:<7} {:>12} {:>12} {:>11}\n", "pid", "id", "role", "segment", "private", "+private");
  for (const ProcessInfo& p : pool_->store().processes()) {
    auto m = read_mem(p.pid, path_);
    if (!m) continue;
    now_[p.id] = *m;
    std::string delta = before_.count(p.id) != 0 ? fmt::format("{:+.1f} MiB", static_cast<double>(grew(p.id)) / kMiB)
                                                 : std::string("new");
    fmt::print("  {:>8} {:>3} {:<7} {:>8.1f} MiB {:>8.1f} MiB {:>11}\n", p.pid, p.id, to_string(p.role),
               mib(m->segment), mib(m->priv), delta);
  }
  SegmentInfo si = pool_->store().info();
  fmt::print("  segment: {} objects, {:.1f} MiB held; its file takes {:.1f} MiB of {}, once for all processes\n",
             si.objects, mib(si.used), mib(file_resident(path_)), path_.substr(0, path_.rfind('/')));
  std::fflush(stdout);
}

int Tour::run() {
  // 1. --------------------------------------------------------------------
  step(1, "a segment and a pool of 2 workers; workers() before and after");
  PoolOptions o;
  o.store.capacity = bytes_ + kSmallSide * kSmallSide * sizeof(double) + 16 * kMiB;
  pool_.emplace(Pool::create(segment_, o));
  Pool& pool = *pool_;
  Store& store = pool.store();
  path_ = store.info().path;
  std::vector<WorkerId> before = pool.workers();
  say("workers() before add: [{}]   (Julia: [1], the master counted as a worker)", fmt::join(before, ", "));
  std::vector<WorkerId> added = pool.add(2);
  std::vector<WorkerId> after = pool.workers();
  say("add(2) -> [{}]; workers() after: [{}]; myid() = {}", fmt::join(added, ", "), fmt::join(after, ", "),
      pool.myid());
  expect(before.empty(), "workers() before add is not empty");
  expect(after == std::vector<WorkerId>({2, 3}), "workers() after add(2) is not [2, 3]");
  for (const RemoteRef& r : pool.everywhere("tour.workers_seen")) {
    auto seen = store.materialize<std::vector<WorkerId>>(r);
    say("worker {} sees workers() = [{}]   (Julia: [2,3] on one, [3,2] on the other)", r.where(),
        fmt::join(seen, ", "));
    expect(seen == after, fmt::format("worker {} sees another order", r.where()));
    store.erase(r);
  }
  table();
  explain("worker ids only, ascending, the same from every process; the owner is worker 1 but not a worker");

  // 2. --------------------------------------------------------------------
  step(2, "put a string, fetch it everywhere; a second put fails at once; a third party fills a ref");
  RemoteRef rr = store.make_ref();
  say("rr = make_ref() -> {}", rr.to_string());
  store.put(rr, std::string("aardvark"));
  for (const RemoteRef& r : pool.everywhere("tour.fetch_string", rr)) {
    expect(store.materialize<std::string>(r) == "aardvark", fmt::format("worker {} fetched another string", r.where()));
    store.erase(r);
  }
  auto t0 = Clock::now();
  std::string second;
  try {
    store.put(rr, std::string("anteater"));
  } catch (const Error& e) {
    second = e.what();
    expect(e.code() == Errc::AlreadySealed, "the second put did not fail with AlreadySealed");
  }
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  say("second put(rr, \"anteater\") after {} us: {}   (Julia: hangs for ever)", took.count(), second);
  expect(!second.empty(), "the second put did not fail");
  expect(store.materialize<std::string>(rr) == "aardvark", "the sealed string changed");
  RemoteRef for2 = store.make_ref(2);
  say("rr = make_ref(2) -> {}   (where = 2: meant for worker 2; whence = 1: made here)", for2.to_string());
  pool.call(3, "tour.fill_string", for2, std::string("sandwich"));
  auto lunch = store.materialize<std::string>(for2);
  ObjectInfo filled{};
  for (const ObjectInfo& oi : store.objects()) {
    if (oi.ref == for2) filled = oi;
  }
  say("worker 3 filled it: fetch(rr) = \"{}\", made by worker {}, sealed by worker {}", lunch, filled.creator,
      filled.sealed_by);
  expect(lunch == "sandwich" && filled.sealed_by == 3 && filled.creator == 1,
         "worker 3 could not fill the ref made for worker 2");
  table();
  explain("a ref is filled once; any attached process may fill it; a second fill is an error, not a hang");

  // 3. --------------------------------------------------------------------
  step(3, fmt::format("put a {}x{} f64 matrix ({:.0f} MiB) once; both workers fetch views and read a 5x5 corner", n_,
                      n_, mib(bytes_)));
  ValueType mt = ndarray_type<double>(std::vector<std::uint64_t>{n_, n_});
  Writer w = store.create_writer(bytes_, mt);
  Rng rng{42};
  for (double& x : w.as_span<double>()) x = rng.next();
  RemoteRef mat = std::move(w).seal();
  NdArray<double> small_mat({kSmallSide, kSmallSide}, 0.5);
  RemoteRef small = store.put(small_mat);
  say("mat = {} (written in place in the segment: no private copy here)", mat.to_string());
  table();
  std::vector<std::pair<WorkerId, CornerRead>> reads;
  for (const RemoteRef& r : pool.everywhere("tour.read_corner", mat, small)) {
    reads.emplace_back(r.where(), store.materialize<CornerRead>(r));
    store.erase(r);
  }
  table();
  for (const auto& [id, rd] : reads) {
    say("worker {}: fetch + read the 5x5 corner: {:.0f} ns for {:.0f} MiB, {:.0f} ns for {:.0f} KiB (medians of 201)",
        id, rd.big_ns, mib(bytes_), rd.small_ns, static_cast<double>(kSmallSide * kSmallSide * sizeof(double)) / 1024);
    expect(rd.big_ns <= 10 * rd.small_ns + 50'000,
           fmt::format("worker {}: fetching the big matrix took {:.1f} us, the small one {:.1f} us", id,
                       rd.big_ns / 1000, rd.small_ns / 1000));
  }
  for (const auto& [id, m] : now_) {
    expect(grew(id) < static_cast<std::int64_t>(quiet_),
           fmt::format("worker {}'s private memory grew by {:.1f} MiB", id, static_cast<double>(grew(id)) / kMiB));
  }
  explain(
      "views read the shared pages where they lie: no private memory grows, and the time does not depend "
      "on the size (Julia copied the whole matrix to read one element, and again on every fetch)");

  // 4. --------------------------------------------------------------------
  step(4, "worker 2 materializes the matrix and changes its copy");
  auto check = pool.call<CopyCheck>(2, "tour.materialize_and_change", mat);
  View original = store.fetch(mat);
  double orig00 = original.as_ndarray<double>()(0, 0);
  original.reset();
  table();
  say("worker 2's copy[0,0] = {}; the sealed original[0,0] = {:.6f} (seen by worker 2: {:.6f})", check.copy00, orig00,
      check.view00);
  expect(check.copy00 == -20.0 && check.view00 == orig00 && orig00 != -20.0, "the sealed original changed");
  expect(grew(2) >= static_cast<std::int64_t>(bytes_ * 95 / 100) &&
             (kSanitized || grew(2) <= static_cast<std::int64_t>(bytes_ * 11 / 10 + 16 * kMiB)),
         fmt::format("worker 2 grew by {:.1f} MiB, not by the matrix's {:.1f} MiB", static_cast<double>(grew(2)) / kMiB,
                     mib(bytes_)));
  others_quiet(2);
  explain(
      "materialize is the one copy, in worker 2 only (its segment column rose too: it read every shared page, "
      "which costs no memory); no transient copy on the owner (Julia allocated one there until gc())");

  // 5. --------------------------------------------------------------------
  step(5, "worker 2 allocates five matrices of its own");
  pool.call(2, "tour.allocate_big", std::uint64_t{5}, n_);
  table();
  expect(grew(2) >= static_cast<std::int64_t>(bytes_ * 5 * 95 / 100),
         fmt::format("worker 2 grew by {:.1f} MiB, not by five matrices ({:.1f} MiB)",
                     static_cast<double>(grew(2)) / kMiB, mib(5 * bytes_)));
  others_quiet(2);
  explain("private memory is attributed to the process that allocates it, shared memory to the segment");

  // 6. --------------------------------------------------------------------
  step(6, "a sealed scalar and a sealed vector stay what they were sealed as");
  auto rx = pool.call<RemoteRef>(2, "tour.make_ref_for", WorkerId{1});
  double myx = 1.23;
  store.put(rx, myx);
  auto seen1 = pool.call<double>(2, "tour.fetch_f64", rx);
  myx += 1.45;
  auto seen2 = pool.call<double>(2, "tour.fetch_f64", rx);
  say("worker 2 made {}; put(rr, myx = 1.23); worker 2 fetches {}; myx += 1.45 -> {}; worker 2 fetches {}",
      rx.to_string(), seen1, myx, seen2);
  expect(seen1 == 1.23 && seen2 == 1.23, "the sealed scalar changed");
  auto rv = pool.call<RemoteRef>(2, "tour.make_ref_for", WorkerId{1});
  std::vector<double> myxvec{1.23};
  store.put(rv, myxvec);
  auto vec1 = pool.call<std::vector<double>>(2, "tour.fetch_vec", rv);
  myxvec[0] += 1.45;
  auto vec2 = pool.call<std::vector<double>>(2, "tour.fetch_vec", rv);
  say("put(rr, myxvec = [1.23]); worker 2 fetches [{}]; myxvec[0] += 1.45 -> [{}]; worker 2 fetches [{}]   "
      "(Julia: [2.68])",
      fmt::join(vec1, ", "), fmt::join(myxvec, ", "), fmt::join(vec2, ", "));
  expect(vec1 == std::vector<double>{1.23} && vec2 == std::vector<double>{1.23}, "the sealed vector changed");
  table();
  explain(
      "sealing copies the bytes into the segment: what was sealed never changes, whatever the writer does "
      "afterwards (and a Writer is consumed by seal(), so it cannot write again)");

  // 7. --------------------------------------------------------------------
  step(7, "a name bound by one process is visible from the others");
  pool.call(3, "tour.bind_y", 1.234);
  auto y_here = store.lookup("y");
  double y1 = y_here ? store.fetch(*y_here).as<double>() : 0.0;
  auto y2 = pool.call<double>(2, "tour.lookup_f64", std::string("y"));
  say(R"(worker 3: bind("y", put(1.234)); here lookup("y") -> {}; worker 2 lookup("y") -> {})", y1, y2);
  say("(Julia: @spawnat w y = 1.234 assigned y on the caller, not on w)");
  expect(y_here.has_value() && y1 == 1.234 && y2 == 1.234, "the name is not visible everywhere");
  table();
  explain("names are store-wide: bound once, seen by every attached process");

  // 8. --------------------------------------------------------------------
  step(8, "remove the workers; nothing is left behind");
  std::vector<pid_t> pids;
  for (WorkerId id : pool.workers()) pids.push_back(pool.pid(id));
  for (WorkerId id : pool.workers()) pool.remove(id);
  say("remove(2), remove(3): workers() = [{}]", fmt::join(pool.workers(), ", "));
  expect(pool.workers().empty(), "workers remain after remove");
  expect(store.processes().size() == 1, "processes other than the owner are still attached");
  for (pid_t p : pids) expect(process_ended(p), fmt::format("worker process {} still runs", p));
  table();
  pool_.reset();
  bool segment_gone = ::access(path_.c_str(), F_OK) != 0;
  siginfo_t info{};
  bool no_children = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1 && errno == ECHILD;
  say("pool destroyed: segment file {} {}; worker processes left: {}", path_, segment_gone ? "removed" : "STILL THERE",
      no_children ? "none" : "SOME");
  expect(segment_gone, "the segment file is still there");
  expect(no_children, "a child process is left");
  explain("workers finish their queue and exit; the segment goes with the pool (also on an exception or Ctrl-C)");

  fmt::print("\n{}\n", failures_ == 0 ? "tour complete: every step did what it claims"
                                      : fmt::format("tour FAILED: {} expectation(s) not met", failures_));
  return failures_ == 0 ? 0 : 1;
}

void usage() {
  fmt::print(
      "usage: sealstore-tour [N] [--shm-bytes BYTES]\n"
      "  N            matrix side, 500 to 100000 (default 10000: a 10000x10000 f64 matrix, 800 MB)\n"
      "  --shm-bytes  pretend /dev/shm has only BYTES free (suffixes K, M, G)\n");
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
  std::uint64_t mult = 1;
  if (!s.empty() && (s.back() == 'K' || s.back() == 'M' || s.back() == 'G')) {
    mult = s.back() == 'K' ? 1024 : s.back() == 'M' ? kMiB : kMiB * 1024;
    s.remove_suffix(1);
  }
  std::uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v * mult;
}

}  // namespace

int main(int argc, char** argv) {
  if (sealstore::Pool::is_worker(argc, argv)) return sealstore::Pool::worker_main(argc, argv);

  std::uint64_t n = 10000;
  std::optional<std::uint64_t> shm_limit;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      usage();
      return 0;
    }
    if (args[i] == "--shm-bytes" && i + 1 < args.size()) {
      shm_limit = parse_size(args[++i]);
      if (!shm_limit) {
        usage();
        return 2;
      }
    } else if (auto v = parse_size(args[i]); v && *v >= 500 && *v <= 100000) {
      n = *v;
    } else {
      usage();
      return 2;
    }
  }

  // Room: the segment needs the matrix once (plus a little); memory needs
  // the segment, worker 2's copy and its five matrices.
  struct statvfs fs {};
  std::uint64_t shm_free = ::statvfs("/dev/shm", &fs) == 0 ? std::uint64_t{fs.f_bavail} * fs.f_frsize : 0;
  if (shm_limit) shm_free = std::min(shm_free, *shm_limit);
  std::uint64_t avail = mem_available();
  auto bytes_of = [](std::uint64_t side) { return side * side * sizeof(double); };
  auto fits = [&](std::uint64_t side) {
    return bytes_of(side) + 24 * kMiB <= shm_free && 7 * bytes_of(side) + 256 * kMiB <= avail;
  };
  std::uint64_t asked = n;
  while (n > 500 && !fits(n)) n = std::max<std::uint64_t>(500, n * 9 / 10 / 10 * 10);
  fmt::print("sealstore tour: the Julia notebook on RemoteRef, fetch and @everywhere, replayed\n");
  if (kSanitized) fmt::print("(a sanitizer build: its shadow memory swells the private columns)\n");
  if (n != asked) {
    fmt::print(
        "/dev/shm{} has {:.0f} MiB free and {:.0f} MiB of memory is available: the {}x{} matrix ({:.0f} MiB) "
        "does not fit, so the tour uses {}x{} ({:.1f} MiB)\n",
        shm_limit ? " (as --shm-bytes pretends)" : "", mib(shm_free), mib(avail), asked, asked, mib(bytes_of(asked)), n,
        n, mib(bytes_of(n)));
  }
  if (!fits(n)) {
    fmt::print(stderr, "not even a {}x{} matrix fits here: /dev/shm has {:.0f} MiB free\n", n, n, mib(shm_free));
    return 1;
  }
  try {
    Tour tour(n, fmt::format("tour-{}", ::getpid()));
    return tour.run();
  } catch (const std::exception& e) {
    fmt::print(stderr, "tour FAILED: {}\n", e.what());
    return 1;
  }
}
