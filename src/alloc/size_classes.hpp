// Size classes for small objects: the extents processes cache and reuse
// without the segment lock. 64-byte steps up to 512 bytes, then four
// classes per doubling up to 32 KiB, so a cached extent wastes at most a
// quarter of itself. Larger objects get extents of their own size (rounded
// to 64 bytes) from the allocator, under the lock.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>

namespace sealstore::detail {

inline constexpr std::uint32_t kClasses = 32;
inline constexpr std::uint64_t kSmallMax = std::uint64_t{32} << 10U;

inline constexpr std::uint64_t class_bytes(std::uint32_t c) {
  if (c < 8) return 64 * (std::uint64_t{c} + 1);
  std::uint32_t k = c - 8;
  std::uint64_t base = std::uint64_t{512} << (k / 4);
  return base + (k % 4 + 1) * (base / 4);
}

// The class of an object of `bytes` bytes (1..kSmallMax): the smallest
// whose extent holds it.
inline constexpr std::uint32_t size_class(std::uint64_t bytes) {
  if (bytes <= 512) return static_cast<std::uint32_t>(bytes == 0 ? 0 : (bytes - 1) / 64);
  auto d = static_cast<std::uint32_t>(63 - std::countl_zero((bytes - 1) >> 9U));  // 512 << d < bytes <= 1024 << d
  std::uint64_t base = std::uint64_t{512} << d;
  auto q = static_cast<std::uint32_t>((bytes - base + base / 4 - 1) / (base / 4));  // 1..4
  return 8 + 4 * d + q - 1;
}

// The class whose extents are exactly `bytes`, if there is one.
inline constexpr std::optional<std::uint32_t> exact_class(std::uint64_t bytes) {
  if (bytes == 0 || bytes > kSmallMax) return std::nullopt;
  std::uint32_t c = size_class(bytes);
  if (class_bytes(c) != bytes) return std::nullopt;
  return c;
}

static_assert(class_bytes(0) == 64 && class_bytes(7) == 512 && class_bytes(8) == 640 && class_bytes(11) == 1024);
static_assert(class_bytes(kClasses - 1) == kSmallMax);
static_assert(size_class(1) == 0 && size_class(64) == 0 && size_class(65) == 1 && size_class(512) == 7);
static_assert(size_class(513) == 8 && size_class(640) == 8 && size_class(641) == 9 && size_class(1024) == 11);
static_assert(size_class(kSmallMax) == kClasses - 1 && size_class(kSmallMax - 1) == kClasses - 1);

}  // namespace sealstore::detail
