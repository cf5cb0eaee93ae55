#include "worker.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

namespace torture {

using sealstore::Errc;
using sealstore::Error;
using sealstore::RemoteRef;
using sealstore::Store;
using sealstore::View;
using Clock = std::chrono::steady_clock;

std::string object_name(std::uint32_t worker, std::uint32_t n) { return fmt::format("t{}.{}", worker, n); }

void note_latency(const Ledger& ledger, std::uint32_t index, std::uint32_t op, std::chrono::nanoseconds took,
                  std::chrono::milliseconds bound) {
  WorkerArea& a = ledger.area(index);
  auto ns = static_cast<std::uint64_t>(took.count());
  std::uint64_t cur = a.max_latency_ns.load(std::memory_order_relaxed);
  while (ns > cur) {
    if (a.max_latency_ns.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) {
      a.max_latency_op.store(op, std::memory_order_relaxed);
      break;
    }
  }
  if (took > bound) {
    ledger.violation(index,
                     fmt::format("{} blocked for {} ms, over the bound of {} ms", op_name(op),
                                 std::chrono::duration_cast<std::chrono::milliseconds>(took).count(), bound.count()));
  }
}

namespace {

// Relative weights of the operations a worker picks at random.
constexpr std::array<std::uint32_t, kOps> kWeights = {
    140,  // put
    140,  // write+seal
    250,  // fetch
    50,   // wait-fetch
    80,   // materialize
    160,  // erase (raised when the segment or the ledger fills)
    60,   // hold
    40,   // release
    30,   // bind
    40,   // lookup
    5,    // recover
    5,    // inspect
    30,   // spill (with --spill only)
    0,    // attach (once, at start)
    1,    // retire (per 10 of the others' weight units, see choose())
};

class Worker {
 public:
  Worker(const Config& cfg, const Ledger& ledger, std::uint32_t index, std::uint64_t life)
      : cfg_(cfg),
        ledger_(ledger),
        index_(index),
        area_(ledger.area(index)),
        pid_(::getpid()),
        rng_(cfg.seed ^ (0x9E3779B97F4A7C15ULL * (index + 1)) ^ (0xC2B2AE3D27D4EB4FULL * (life + 1))) {}

  int run() {
    auto start = Clock::now();
    try {
      store_.emplace(Store::attach(cfg_.segment));
    } catch (const Error& e) {
      violation(fmt::format("attach failed: {}", e.what()));
      return 3;
    }
    note(kAttach, start);
    tag_ = store_->info().segment_tag;
    area_.worker_id.store(store_->myid());
    for (std::uint64_t n = 0;; ++n) {
      if (n % 64 == 0) refresh_pressure();
      std::uint32_t op = choose();
      start = Clock::now();
      bool done = false;
      try {
        done = perform(op);
      } catch (const Error& e) {
        violation(fmt::format("{}: unexpected error {}", op_name(op), e.what()));
        done = true;
      }
      if (op == kRetire) {
        note(kRetire, start);
        return 0;
      }
      if (done) note(op, start);
    }
  }

 private:
  bool perform(std::uint32_t op) {
    switch (op) {
      case kPut: return put();
      case kWriteSeal: return write_seal();
      case kFetch: return fetch(false);
      case kWaitFetch: return wait_fetch();
      case kMaterialize: return fetch(true);
      case kErase: return erase();
      case kHold: return hold();
      case kRelease: return release();
      case kBind: return bind();
      case kLookup: return lookup();
      case kRecover: store_->recover(); return true;
      case kInspect: return inspect();
      case kSpill: return spill();
      case kRetire:
        for (View& v : held_) check(v.bytes(), v.ref(), nullptr, "a held view, before retiring");
        held_.clear();
        store_.reset();
        return true;
      default: return false;
    }
  }

  void note(std::uint32_t op, Clock::time_point start) {
    note_latency(ledger_, index_, op, Clock::now() - start, cfg_.bound);
    area_.ops[op].fetch_add(1, std::memory_order_relaxed);
  }

  void violation(const std::string& what) { ledger_.violation(index_, what); }

