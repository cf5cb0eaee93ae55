// Atomic access to plain fields of shared-memory structs (std::atomic_ref),
// and the futex calls fetchers sleep on. Futexes here are process-shared:
// never FUTEX_PRIVATE_FLAG.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace sealstore::detail {

template <class T>
inline std::atomic_ref<T> atomic(T& field) noexcept {
  static_assert(std::atomic_ref<T>::is_always_lock_free);
  return std::atomic_ref<T>(field);
}

template <class T>
inline T load(const T& field, std::memory_order o = std::memory_order_seq_cst) noexcept {
  return std::atomic_ref<T>(const_cast<T&>(field)).load(o);  // NOLINT: atomic_ref needs non-const
}

template <class T>
inline void store(T& field, T v, std::memory_order o = std::memory_order_seq_cst) noexcept {
  std::atomic_ref<T>(field).store(v, o);
}

// Sleeps while *word == expected, for at most `timeout` (or until woken, or
// spuriously). Returns false on timeout.
bool futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept;
// Wakes every sleeper on word.
void futex_wake_all(std::uint32_t* word) noexcept;
// Wakes one sleeper on word.
void futex_wake_one(std::uint32_t* word) noexcept;

}  // namespace sealstore::detail
