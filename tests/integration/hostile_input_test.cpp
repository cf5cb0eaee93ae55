// Bad input from callers: sizes and counts that overflow, types sealstore
// does not know, names that could escape the segment directory. Each gets
// the exact error code and changes nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "sealstore/sealstore.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::SegmentGuard;
using test::small_options;

constexpr std::uint64_t kMax64 = std::numeric_limits<std::uint64_t>::max();

TEST(HostileInput, sizes_that_overflow_or_exceed_the_segment_are_refused) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  EXPECT_ERRC(s.create_writer(kMax64), Errc::OutOfMemory);
  EXPECT_ERRC(s.create_writer(kMax64 - 63), Errc::OutOfMemory);
  EXPECT_ERRC(s.create_writer(s.info().capacity + 1), Errc::OutOfMemory);
  ValueType nd;
  nd.kind = ValueKind::NdArray;
  nd.elem = ElemType::Float64;
  nd.elem_size = 8;
  nd.rank = 3;
  nd.shape = {std::uint64_t{1} << 32U, std::uint64_t{1} << 32U, std::uint64_t{1} << 32U, 0};
  EXPECT_ERRC(s.create_writer(0, nd), Errc::InvalidArgument);  // 2^96 elements wrap to 0 bytes
  nd.shape = {std::uint64_t{1} << 61U, 1, 1, 0};
  EXPECT_ERRC(s.create_writer(0, nd), Errc::InvalidArgument);  // 2^61 * 8 wraps to 0
  nd.rank = 9;
  EXPECT_ERRC(s.create_writer(8, nd), Errc::InvalidArgument);
  EXPECT_ERRC((NdArray<double>({std::uint64_t{1} << 40U, std::uint64_t{1} << 40U})), Errc::InvalidArgument);
  EXPECT_ERRC((NdArray<float>(std::vector<std::uint64_t>{1, 2, 3, 4, 5})), Errc::InvalidArgument);

  CreateOptions o = small_options();
  o.capacity = std::uint64_t{1} << 63U;
  SegmentGuard g2;
  EXPECT_ERRC(Store::create(g2.name(), o), Errc::InvalidArgument);
  o = small_options();
  o.max_names = std::numeric_limits<std::uint32_t>::max();
  EXPECT_ERRC(Store::create(g2.name(), o), Errc::InvalidArgument);
  EXPECT_FALSE(Store::exists(g2.name()));

  SegmentInfo i = s.info();
  EXPECT_EQ(i.used, 0U);
  EXPECT_EQ(i.objects, 0U);
}

TEST(HostileInput, types_sealstore_does_not_know_are_refused) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  ValueType t;
  t.kind = static_cast<ValueKind>(9);
  EXPECT_ERRC(s.create_writer(8, t), Errc::InvalidArgument);
  t = ValueType{};
  t.kind = ValueKind::Array;
  t.elem = static_cast<ElemType>(200);
  t.elem_size = 4;
  EXPECT_ERRC(s.create_writer(8, t), Errc::InvalidArgument);
  t.elem = ElemType::Int32;
  t.elem_size = 0;
  EXPECT_ERRC(s.create_writer(8, t), Errc::InvalidArgument);
  t.kind = ValueKind::Scalar;
  t.elem_size = 4;
  EXPECT_ERRC(s.create_writer(8, t), Errc::InvalidArgument);
  EXPECT_EQ(s.info().objects, 0U);
}