  std::uint32_t choose() {
    std::array<std::uint32_t, kOps> w = kWeights;
    for (std::uint32_t op = 0; op < kOps; ++op) {
      if (op != kRetire) w[op] *= 10;  // NOLINT: retire stays rare, about one in 10000 operations
    }
    if (pressure_) w[kErase] *= 4;
    if (!cfg_.spilling()) w[kSpill] = 0;
    std::uint32_t total = 0;
    for (auto x : w) total += x;
    auto r = static_cast<std::uint32_t>(rng_() % total);
    for (std::uint32_t op = 0; op < kOps; ++op) {
      if (r < w[op]) return op;  // NOLINT
      r -= w[op];                // NOLINT
    }
    return kFetch;
  }

  // Erase more while the segment is more than 60% full or our records run low.
  void refresh_pressure() {
    sealstore::SegmentInfo i = store_->info();
    std::uint32_t used_records = 0;
    for (std::uint32_t r = 0; r < ledger_.records(); ++r) {
      if (State::decode(ledger_.record(index_, r).state.load(std::memory_order_relaxed)).kind != Kind::Free) {
        ++used_records;
      }
    }
    // Spilling, a full segment is the point: only the tables count.
    bool full = !cfg_.spilling() && i.used * 10 > i.capacity * 6;
    pressure_ = full || used_records * 10 > ledger_.records() * 7 || i.objects * 10 > i.max_objects * 7;
  }

  std::uint64_t pick_size() {
    double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    double ratio = static_cast<double>(cfg_.max_object) / static_cast<double>(kMinObject);
    auto size = static_cast<std::uint64_t>(static_cast<double>(kMinObject) * std::pow(ratio, u));
    return std::clamp<std::uint64_t>(size, kMinObject, cfg_.max_object);
  }

  std::optional<std::uint32_t> free_record() {
    for (std::uint32_t n = 0; n < ledger_.records(); ++n) {
      std::uint32_t i = (cursor_ + n) % ledger_.records();
      if (State::decode(ledger_.record(index_, i).state.load(std::memory_order_acquire)).kind == Kind::Free) {
        cursor_ = i + 1;
        return i;
      }
    }
    return std::nullopt;
  }

  // A random record of the given kind, from any worker (or only the others').
  Record* pick(Kind kind, bool others_only, Snapshot& snap) {
    int attempts = kind == Kind::Pending ? 256 : 24;  // pending records are few and brief
    for (int attempt = 0; attempt < attempts; ++attempt) {
      auto w = static_cast<std::uint32_t>(rng_() % ledger_.workers());
      if (others_only && w == index_) continue;
      auto i = static_cast<std::uint32_t>(rng_() % ledger_.records());
      Record& r = ledger_.record(w, i);
      if (snapshot(r, tag_, snap) && snap.state.kind == kind) return &r;
    }
    return nullptr;
  }

  // Our own record, Free until now: fill the fields, then publish.
  void publish_pending(Record& r, const RemoteRef& ref) {
    State s = State::decode(r.state.load(std::memory_order_acquire));
    r.ref_id.store(ref.id(), std::memory_order_release);
    r.where.store(ref.where(), std::memory_order_release);
    r.whence.store(ref.whence(), std::memory_order_release);
    r.size.store(0, std::memory_order_release);
    r.sum.store(0, std::memory_order_release);
    r.state.store(s.next(Kind::Pending, pid_), std::memory_order_release);
  }

  void publish(Record& r, Kind kind, std::uint64_t size = 0, std::uint64_t sum = 0) {
    State s = State::decode(r.state.load(std::memory_order_acquire));
    r.size.store(size, std::memory_order_release);
    r.sum.store(sum, std::memory_order_release);
    r.state.store(s.next(kind, pid_), std::memory_order_release);
  }

  static std::uint64_t header_sum(std::span<const std::byte> object) {
    ObjectHeader h{};
    std::memcpy(&h, object.data(), sizeof h);
    return h.sum;
  }

  // A violation unless bytes are the intact object sealed under ref (and,
  // for a Sealed record, the object the record describes).
  void check(std::span<const std::byte> bytes, const RemoteRef& ref, const Snapshot* snap, const char* what) {
    std::string err = check_object(bytes, ref.id());
    if (err.empty() && snap != nullptr && snap->state.kind == Kind::Sealed &&
        (bytes.size() != snap->size || header_sum(bytes) != snap->sum)) {
      err = fmt::format("{} bytes with sum {:#x}, recorded as {} bytes with sum {:#x}", bytes.size(), header_sum(bytes),
                        snap->size, snap->sum);
    }
    if (!err.empty()) violation(fmt::format("{} {} is damaged: {}", what, ref.to_string(), err));
  }

