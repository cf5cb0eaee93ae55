// The torture test's ledger and object format. The ledger records what each
// worker sealed, outside the store, in memory the supervisor shares with its
// workers (an anonymous shared mapping inherited across fork), so the final
// check knows what must be in the store without trusting the store. Every
// object carries its own ref id and a checksum of its payload.
// Safe for concurrent use from the supervisor and every worker process.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "sealstore/sealstore.hpp"

namespace torture {

// ---- objects

// At the start of every object; the payload follows.
struct ObjectHeader {
  std::uint64_t magic;
  std::uint64_t ref_id;  // the ref the object was sealed under
  std::uint64_t size;    // bytes of the whole object
  std::uint64_t sum;     // checksum() of the payload
};
inline constexpr std::uint64_t kObjectMagic = 0x5254'5554'4c41'4553ULL;
inline constexpr std::uint64_t kMinObject = sizeof(ObjectHeader);

std::uint64_t checksum(std::span<const std::byte> bytes) noexcept;
// Writes header and a payload drawn from seed into dst (dst.size() >= kMinObject).
void fill_object(std::span<std::byte> dst, std::uint64_t ref_id, std::uint64_t seed) noexcept;
// Empty when bytes are a whole, intact object sealed under ref_id; else what is wrong.
std::string check_object(std::span<const std::byte> bytes, std::uint64_t ref_id);

// ---- the ledger

enum class Kind : std::uint8_t {
  Free = 0,     // unused; only its owner worker takes it
  Pending = 1,  // its owner made the ref and is filling it
  Sealed = 2,   // sealed: must be in the store, intact, until erased
  Erasing = 3,  // a worker claimed it to erase it
};

// A record's state in one 64-bit word: kind | pid << 8 | version << 40. The
// version grows with every change, so a reader that sees the same word
// before and after reading the fields read one consistent record.
struct State {
  Kind kind = Kind::Free;
  std::int32_t pid = 0;  // the claimant of an Erasing record
  std::uint64_t version = 0;

  static State decode(std::uint64_t w) noexcept;
  std::uint64_t encode() const noexcept;
  // The same record moved to kind k by pid.
  std::uint64_t next(Kind k, std::int32_t by) const noexcept;
};

struct Record {
  std::atomic<std::uint64_t> state;
  std::atomic<std::uint64_t> ref_id;  // written while Free, read once Pending or later
  std::atomic<std::uint32_t> where;
  std::atomic<std::uint32_t> whence;
  std::atomic<std::uint64_t> size;  // written before the record turns Sealed
  std::atomic<std::uint64_t> sum;
};

enum Op : std::uint32_t {
  kPut,          // make_ref + put(ref, value)
  kWriteSeal,    // create_writer, fill in place, seal
  kFetch,        // fetch a sealed object and verify it
  kWaitFetch,    // fetch an object another worker is still filling
  kMaterialize,  // copy an object out and verify the copy
  kErase,
  kHold,     // fetch and keep the view (a pin that outlives operations)
  kRelease,  // verify a held view again, then drop it
  kBind,
  kLookup,
  kRecover,
  kInspect,  // info, processes, objects
  kSpill,    // --spill: spill a sealed object now (Store::spill)
  kAttach,   // a worker's attach at start
  kRetire,   // a worker detaches and exits normally
  kOps,
};
const char* op_name(std::uint32_t op) noexcept;

// One worker slot of the torture: counters of its incarnations, the first
// violation it saw, and the head of its records.
struct WorkerArea {
  std::atomic<std::int32_t> pid;         // the current incarnation
  std::atomic<std::uint32_t> worker_id;  // its id in the store once attached
  std::atomic<std::uint64_t> ops[kOps];  // completed operations
  std::atomic<std::uint64_t> max_latency_ns;
  std::atomic<std::uint32_t> max_latency_op;
  std::atomic<std::uint64_t> violations;
  std::atomic<std::uint32_t> message_taken;
  char message[512];
  // --hostile: errors by code (sealstore::Errc's value), and the bytes the
  // scribbler wrote (in the supervisor's area).
  std::atomic<std::uint64_t> errors[16];
  std::atomic<std::uint64_t> scribbles;
};

class Ledger {
 public:
  // Maps a shared anonymous region for `workers` areas of `records` records each.
  Ledger(std::uint32_t workers, std::uint32_t records);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  std::uint32_t workers() const noexcept { return workers_; }
  std::uint32_t records() const noexcept { return records_; }
  WorkerArea& area(std::uint32_t w) const noexcept;
  Record& record(std::uint32_t w, std::uint32_t i) const noexcept;

  // Counts a violation against worker w (the supervisor uses its own area,
  // index workers()) and keeps the first message.
  void violation(std::uint32_t w, const std::string& what) const noexcept;

 private:
  std::uint32_t workers_;
  std::uint32_t records_;
  std::size_t bytes_ = 0;
  std::byte* base_ = nullptr;
};

// A consistent snapshot of a record.
struct Snapshot {
  std::uint64_t word = 0;
  State state;
  sealstore::RemoteRef ref;
  std::uint64_t size = 0;
  std::uint64_t sum = 0;
};
// Reads r twice around its fields; false if it changed meanwhile.
bool snapshot(const Record& r, std::uint32_t tag, Snapshot& out) noexcept;

}  // namespace torture
