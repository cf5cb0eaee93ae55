#include "ledger.hpp"

#include <sys/mman.h>

#include <fmt/format.h>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>

namespace torture {

namespace {

std::uint64_t read_word(const std::byte* p) noexcept {
  std::uint64_t w = 0;
  std::memcpy(&w, p, sizeof w);
  return w;
}

std::uint64_t mix(std::uint64_t h, std::uint64_t w) noexcept { return (h ^ w) * 0x100000001b3ULL; }

}  // namespace

std::uint64_t checksum(std::span<const std::byte> bytes) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  std::size_t n = bytes.size() / 8;
  for (std::size_t i = 0; i < n; ++i) h = mix(h, read_word(bytes.data() + i * 8));
  for (std::size_t i = n * 8; i < bytes.size(); ++i) h = mix(h, static_cast<std::uint8_t>(bytes[i]));
  return mix(h, bytes.size());
}

void fill_object(std::span<std::byte> dst, std::uint64_t ref_id, std::uint64_t seed) noexcept {
  std::uint64_t x = seed | 1U;
  std::span<std::byte> payload = dst.subspan(sizeof(ObjectHeader));
  std::size_t n = payload.size() / 8;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13U;
    x ^= x >> 7U;
    x ^= x << 17U;
    std::memcpy(payload.data() + i * 8, &x, 8);
  }
  for (std::size_t i = n * 8; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(x >> (i % 8 * 8));
  ObjectHeader h{kObjectMagic, ref_id, dst.size(), checksum(payload)};
  std::memcpy(dst.data(), &h, sizeof h);
}

std::string check_object(std::span<const std::byte> bytes, std::uint64_t ref_id) {
  if (bytes.size() < kMinObject) return fmt::format("{} bytes, less than an object header", bytes.size());
  ObjectHeader h{};
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kObjectMagic) return fmt::format("bad magic {:#x}", h.magic);
  if (h.ref_id != ref_id) return fmt::format("it carries ref id {:#x}, fetched as {:#x}", h.ref_id, ref_id);
  if (h.size != bytes.size()) return fmt::format("it says {} bytes, the view has {}", h.size, bytes.size());
  std::uint64_t sum = checksum(bytes.subspan(sizeof h));
  if (sum != h.sum) return fmt::format("checksum {:#x}, sealed with {:#x}", sum, h.sum);
  return {};
}

State State::decode(std::uint64_t w) noexcept {
  State s;
  s.kind = static_cast<Kind>(w & 0xffU);
  s.pid = static_cast<std::int32_t>(static_cast<std::uint32_t>((w >> 8U) & 0xffffffffU));
  s.version = w >> 40U;
  return s;
}

std::uint64_t State::encode() const noexcept {
  return static_cast<std::uint64_t>(kind) | (std::uint64_t{static_cast<std::uint32_t>(pid)} << 8U) |
         ((version & 0xffffffU) << 40U);
}

std::uint64_t State::next(Kind k, std::int32_t by) const noexcept { return State{k, by, version + 1}.encode(); }

const char* op_name(std::uint32_t op) noexcept {
  static constexpr const char* kNames[kOps] = {"put",     "write+seal", "fetch",   "wait-fetch", "materialize",
                                               "erase",   "hold",       "release", "bind",       "lookup",
                                               "recover", "inspect",    "spill",   "attach",     "retire"};
  return op < kOps ? kNames[op] : "?";  // NOLINT
}

Ledger::Ledger(std::uint32_t workers, std::uint32_t records) : workers_(workers), records_(records) {
  std::size_t areas = sizeof(WorkerArea) * (workers + 1);
  bytes_ = areas + sizeof(Record) * std::size_t{workers} * records;
  void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("cannot map the ledger");
  base_ = static_cast<std::byte*>(p);
  for (std::uint32_t w = 0; w <= workers; ++w) new (base_ + sizeof(WorkerArea) * w) WorkerArea{};
  for (std::size_t i = 0; i < std::size_t{workers} * records; ++i) new (base_ + areas + sizeof(Record) * i) Record{};
}

Ledger::~Ledger() { ::munmap(base_, bytes_); }

WorkerArea& Ledger::area(std::uint32_t w) const noexcept {
  return *std::launder(reinterpret_cast<WorkerArea*>(base_ + sizeof(WorkerArea) * w));  // NOLINT
}

Record& Ledger::record(std::uint32_t w, std::uint32_t i) const noexcept {
  std::size_t at = sizeof(WorkerArea) * (workers_ + 1) + sizeof(Record) * (std::size_t{w} * records_ + i);
  return *std::launder(reinterpret_cast<Record*>(base_ + at));  // NOLINT
}

void Ledger::violation(std::uint32_t w, const std::string& what) const noexcept {
  WorkerArea& a = area(w);
  a.violations.fetch_add(1);
  std::fprintf(stderr, "VIOLATION (%s %u, pid %d): %s\n", w == workers_ ? "supervisor" : "worker", w, a.pid.load(),
               what.c_str());
  if (a.message_taken.exchange(1) == 0) {
    std::snprintf(a.message, sizeof a.message, "%s", what.c_str());
  }
}

// Fields are stored with release and loaded with acquire: a field written
// after the record changed makes the second read of the state see the change.
bool snapshot(const Record& r, std::uint32_t tag, Snapshot& out) noexcept {
  constexpr auto acq = std::memory_order_acquire;
  std::uint64_t w1 = r.state.load(acq);
  out.ref = sealstore::RemoteRef(tag, r.ref_id.load(acq), r.where.load(acq), r.whence.load(acq));
  out.size = r.size.load(acq);
  out.sum = r.sum.load(acq);
  std::uint64_t w2 = r.state.load(acq);
  out.word = w1;
  out.state = State::decode(w1);
  return w1 == w2;
}

}  // namespace torture
