// Seal events: a ring of kEventSlots events in the segment, numbered by one
// counter every sealer draws from while anyone subscribes (and only then:
// with no subscriber a seal reads one shared line and writes nothing).
//
// A sealer marks itself publishing, draws the next sequence, writes the
// slot as a seqlock (stamp odd, fields, stamp even) and rings the bell, a
// futex word subscribers sleep on. A subscriber reads the slot of the
// sequence it wants: published, it takes it; overwritten by a later lap,
// it skips ahead and counts what it lost; drawn but not yet published, it
// waits for the bell, and if no live process is still publishing, the
// sealer died between the two and the event is counted lost.
#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <thread>

#include "sealstore/error.hpp"
#include "sealstore/store.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"
#include "store/session_lock.hpp"
#include "sync/atomics.hpp"

namespace sealstore::detail {

namespace {

// How long a subscriber waits for a drawn event to be published before it
// asks whether its sealer is still alive.
constexpr std::chrono::milliseconds kPublishPatience{2};
constexpr std::chrono::milliseconds kSleepSlice{100};

struct EventFields {
  std::uint32_t index, gen, where, whence, sealed_by;
  std::int32_t pid;
  std::uint64_t size;
  TypeWords type;
};

std::uint64_t event_check(std::uint64_t seq, const EventFields& f) {
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ seq;
  auto mix = [&h](std::uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6U) + (h >> 2U);
    h *= 0xff51afd7ed558ccdULL;
  };
  mix((std::uint64_t{f.index} << 32U) | f.gen);
  mix((std::uint64_t{f.where} << 32U) | f.whence);
  mix((std::uint64_t{f.sealed_by} << 32U) | static_cast<std::uint32_t>(f.pid));
  mix(f.size);
  for (std::uint64_t w : f.type) mix(w);
  return h;
}

void write_fields(EventSlot& ev, const EventFields& f) noexcept {
  store(ev.index, f.index, std::memory_order_relaxed);
  store(ev.gen, f.gen, std::memory_order_relaxed);
  store(ev.where, f.where, std::memory_order_relaxed);
  store(ev.whence, f.whence, std::memory_order_relaxed);
  store(ev.sealed_by, f.sealed_by, std::memory_order_relaxed);
  store(ev.sealed_by_pid, f.pid, std::memory_order_relaxed);
  store(ev.size, f.size, std::memory_order_relaxed);
  store(ev.type[0], f.type[0], std::memory_order_relaxed);
  store(ev.type[1], f.type[1], std::memory_order_relaxed);
  for (std::size_t d = 0; d < kMaxRank; ++d) store(ev.shape[d], f.type[2 + d], std::memory_order_relaxed);  // NOLINT
}

EventFields read_fields(const EventSlot& ev) noexcept {
  EventFields f{};
  f.index = load(ev.index, std::memory_order_relaxed);
  f.gen = load(ev.gen, std::memory_order_relaxed);
  f.where = load(ev.where, std::memory_order_relaxed);
  f.whence = load(ev.whence, std::memory_order_relaxed);
  f.sealed_by = load(ev.sealed_by, std::memory_order_relaxed);
  f.pid = load(ev.sealed_by_pid, std::memory_order_relaxed);
  f.size = load(ev.size, std::memory_order_relaxed);
  f.type[0] = load(ev.type[0], std::memory_order_relaxed);
  f.type[1] = load(ev.type[1], std::memory_order_relaxed);
  for (std::size_t d = 0; d < kMaxRank; ++d) f.type[2 + d] = load(ev.shape[d], std::memory_order_relaxed);  // NOLINT
  return f;
}

}  // namespace

Session::SealNote Session::seal_note(const Entry& e) noexcept {
  SealNote n{};
  n.where = field(e.where);
  n.whence = field(e.whence);
  n.size = field(e.size);
  TypeWords t{};
  load_type_words(e, t);  // the shape only for an n-d array; zero otherwise
  std::copy(t.begin(), t.end(), n.type.begin());
  return n;
}