TEST(HostileInput, names_cannot_escape_the_segment_directory_or_overflow) {
  for (std::string bad :
       {std::string(".."), std::string("."), std::string("../x"), std::string("a/../b"), std::string("/etc/passwd"),
        std::string("a\\b"), std::string("a\0b", 3), std::string("tab\there"), std::string(201, 'n'), std::string()}) {
    SCOPED_TRACE(bad);
    EXPECT_ERRC(Store::create(bad, small_options()), Errc::InvalidArgument);
    EXPECT_ERRC(Store::attach(bad), Errc::InvalidArgument);
    EXPECT_ERRC(Store::remove(bad), Errc::InvalidArgument);
    EXPECT_ERRC(Store::path_of(bad), Errc::InvalidArgument);
  }
  EXPECT_EQ(Store::path_of(std::string(200, 'n')), "/dev/shm/sealstore." + std::string(200, 'n'));

  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(1);
  // Object names never reach the file system; they are bounded and plain.
  for (std::string bad : {std::string(), std::string(64, 'o'), std::string("a b"), std::string("a\0b", 3),
                          std::string("caf\xc3\xa9"), std::string("x\n")}) {
    SCOPED_TRACE(bad);
    EXPECT_ERRC(s.bind(bad, r), Errc::InvalidArgument);
    EXPECT_ERRC(s.lookup(bad), Errc::InvalidArgument);
    EXPECT_ERRC(s.unbind(bad), Errc::InvalidArgument);
  }
  s.bind(std::string(63, 'o'), r);
  EXPECT_EQ(s.lookup(std::string(63, 'o')), r);
}

TEST(HostileInput, refs_naming_nothing_are_refused_without_touching_the_table) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef good = s.put(5);
  std::uint32_t tag = good.segment_tag();
  RemoteRef beyond(tag, (std::uint64_t{1} << 32U) | 0xffffffffU, 1, 1);  // index past the table
  RemoteRef gen0(tag, 5, 1, 1);  // generation 0 (a ref id of 0 would be the null ref)
  RemoteRef stale(tag, good.id() + (std::uint64_t{7} << 32U), 1, 1);  // a later generation
  for (const RemoteRef& r : {beyond, gen0, stale}) {
    SCOPED_TRACE(r.to_string());
    EXPECT_ERRC(s.fetch(r, 0s), Errc::NotFound);
    EXPECT_ERRC(s.erase(r), Errc::NotFound);
    EXPECT_ERRC(s.put(r, 1), Errc::NotFound);
    EXPECT_ERRC(s.bind("x", r), Errc::NotFound);
    EXPECT_FALSE(s.contains(r));
  }
  EXPECT_ERRC(RemoteRef::parse("RemoteRef(where=1, whence=1, id=00000001:99999999999:1)"), Errc::InvalidArgument);
  // One spelling per ref: to_string prints lower-case hex, so parse takes only that (found by the fuzzer).
  EXPECT_ERRC(RemoteRef::parse("RemoteRef(where=1, whence=1, id=ffffFfff:1:1)"), Errc::InvalidArgument);
  EXPECT_ERRC(RemoteRef::parse("RemoteRef(where=1, whence=1, id=7F3A91C2:1:1)"), Errc::InvalidArgument);
  EXPECT_EQ(RemoteRef::parse("RemoteRef(where=1, whence=1, id=7f3a91c2:1:1)").segment_tag(), 0x7f3a91c2U);
  EXPECT_ERRC(RemoteRef::parse("RemoteRef(where=4294967296, whence=1, id=00000001:1:1)"), Errc::InvalidArgument);
  EXPECT_ERRC(s.fetch(good, -1ns), Errc::InvalidArgument);
  std::vector<std::byte> small(3);
  EXPECT_ERRC(s.materialize_into(good, small), Errc::InvalidArgument);
  EXPECT_EQ(s.fetch(good).as<int>(), 5);
  EXPECT_EQ(s.info().objects, 1U);
}

TEST(HostileInput, a_world_writable_mode_is_refused_at_creation) {
  SegmentGuard g;
  for (std::uint32_t mode : {0666U, 0602U, 0622U, 0777U, 01600U, 04600U}) {
    CreateOptions o = small_options();
    o.mode = mode;
    EXPECT_ERRC(Store::create(g.name(), o), Errc::InvalidArgument);
  }
  EXPECT_FALSE(Store::exists(g.name()));
}

}  // namespace
}  // namespace sealstore