  // An error on a recorded object is expected only if the record changed
  // meanwhile (someone erased the object).
  void expect_changed(const Record& r, const Snapshot& snap, const Error& e, const char* what) {
    bool changed = r.state.load(std::memory_order_acquire) != snap.word;
    if (e.code() == Errc::NotFound && changed) return;
    // Spilling, a restore finds no room while the others pin it all: the
    // error says so, and the object stays whole in its file.
    if (e.code() == Errc::OutOfMemory && cfg_.spilling()) return;
    violation(fmt::format("{} of recorded {} failed: {}", what, snap.ref.to_string(), e.what()));
  }

  bool put() {
    auto slot = free_record();
    if (!slot) return false;
    Record& r = ledger_.record(index_, *slot);
    RemoteRef ref;
    try {
      ref = store_->make_ref();
    } catch (const Error& e) {
      if (e.code() != Errc::OutOfMemory) throw;
      return true;
    }
    // Published before the value exists, so other workers wait on it.
    publish_pending(r, ref);
    std::uint64_t size = pick_size();
    buffer_.resize(size);
    fill_object(buffer_, ref.id(), rng_());
    try {
      store_->put_bytes(ref, sealstore::ValueType{}, buffer_);
    } catch (const Error& e) {
      if (e.code() != Errc::OutOfMemory) throw;
      store_->erase(ref);
      publish(r, Kind::Free);
      return true;
    }
    publish(r, Kind::Sealed, size, header_sum(buffer_));
    return true;
  }

  bool write_seal() {
    auto slot = free_record();
    if (!slot) return false;
    Record& r = ledger_.record(index_, *slot);
    std::uint64_t size = pick_size();
    sealstore::Writer w;
    try {
      w = store_->create_writer(size);
    } catch (const Error& e) {
      if (e.code() != Errc::OutOfMemory) throw;
      return true;
    }
    publish_pending(r, w.ref());
    fill_object(w.bytes(), w.ref().id(), rng_());
    std::uint64_t sum = header_sum(w.bytes());
    std::move(w).seal();
    publish(r, Kind::Sealed, size, sum);
    return true;
  }

  bool fetch(bool copy) {
    Snapshot snap;
    Record* r = pick(Kind::Sealed, false, snap);
    if (r == nullptr) return false;
    try {
      if (copy) {
        auto bytes = store_->materialize<std::vector<std::byte>>(snap.ref, cfg_.bound);
        check(bytes, snap.ref, &snap, "materialized");
      } else {
        View v = store_->fetch(snap.ref, cfg_.bound);
        check(v.bytes(), snap.ref, &snap, "fetched");
      }
    } catch (const Error& e) {
      expect_changed(*r, snap, e, copy ? "materialize" : "fetch");
    }
    return true;
  }

  // Waits for an object another worker is filling: it is sealed, or its
  // writer died (WorkerFailed), or it was cleaned up (NotFound); never a
  // wait beyond the bound.
  bool wait_fetch() {
    Snapshot snap;
    if (pick(Kind::Pending, true, snap) == nullptr) return false;
    try {
      View v = store_->fetch(snap.ref, cfg_.bound);
      check(v.bytes(), snap.ref, nullptr, "awaited");
    } catch (const Error& e) {
      if (e.code() != Errc::NotFound && e.code() != Errc::WorkerFailed) {
        violation(fmt::format("waiting for {}: {}", snap.ref.to_string(), e.what()));
      }
    }
    return true;
  }

  bool erase() {
    Snapshot snap;
    Record* r = pick(Kind::Sealed, false, snap);
    if (r == nullptr) return false;
    std::uint64_t expected = snap.word;
    if (!r->state.compare_exchange_strong(expected, snap.state.next(Kind::Erasing, pid_))) return true;
    State claimed = State::decode(r->state.load(std::memory_order_relaxed));
    try {
      store_->erase(snap.ref);
    } catch (const Error& e) {
      violation(fmt::format("erase of recorded {} (claimed by us) failed: {}", snap.ref.to_string(), e.what()));
      r->state.store(claimed.next(Kind::Sealed, pid_), std::memory_order_release);
      return true;
    }
    if (store_->contains(snap.ref)) violation(fmt::format("{} is still there after erase", snap.ref.to_string()));
    r->state.store(claimed.next(Kind::Free, pid_), std::memory_order_release);
    return true;
  }

