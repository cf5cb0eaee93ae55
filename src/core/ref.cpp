#include <fmt/format.h>
#include <charconv>

#include "sealstore/error.hpp"
#include "sealstore/ref.hpp"

namespace sealstore {

std::string RemoteRef::to_string() const {
  return fmt::format("RemoteRef(where={}, whence={}, id={:08x}:{}:{})", where_, whence_, segment_tag_,
                     id_ & 0xffffffffU, id_ >> 32U);
}

namespace {

// Consumes `lit` from the front of s.
bool take(std::string_view& s, std::string_view lit) {
  if (!s.starts_with(lit)) return false;
  s.remove_prefix(lit.size());
  return true;
}

// Consumes a number in `base` (no sign, no leading '+', at least one digit).
template <class T>
bool take_number(std::string_view& s, T& out, int base, std::size_t exact_digits = 0) {
  if (s.empty() || s.front() == '+' || s.front() == '-') return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  if (ec != std::errc() || ptr == s.data()) return false;
  auto used = static_cast<std::size_t>(ptr - s.data());
  if (exact_digits != 0 && used != exact_digits) return false;
  // No leading zeros in decimal fields and only lower-case hex digits (as
  // to_string prints them), so each ref has exactly one spelling.
  if (base == 10 && used > 1 && s.front() == '0') return false;
  if (base == 16 && s.substr(0, used).find_first_of("ABCDEF") != std::string_view::npos) return false;
  s.remove_prefix(used);
  return true;
}

}  // namespace

RemoteRef RemoteRef::parse(std::string_view text) {
  std::string_view s = text;
  WorkerId where = 0;
  WorkerId whence = 0;
  std::uint32_t tag = 0;
  std::uint32_t index = 0;
  std::uint32_t gen = 0;
  bool ok = take(s, "RemoteRef(where=") && take_number(s, where, 10) && take(s, ", whence=") &&
            take_number(s, whence, 10) && take(s, ", id=") && take_number(s, tag, 16, 8) && take(s, ":") &&
            take_number(s, index, 10) && take(s, ":") && take_number(s, gen, 10) && take(s, ")") && s.empty();
  if (!ok) {
    throw Error(
        Errc::InvalidArgument,
        fmt::format("'{}' is not a ref: expected RemoteRef(where=N, whence=N, id=XXXXXXXX:N:N)", text.substr(0, 200)));
  }
  return RemoteRef(tag, (std::uint64_t{gen} << 32U) | index, where, whence);
}

}  // namespace sealstore
