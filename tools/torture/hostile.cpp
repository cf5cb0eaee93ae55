// --hostile: the threat model put to the test. A scribbler process writes
// random bytes over the segment's header and tables, as a buggy or hostile
// peer with write access could, while honest workers put, fetch, erase,
// name and inspect. The honest ones may get any sealstore::Error (that is
// what garbage earns); they must never crash, never read outside the
// segment's mappings and never block past the bound.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "worker.hpp"

namespace torture {

using sealstore::Error;
using sealstore::RemoteRef;
using sealstore::Store;
using sealstore::View;
using Clock = std::chrono::steady_clock;

namespace {

// A segment's identity, geometry and spill settings sit in the first 448
// bytes of its file,
// written once at creation and checked once by each process as it attaches
// (after which it keeps its own copy). A peer that rewrote them could only
// keep new processes from attaching: the scribbler leaves them be, so that
// killed workers can come back. The lock word's line starts right after
// (src/segment/layout.hpp asserts it), and is fair game.
constexpr std::uint64_t kIdentityBytes = 448;

struct Range {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
};

// The mappings of `path` in this process, from /proc/self/maps.
std::vector<Range> mappings_of(const std::string& path) {
  std::vector<Range> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.size() < path.size() || line.compare(line.size() - path.size(), path.size(), path) != 0) continue;
    std::istringstream in(line);
    std::string span;
    in >> span;
    auto dash = span.find('-');
    if (dash == std::string::npos) continue;
    out.push_back({std::stoull(span.substr(0, dash), nullptr, 16), std::stoull(span.substr(dash + 1), nullptr, 16)});
  }
  return out;
}

class HostileWorker {
 public:
  HostileWorker(const Config& cfg, const Ledger& ledger, std::uint32_t index, std::uint64_t life)
      : cfg_(cfg),
        ledger_(ledger),
        index_(index),
        area_(ledger.area(index)),
        rng_(cfg.seed ^ (0x9E3779B97F4A7C15ULL * (index + 1)) ^ (0xC2B2AE3D27D4EB4FULL * (life + 1))) {}