  bool hold() {
    Snapshot snap;
    Record* r = pick(Kind::Sealed, false, snap);
    if (r == nullptr) return false;
    try {
      View v = store_->fetch(snap.ref, cfg_.bound);
      check(v.bytes(), snap.ref, &snap, "held");
      if (held_.size() >= 8) held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(rng_() % held_.size()));
      held_.push_back(std::move(v));
    } catch (const Error& e) {
      expect_changed(*r, snap, e, "hold");
    }
    return true;
  }

  // A pinned object stays intact, erased or not, until its view goes.
  bool release() {
    if (held_.empty()) return false;
    auto at = static_cast<std::ptrdiff_t>(rng_() % held_.size());
    View& v = held_[static_cast<std::size_t>(at)];
    check(v.bytes(), v.ref(), nullptr, "a held view");
    held_.erase(held_.begin() + at);
    return true;
  }

  bool bind() {
    Snapshot snap;
    Record* r = pick(Kind::Sealed, false, snap);
    if (r == nullptr) return false;
    try {
      store_->bind(object_name(index_, static_cast<std::uint32_t>(rng_() % kNamesPerWorker)), snap.ref);
    } catch (const Error& e) {
      if (e.code() == Errc::OutOfMemory) return true;
      expect_changed(*r, snap, e, "bind");
    }
    return true;
  }

  // A name is only ever bound to a sealed object: it resolves to one that
  // is intact, or to nothing.
  bool lookup() {
    auto w = static_cast<std::uint32_t>(rng_() % ledger_.workers());
    std::string name = object_name(w, static_cast<std::uint32_t>(rng_() % kNamesPerWorker));
    std::optional<RemoteRef> ref = store_->lookup(name);
    if (!ref) return true;
    try {
      std::optional<View> v = store_->try_fetch(*ref);
      // Spilling, try_fetch says "not now" while another process restores
      // the object; a fetch then waits for that restore (a sealed object's
      // restore ends within the bound; an unsealed one's seal might not).
      if (!v && cfg_.spilling()) v = store_->fetch(*ref, cfg_.bound);
      if (!v) {
        violation(fmt::format("name '{}' resolves to {}, which is not sealed", name, ref->to_string()));
      } else {
        check(v->bytes(), *ref, nullptr, "looked-up");
      }
    } catch (const Error& e) {
      if (e.code() != Errc::NotFound)
        violation(fmt::format("fetch of '{}' ({}): {}", name, ref->to_string(), e.what()));
    }
    return true;
  }

  // Spills a sealed object now (if nobody pins it), racing every fetch,
  // erase and restore of it; then checks it reads back whole.
  bool spill() {
    Snapshot snap;
    Record* r = pick(Kind::Sealed, false, snap);
    if (r == nullptr) return false;
    try {
      store_->spill(snap.ref);
    } catch (const Error& e) {
      expect_changed(*r, snap, e, "spill");
    }
    return true;
  }

  bool inspect() {
    sealstore::SegmentInfo i = store_->info();
    if (i.used > i.capacity || i.largest_free > i.capacity || i.objects > i.max_objects) {
      violation(fmt::format("segment info out of range: used {}, largest free {}, capacity {}, objects {} of {}",
                            i.used, i.largest_free, i.capacity, i.objects, i.max_objects));
    }
    for (const auto& p : store_->processes()) {
      if (p.id == 0) violation(fmt::format("process slot {} (pid {}) has worker id 0", p.slot, p.pid));
    }
    for (const auto& o : store_->objects()) {
      if (o.size > i.capacity)
        violation(fmt::format("{} has {} bytes, more than the segment", o.ref.to_string(), o.size));
    }
    return true;
  }

  const Config& cfg_;
  const Ledger& ledger_;
  std::uint32_t index_;
  WorkerArea& area_;
  std::int32_t pid_;
  std::mt19937_64 rng_;
  std::optional<Store> store_;
  std::uint32_t tag_ = 0;
  std::uint32_t cursor_ = 0;
  bool pressure_ = false;
  std::vector<View> held_;  // declared after store_: destroyed first
  std::vector<std::byte> buffer_;
};

}  // namespace

int run_worker(const Config& cfg, const Ledger& ledger, std::uint32_t index, std::uint64_t life) {
  Worker w(cfg, ledger, index, life);
  return w.run();
}

}  // namespace torture
