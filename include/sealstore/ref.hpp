// sealstore::RemoteRef, the name of one object in one segment. A ref is a
// small value: copy it, compare it, hash it, print it and parse it back; it
// stays valid (and never names another object) for the segment's lifetime.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace sealstore {

// A process's id within a store: 1 for the process that created the segment
// (and so the pool), then 2, 3, ... in attach order. Ids are never reused.
using WorkerId = std::uint32_t;

class RemoteRef {
 public:
  // The null ref: names nothing; fetch() of it fails with InvalidArgument.
  RemoteRef() = default;
  RemoteRef(std::uint32_t segment_tag, std::uint64_t id, WorkerId where, WorkerId whence) noexcept
      : segment_tag_(segment_tag), id_(id), where_(where), whence_(whence) {}

  // The random tag of the segment incarnation the ref belongs to: a ref of a
  // removed and re-created segment of the same name is not mistaken.
  std::uint32_t segment_tag() const noexcept { return segment_tag_; }
  // Unique within the segment incarnation, across processes and time.
  std::uint64_t id() const noexcept { return id_; }
  // The worker meant to fill the ref (or that filled it).
  WorkerId where() const noexcept { return where_; }
  // The worker that made the ref.
  WorkerId whence() const noexcept { return whence_; }
  bool is_null() const noexcept { return id_ == 0; }

  // "RemoteRef(where=2, whence=1, id=7f3a91c2:42:1)": where, whence, then
  // the segment tag, entry index and generation of the id. The null ref is
  // "RemoteRef(where=0, whence=0, id=00000000:0:0)".
  std::string to_string() const;
  // The exact inverse of to_string(), for every ref (the null ref too):
  // parse(r.to_string()) == r, with the same where and whence. Only
  // to_string's own spelling is accepted (lower-case hex, no leading zeros).
  // Throws Error(InvalidArgument) naming the text when it is not of that form.
  static RemoteRef parse(std::string_view text);

  // Identity is the object: where and whence are descriptive only.
  friend bool operator==(const RemoteRef& a, const RemoteRef& b) noexcept {
    return a.segment_tag_ == b.segment_tag_ && a.id_ == b.id_;
  }

 private:
  std::uint32_t segment_tag_ = 0;
  std::uint64_t id_ = 0;
  WorkerId where_ = 0;
  WorkerId whence_ = 0;
};

}  // namespace sealstore

template <>
struct std::hash<sealstore::RemoteRef> {
  std::size_t operator()(const sealstore::RemoteRef& r) const noexcept {
    return std::hash<std::uint64_t>{}(r.id() ^ (std::uint64_t{r.segment_tag()} << 40U));
  }
};