void Session::publish_seal(std::uint32_t index, std::uint32_t gen, const SealNote& note, bool whole) noexcept {
  Header& h = header();
  EventFields f{};
  f.index = index;
  f.gen = gen;
  f.where = note.where;
  f.whence = note.whence;
  f.sealed_by = id_;
  f.pid = static_cast<std::int32_t>(pid_);
  f.size = note.size;
  std::copy(note.type.begin(), note.type.end(), f.type.begin());
  std::uint32_t& publishing = slot(slot_).publishing;
  atomic(publishing).fetch_add(1);  // seq_cst: marked before the draw, so a subscriber that sees the draw sees us
  std::uint64_t seq = atomic(h.event_head).fetch_add(1);
  EventSlot& ev = event_slot(seq);
  store(ev.stamp, 2 * seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  write_fields(ev, f);
  store(ev.check, event_check(seq, f) ^ (whole ? 0U : 1U), std::memory_order_relaxed);
  store(ev.stamp, 2 * seq + 2, std::memory_order_release);
  atomic(publishing).fetch_sub(1);
  // seq_cst, then the waiters: pairs with next_event's count, then stamp.
  atomic(h.event_bell).fetch_add(1);
  if (load(h.event_waiters) != 0) futex_wake_all(&h.event_bell);
}

bool Session::someone_publishing() const {
  for (std::uint32_t s = 0; s < kMaxProcesses; ++s) {
    if (static_cast<SlotState>(load(slot(s).state)) != SlotState::Live) continue;
    if (load(slot(s).publishing) != 0 && slot_alive(s)) return true;
  }
  return false;
}

std::uint64_t Session::subscribe() {
  check_writable();
  std::lock_guard guard(events_mu_);
  if (subscriptions_++ == 0) {
    atomic(header().subscribed[slot_ / 64]).fetch_or(std::uint64_t{1} << (slot_ % 64));  // NOLINT
  }
  // seq_cst after the bit: a seal ordered after this call sees the bit,
  // and draws a sequence at or after this one.
  return load(header().event_head);
}

void Session::unsubscribe() noexcept {
  if (slot_ == kNoSlot || !usable()) return;
  std::lock_guard guard(events_mu_);
  if (subscriptions_ > 0 && --subscriptions_ == 0) {
    atomic(header().subscribed[slot_ / 64]).fetch_and(~(std::uint64_t{1} << (slot_ % 64)));  // NOLINT
  }
}

bool Session::next_event(std::uint64_t& position, std::uint64_t& missed, std::uint64_t& pending, SealEvent& out,
                         Deadline deadline, std::chrono::nanoseconds spin) {
  using clock = std::chrono::steady_clock;
  check_writable();
  Header& h = header();
  std::uint64_t& lost = pending;  // just before the one we return
  // Spins until then (now, when not asked to spin).
  clock::time_point spin_until = spin > std::chrono::nanoseconds::zero() ? clock::now() + spin : clock::time_point{};
  std::optional<clock::time_point> drawn_since;  // when we first saw our sequence drawn but unpublished
  for (;;) {
    std::uint64_t p = position;
    std::uint32_t bell = load(h.event_bell);
    EventSlot& ev = event_slot(p);
    std::uint64_t stamp = load(ev.stamp, std::memory_order_acquire);
    if (stamp == 2 * p + 2) {
      EventFields f = read_fields(ev);
      std::uint64_t check = load(ev.check, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (load(ev.stamp, std::memory_order_relaxed) == stamp) {
        position = p + 1;
        drawn_since.reset();
        if (check != event_check(p, f)) {  // torn by a sealer a lap ahead: lost
          ++lost;
          ++missed;
          continue;
        }
        out.sequence = p;
        out.missed = lost;
        lost = 0;
        out.ref = RemoteRef(geo().segment_tag, (std::uint64_t{f.gen} << 32U) | f.index, f.where, f.whence);
        decode_type(f.type, out.type);
        out.size = f.size;
        out.sealed_by = f.sealed_by;
        out.sealed_by_pid = f.pid;
        return true;
      }
      continue;  // rewritten as we read: look again
    }
    std::uint64_t head = load(h.event_head);
    if (stamp > 2 * p + 2 || head > p + kEventSlots) {
      // A later lap has it: skip to the oldest event the ring may still hold.
      std::uint64_t oldest = head > kEventSlots ? head - kEventSlots : 0;
      std::uint64_t to = std::max(oldest, p + 1);
      lost += to - p;
      missed += to - p;
      position = to;
      drawn_since.reset();
      continue;
    }
    auto now = clock::now();
    if (head > p) {
      // Drawn, not yet published: its sealer is between two stores, or died there.
      if (!drawn_since) drawn_since = now;
      if (now - *drawn_since >= kPublishPatience && !someone_publishing() &&
          load(ev.stamp, std::memory_order_acquire) < 2 * p + 2) {
        ++lost;
        ++missed;
        position = p + 1;
        drawn_since.reset();
        continue;
      }
    }
    if (deadline && now >= *deadline) return false;
    if (now < spin_until) {
      // Poll the stamp (a pause between polls, the clock every 64) until it
      // changes or the spin is over; then look again from the top.
      auto until = deadline ? std::min(spin_until, *deadline) : spin_until;
      for (unsigned i = 1; load(ev.stamp, std::memory_order_acquire) == stamp; ++i) {
        if (i % 64 == 0 && clock::now() >= until) break;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      continue;
    }
    auto slice = std::chrono::nanoseconds(head > p ? kPublishPatience : kSleepSlice);
    if (deadline) slice = std::min(slice, std::chrono::nanoseconds(*deadline - now));
    // Counted in our slot too, so that the reap of a subscriber killed
    // asleep takes its share back (else every seal would ring for it).
    std::uint32_t& mine = slot(slot_).event_waiting;
    atomic(mine).fetch_add(1);
    atomic(h.event_waiters).fetch_add(1);
    // Registered, then the stamp again: a sealer that published before we
    // registered is seen here; one after, sees us and rings for us.
    if (load(ev.stamp, std::memory_order_acquire) == stamp) futex_wait(&h.event_bell, bell, slice);
    atomic(h.event_waiters).fetch_sub(1);
    atomic(mine).fetch_sub(1);
  }
}

}  // namespace sealstore::detail

namespace sealstore {

Subscription::Subscription(Subscription&& other) noexcept
    : session_(std::move(other.session_)),
      position_(other.position_),
      missed_(other.missed_),
      pending_(other.pending_) {}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    release();
    session_ = std::move(other.session_);
    position_ = other.position_;
    missed_ = other.missed_;
    pending_ = other.pending_;
  }
  return *this;
}

Subscription::~Subscription() { release(); }

void Subscription::release() noexcept {
  if (session_) session_->unsubscribe();
  session_.reset();
}

std::optional<SealEvent> Subscription::next(std::chrono::nanoseconds timeout, std::chrono::nanoseconds spin) {
  if (!session_) throw Error(Errc::InvalidArgument, "next() of an empty Subscription");
  if (timeout < std::chrono::nanoseconds::zero() || spin < std::chrono::nanoseconds::zero()) {
    throw Error(Errc::InvalidArgument, "negative timeout or spin for Subscription::next");
  }
  detail::Deadline deadline;
  if (timeout != std::chrono::nanoseconds::max()) {
    auto now = std::chrono::steady_clock::now();
    auto room = std::chrono::steady_clock::time_point::max() - now;
    deadline = timeout < room ? now + timeout : std::chrono::steady_clock::time_point::max();
  }
  SealEvent ev;
  if (!session_->next_event(position_, missed_, pending_, ev, deadline, spin)) return std::nullopt;
  return ev;
}

Subscription Store::subscribe() {
  detail::Session& s = session_ref();
  std::uint64_t start = s.subscribe();
  return Subscription(session_, start);
}

bool Store::spill(const RemoteRef& ref) { return session_ref().spill(ref); }

}  // namespace sealstore
