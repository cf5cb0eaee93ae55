// The C++ side of the cross-language test. Usage:
//   sealstore_py_peer seal SEGMENT    seals C++ values under names "cpp/..."
//   sealstore_py_peer check SEGMENT   reads back what Python sealed under "py/..."
// Prints one line per mismatch and exits 1 if there was any.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "sealstore/sealstore.hpp"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("mismatch: %s\n", what.c_str());
    ++failures;
  }
}

sealstore::RemoteRef named(const sealstore::Store& s, const std::string& name) {
  auto ref = s.lookup(name);
  if (!ref) throw sealstore::Error(sealstore::Errc::NotFound, "nothing bound to " + name);
  return *ref;
}

void seal(sealstore::Store& s) {
  sealstore::NdArray<double> m({3, 4});
  for (std::size_t i = 0; i < m.size(); ++i) m.flat()[i] = static_cast<double>(i) * 0.5;
  s.bind("cpp/nd_f64", s.put(m));
  s.bind("cpp/vec_i32", s.put(std::vector<std::int32_t>{-1, 2, -3, 4}));
  sealstore::NdArray<std::uint16_t> cube({2, 2, 2});
  for (std::size_t i = 0; i < cube.size(); ++i) cube.flat()[i] = static_cast<std::uint16_t>(100 + i);
  s.bind("cpp/nd_u16", s.put(cube));
  s.bind("cpp/text", s.put(std::string("from C++")));
  s.bind("cpp/i64", s.put(std::int64_t{-7}));
  s.bind("cpp/f32", s.put(1.25F));
  s.bind("cpp/bool", s.put(true));
  s.bind("cpp/vec_u8", s.put(std::vector<std::uint8_t>{1, 2, 3}));
}

void check(sealstore::Store& s) {
  auto nd = s.materialize<sealstore::NdArray<double>>(named(s, "py/nd_f64"));
  expect(nd.rank() == 2 && nd.shape()[0] == 2 && nd.shape()[1] == 3, "py/nd_f64 shape");
  for (std::size_t i = 0; i < nd.size(); ++i) {
    expect(nd.flat()[i] == static_cast<double>(i) + 0.25, "py/nd_f64 element " + std::to_string(i));
  }
  expect(s.materialize<std::vector<std::int32_t>>(named(s, "py/vec_i32")) == std::vector<std::int32_t>{5, -6, 7},
         "py/vec_i32");
  sealstore::View cube = s.fetch(named(s, "py/nd_u8"));
  auto c = cube.as_ndarray<std::uint8_t>();
  expect(c.rank() == 3 && c.extent(0) == 2 && c.extent(1) == 3 && c.extent(2) == 4, "py/nd_u8 shape");
  expect(c(1, 2, 3) == 23, "py/nd_u8(1, 2, 3)");
  expect(s.materialize<std::string>(named(s, "py/text")) == "from Python \xe2\x9c\x93", "py/text");
  expect(s.materialize<std::int64_t>(named(s, "py/int")) == (std::int64_t{1} << 40), "py/int");
  expect(s.materialize<double>(named(s, "py/float")) == 2.75, "py/float");
  expect(s.materialize<bool>(named(s, "py/bool")), "py/bool");
  expect(s.materialize<float>(named(s, "py/np_f32")) == 0.5F, "py/np_f32");
  auto w = s.materialize<sealstore::NdArray<float>>(named(s, "py/writer_f32"));
  expect(w.rank() == 1 && w.size() == 4 && w.flat()[3] == 3.0F, "py/writer_f32");
  auto raw = s.materialize<std::vector<std::byte>>(named(s, "py/bytes"));
  expect(raw.size() == 3 && raw[0] == std::byte{'a'} && raw[2] == std::byte{'c'}, "py/bytes");
  // The types are exact: the same bytes under another C++ type are refused.
  try {
    (void)s.materialize<sealstore::NdArray<float>>(named(s, "py/nd_f64"));
    expect(false, "py/nd_f64 read as NdArray<float>");
  } catch (const sealstore::Error& e) {
    expect(e.code() == sealstore::Errc::TypeMismatch, std::string("py/nd_f64 as float: ") + e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s seal|check SEGMENT\n", argv[0]);
    return 2;
  }
  try {
    auto store = sealstore::Store::attach(argv[2]);
    std::string mode = argv[1];
    if (mode == "seal") {
      seal(store);
    } else {
      check(store);
    }
  } catch (const sealstore::Error& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