  int run() {
    auto start = Clock::now();
    while (!store_) {
      try {
        store_.emplace(Store::attach(cfg_.segment));
      } catch (const Error& e) {
        count(e);
        if (Clock::now() - start > cfg_.bound) {
          ledger_.violation(index_, fmt::format("could not attach for {} ms: {}", cfg_.bound.count(), e.what()));
          return 3;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    note(kAttach, start);
    mapped_ = mappings_of(Store::path_of(cfg_.segment));
    for (;;) {
      auto op = static_cast<std::uint32_t>(rng_() % 12);
      start = Clock::now();
      try {
        perform(op);
      } catch (const Error& e) {
        count(e);
      }
      note(op, start);
    }
  }

 private:
  void count(const Error& e) {
    auto code = static_cast<std::size_t>(e.code());
    if (code < 16) area_.errors[code].fetch_add(1, std::memory_order_relaxed);  // NOLINT
  }

  void note(std::uint32_t op, Clock::time_point start) {
    note_latency(ledger_, index_, op, Clock::now() - start, cfg_.bound);
    area_.ops[op].fetch_add(1, std::memory_order_relaxed);  // NOLINT
  }

  // Every byte a view hands out must lie in one of the segment's mappings;
  // reading them all must not fault.
  void check(const View& v) {
    auto lo = reinterpret_cast<std::uintptr_t>(v.bytes().data());
    std::uintptr_t hi = lo + v.size();
    bool inside = v.size() == 0;
    for (const Range& r : mapped_) inside = inside || (lo >= r.begin && hi <= r.end);
    if (!inside) {
      ledger_.violation(index_, fmt::format("a view of {} ({} bytes at {:#x}) lies outside the segment's mappings",
                                            v.ref().to_string(), v.size(), lo));
      return;
    }
    std::uint64_t sum = 0;
    for (std::byte b : v.bytes()) sum += static_cast<std::uint8_t>(b);
    sink_ += sum;
  }

  RemoteRef any_ref() {
    if (refs_.empty() || rng_() % 8 == 0) {
      // Now and then a ref made up from the table: whatever is there.
      std::uint32_t tag = store_->info().segment_tag;
      return RemoteRef(tag, ((rng_() % 4 + 1) << 32U) | (rng_() % 4096), 1, 1);
    }
    return refs_[rng_() % refs_.size()];
  }

  void remember(const RemoteRef& r) {
    if (refs_.size() >= 64) refs_.erase(refs_.begin() + static_cast<std::ptrdiff_t>(rng_() % refs_.size()));
    refs_.push_back(r);
  }

  void perform(std::uint32_t op) {
    auto small = std::chrono::milliseconds(20);
    switch (op) {
      case 0: remember(store_->put(std::vector<std::uint8_t>(1 + rng_() % 8000, 7))); break;
      case 1: {
        sealstore::Writer w = store_->create_writer(64 + rng_() % (cfg_.max_object - 64));
        std::memset(w.bytes().data(), 1, w.bytes().size());
        remember(std::move(w).seal());
        break;
      }
      case 2: check(store_->fetch(any_ref(), small)); break;
      case 3: {
        auto v = store_->materialize<std::vector<std::byte>>(any_ref(), small);
        sink_ += v.size();
        break;
      }
      case 4: store_->erase(any_ref()); break;
      case 5: {
        View v = store_->fetch(any_ref(), small);
        check(v);
        if (held_.size() >= 8) held_.erase(held_.begin());
        held_.push_back(std::move(v));
        break;
      }
      case 6:
        if (!held_.empty()) {
          check(held_.back());
          held_.pop_back();
        }
        break;
      case 7: store_->bind(object_name(index_, static_cast<std::uint32_t>(rng_() % kNamesPerWorker)), any_ref()); break;
      case 8:
        if (auto r = store_->lookup(object_name(index_, static_cast<std::uint32_t>(rng_() % kNamesPerWorker)))) {
          check(store_->fetch(*r, small));
        }
        break;
      case 9: store_->recover(); break;
      case 10: {
        sealstore::SegmentInfo i = store_->info();
        sink_ += i.used + store_->objects().size() + store_->processes().size();
        // Seal events, read from a ring the scribbler writes over too:
        // whatever they say, the refs they name are only refs.
        if (!events_) events_.emplace(store_->subscribe());
        for (int k = 0; k < 32; ++k) {
          auto ev = events_->try_next();
          if (!ev) break;
          remember(ev->ref);
        }
        break;
      }
      default: {
        std::vector<RemoteRef> some;
        some.reserve(8);
        for (int k = 0; k < 8; ++k) some.push_back(any_ref());
        for (const View& v : store_->fetch_many(some, sealstore::FetchOptions{small, {}})) check(v);
        break;
      }
    }
  }

  const Config& cfg_;
  const Ledger& ledger_;
  std::uint32_t index_;
  WorkerArea& area_;
  std::mt19937_64 rng_;
  std::optional<Store> store_;
  std::vector<Range> mapped_;
  std::vector<RemoteRef> refs_;
  std::vector<View> held_;  // declared after store_: destroyed first
  std::optional<sealstore::Subscription> events_;
  std::uint64_t sink_ = 0;
};

}  // namespace

int run_hostile_worker(const Config& cfg, const Ledger& ledger, std::uint32_t index, std::uint64_t life) {
  HostileWorker w(cfg, ledger, index, life);
  return w.run();
}

void run_scribbler(const Config& cfg, const Ledger& ledger, std::uint32_t area) {
  int fd = ::open(Store::path_of(cfg.segment).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) ::_exit(20);
  sealstore::SegmentInfo info;
  {
    sealstore::AttachOptions o;
    o.observer = true;
    info = Store::attach(cfg.segment, o).info();
  }
  std::uint64_t tables_end = info.file_size - info.capacity;  // the data region is the file's tail
  void* p = ::mmap(nullptr, tables_end, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) ::_exit(21);
  auto* base = static_cast<unsigned char*>(p);
  std::mt19937_64 rng(cfg.seed ^ 0x5C81BB1E5ULL);
  std::exponential_distribution<double> gap(1.0 / static_cast<double>(cfg.scribble_every.count()));
  std::atomic<std::uint64_t>& scribbles = ledger.area(area).scribbles;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(gap(rng))));
    // A fifth of the scribbles hit the header's page (the lock, the
    // counters, the live-slot mask), the rest anywhere in the tables.
    std::uint64_t at = rng() % 5 == 0 ? kIdentityBytes + rng() % (4096 - kIdentityBytes)
                                      : kIdentityBytes + rng() % (tables_end - kIdentityBytes);
    std::uint64_t len = std::min<std::uint64_t>(1 + rng() % 16, tables_end - at);
    for (std::uint64_t k = 0; k < len; ++k) {
      __atomic_store_n(base + at + k, static_cast<unsigned char>(rng()), __ATOMIC_RELAXED);  // NOLINT
    }
    scribbles.fetch_add(len, std::memory_order_relaxed);
  }
}

}  // namespace torture
