#include <gtest/gtest.h>

#include <unordered_set>

#include "sealstore/sealstore.hpp"

namespace sealstore {
namespace {

Errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return Errc{};
}

TEST(RemoteRef, to_string_and_parse_round_trip) {
  RemoteRef r(0x7f3a91c2U, (std::uint64_t{3} << 32U) | 42U, 2, 1);
  EXPECT_EQ(r.to_string(), "RemoteRef(where=2, whence=1, id=7f3a91c2:42:3)");
  RemoteRef back = RemoteRef::parse(r.to_string());
  EXPECT_EQ(back, r);
  EXPECT_EQ(back.where(), 2U);
  EXPECT_EQ(back.whence(), 1U);
  EXPECT_EQ(back.segment_tag(), 0x7f3a91c2U);
  EXPECT_EQ(back.id(), r.id());
}

TEST(RemoteRef, parse_is_the_exact_inverse_of_to_string_for_every_ref) {
  RemoteRef null;
  EXPECT_EQ(RemoteRef::parse(null.to_string()), null);
  EXPECT_TRUE(RemoteRef::parse(null.to_string()).is_null());
  // Refs no segment issues (generation 0) still print and parse back.
  RemoteRef odd(0x10U, 7, 0, 0);
  EXPECT_EQ(RemoteRef::parse(odd.to_string()), odd);
  RemoteRef big(0xffffffffU, ~std::uint64_t{0}, 0xffffffffU, 0xffffffffU);
  RemoteRef back = RemoteRef::parse(big.to_string());
  EXPECT_EQ(back, big);
  EXPECT_EQ(back.where(), big.where());
  EXPECT_EQ(back.whence(), big.whence());
}

TEST(RemoteRef, parse_rejects_malformed_text_with_invalid_argument) {
  const char* bad[] = {
      "",
      "RemoteRef(2,1,15)",
      "RemoteRef(where=2, whence=1, id=7f3a91c2:42:3",    // no ')'
      "RemoteRef(where=2, whence=1, id=7f3a91c2:42:3) ",  // trailing space
      "RemoteRef(where=-2, whence=1, id=7f3a91c2:42:3)",
      "RemoteRef(where=02, whence=1, id=7f3a91c2:42:3)",  // leading zero
      "RemoteRef(where=2, whence=1, id=7f3a91c:42:3)",    // 7 hex digits
      "RemoteRef(where=2, whence=1, id=7f3a91c2:42:99999999999)",
      "RemoteRef(where=2, whence=1, id=zzzzzzzz:42:3)",
  };
  for (const char* text : bad) {
    EXPECT_EQ(code_of([&] { RemoteRef::parse(text); }), Errc::InvalidArgument) << text;
  }
  try {
    RemoteRef::parse("garbage!");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("garbage!"), std::string::npos) << "the message names the text";
  }
}

TEST(RemoteRef, equality_and_hash_follow_the_object_not_where) {
  RemoteRef a(1, 5, 2, 1);
  RemoteRef b(1, 5, 3, 3);
  RemoteRef c(2, 5, 2, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::unordered_set<RemoteRef> set{a, b, c};
  EXPECT_EQ(set.size(), 2U);
  EXPECT_TRUE(RemoteRef().is_null());
}

TEST(Error, message_starts_with_the_code_name) {
  Error e(Errc::AlreadySealed, "ref X");
  EXPECT_EQ(e.code(), Errc::AlreadySealed);
  EXPECT_STREQ(e.what(), "AlreadySealed: ref X");
  EXPECT_EQ(to_string(Errc::IncompatibleSegment), "IncompatibleSegment");
}

TEST(ValueType, describe_names_kind_element_and_shape) {
  std::uint64_t shape[] = {10000, 10000};
  EXPECT_EQ(ndarray_type<double>(shape).describe(), "f64[10000x10000]");
  EXPECT_EQ(element_type<int>(ValueKind::Array).describe(), "i32[]");
  EXPECT_EQ(element_type<float>(ValueKind::Scalar).describe(), "f32");
  EXPECT_EQ(ValueType{}.describe(), "bytes");
}

// The form value.hpp's comment shows: one {first, last} per dimension.
TEST(NdView, slice_takes_one_range_per_dimension_as_documented) {
  NdArray<double> a({10, 10}, 1.0);
  a(0, 4) = 2.0;
  NdView<double> corner = a.view().slice({0, 5}, {0, 5});
  EXPECT_EQ(corner.extent(0), 5U);
  EXPECT_EQ(corner.extent(1), 5U);
  EXPECT_EQ(corner(0, 4), 2.0);
  NdView<double> rows = a.view().slice({2, 4});
  EXPECT_EQ(rows.extent(0), 2U);
  EXPECT_EQ(rows.extent(1), 10U);
}

TEST(NdView, indexes_and_slices_without_copying) {
  NdArray<double> a({3, 4});
  for (std::uint64_t i = 0; i < 3; ++i) {
    for (std::uint64_t j = 0; j < 4; ++j) a(i, j) = static_cast<double>(i * 10 + j);
  }
  NdView<double> v = a.view();
  EXPECT_EQ(v(2, 3), 23.0);
  NdView<double> s = v.slice({{1, 3}, {1, 3}});
  EXPECT_EQ(s.extent(0), 2U);
  EXPECT_EQ(s.extent(1), 2U);
  EXPECT_EQ(s(0, 0), 11.0);
  EXPECT_EQ(s(1, 1), 22.0);
  EXPECT_EQ(&s(0, 0), &a(1, 1)) << "a slice points into the same memory";
  EXPECT_FALSE(s.contiguous());
  EXPECT_EQ(code_of([&] { (void)v.at(3, 0); }), Errc::InvalidArgument);
  EXPECT_EQ(code_of([&] { (void)v.slice({{0, 4}}); }), Errc::InvalidArgument);
  EXPECT_EQ(code_of([&] { NdArray<int>({2, 2}, std::vector<int>{1, 2, 3}); }), Errc::InvalidArgument);
}

}  // namespace
}  // namespace sealstore
