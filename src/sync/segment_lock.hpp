// The segment lock: a process-shared lock in one 32-bit word of the header,
// whose holder is known by its process slot, so a holder that died (or a
// word a peer scribbled over) is found and the lock taken over, and the
// taker knows to repair what the holder may have left half done.
//
//   word: bits 0..7   holder slot + 1 (0: free)
//         bit  8      some process sleeps waiting for it
//         bits 9..31  acquisition count (so a stuck word can be told apart
//                     from a busy one)
//
// A contended locker spins briefly, then sleeps on the word (a futex,
// process-shared), waking on every release and, while it waits, at growing
// intervals to check that the holder is alive and claims the lock: the
// holder records the acquisition count it took in its process slot.
#pragma once

#include <cstdint>

namespace sealstore::detail {

class LockPeers {
 public:
  virtual ~LockPeers() = default;
  // Whether the process in slot s can still use the segment.
  virtual bool alive(std::uint32_t s) = 0;
  // The acquisition count slot s says it holds the lock with (0: none).
  virtual std::uint32_t claim(std::uint32_t s) = 0;
  // Records that this process now holds (count) or released (0) the lock.
  virtual void set_claim(std::uint32_t count) = 0;
};

struct LockResult {
  bool taken_over = false;  // from a dead holder or a bogus word: repair before trusting anything
};

// Blocks until slot `me` holds the lock at `word`. One thread of a process
// at a time: the caller serialises its threads first (a slot's claim is one
// field).
LockResult lock_segment(std::uint32_t& word, std::uint32_t me, LockPeers& peers);
// Releases the lock if slot `me` still holds it.
void unlock_segment(std::uint32_t& word, std::uint32_t me, LockPeers& peers) noexcept;

}  // namespace sealstore::detail
