// libFuzzer target: RemoteRef::parse on arbitrary text. It returns a ref
// whose to_string() is exactly that text (each ref has one spelling), or
// throws sealstore::Error(InvalidArgument). Anything else is a bug: another
// exception, another code, a crash or a sanitizer report.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sealstore/error.hpp"
#include "sealstore/ref.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);  // NOLINT: bytes as text
  try {
    sealstore::RemoteRef r = sealstore::RemoteRef::parse(text);
    std::string again = r.to_string();
    if (again != text) {
      std::fprintf(stderr, "parse(\"%.*s\") prints back as \"%s\"\n", static_cast<int>(size), text.data(),
                   again.c_str());
      std::abort();
    }
    sealstore::RemoteRef r2 = sealstore::RemoteRef::parse(again);
    if (!(r2 == r) || r2.where() != r.where() || r2.whence() != r.whence()) std::abort();
  } catch (const sealstore::Error& e) {
    if (e.code() != sealstore::Errc::InvalidArgument) {
      std::fprintf(stderr, "parse threw %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
