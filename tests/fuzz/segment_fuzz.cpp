// libFuzzer target: segment validation. A real segment (a few objects, a
// name, an unfilled ref) is written to a file with fuzzed bytes patched into
// its header and tables, then attached as an observer and as a process and
// used: introspection, fetch, materialize, erase, put, bind, recover. Only
// sealstore::Error may come out; a crash, a sanitizer report or a hang is a
// bug.
//
// Input: one flags byte, then patches of [u16 offset][u8 length][bytes],
// each written over the tables at offset % (end of the tables). Flags: bit 0
// also attaches as a process (not only as an observer); bit 1 cuts the file
// to a length taken from the next four bytes.
//
// Nothing is kept intact, the lock word included: a word naming a holder
// that is dead, or that does not claim it, is taken over within a few
// milliseconds (docs/reliability.md).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "segment/layout.hpp"

namespace {

using sealstore::Error;
using sealstore::Store;

struct Template {
  std::string dir;
  std::string name = "fuzz";
  std::string path;
  std::vector<std::byte> image;  // the file from 0 to the end of the tables
  std::uint64_t file_size = 0;
  int fd = -1;
};

Template* g_template = nullptr;

void cleanup() {
  if (g_template == nullptr) return;
  ::close(g_template->fd);
  ::unlink(g_template->path.c_str());
  ::rmdir(g_template->dir.c_str());
}

void make_template() {
  auto* t = new Template();  // NOLINT: lives for the process
  // A private directory: nothing else can plant or watch files in it.
  char dir[] = "/dev/shm/sealstore-fuzz-XXXXXX";
  if (::mkdtemp(dir) == nullptr) std::abort();
  t->dir = dir;
  sealstore::CreateOptions o;
  o.capacity = 64 << 10;
  o.max_objects = 16;
  o.max_names = 4;
  o.directory = t->dir;
  {
    Store s = Store::create(t->name, o);
    s.put(12345);
    sealstore::RemoteRef text = s.put(std::string(300, 't'));
    s.put(sealstore::NdArray<double>({3, 4}, 1.5));
    s.put(std::vector<std::int16_t>(40, 7));
    s.make_ref(7);
    s.bind("text", text);
    sealstore::RemoteRef gone = s.put(1);
    s.erase(gone);
    t->path = Store::path_of(t->name, t->dir);
  }
  t->fd = ::open(t->path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (t->fd < 0) std::abort();
  sealstore::detail::Header h{};
  if (::pread(t->fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) std::abort();
  t->file_size = h.file_size;
  t->image.resize(h.alloc_offset + h.alloc_bytes);
  if (::pread(t->fd, t->image.data(), t->image.size(), 0) != static_cast<ssize_t>(t->image.size())) std::abort();
  g_template = t;
  std::atexit(cleanup);
}

// Runs op; a sealstore::Error is an expected answer to garbage.
template <class Op>
void attempt(Op op) {
  try {
    op();
  } catch (const Error&) {  // NOLINT(bugprone-empty-catch): the one allowed outcome
  }
}

std::uint64_t touch(std::span<const std::byte> bytes) {
  std::uint64_t sum = 0;
  for (std::byte b : bytes) sum += static_cast<std::uint8_t>(b);
  return sum;
}

void read_everything(const Store& s) {
  sealstore::SegmentInfo i = s.info();
  (void)i.name.size();
  for (const auto& p : s.processes()) (void)p.pinned_bytes;
  for (const auto& o : s.objects()) {
    (void)o.type.describe();
    (void)o.ref.to_string();
    for (const auto& n : o.names) attempt([&] { (void)s.lookup(n); });
  }
  attempt([&] { (void)s.lookup("text"); });
  attempt([&] { (void)s.lookup("absent"); });
}

void use_everything(Store& s) {
  read_everything(s);
  volatile std::uint64_t sink = 0;
  for (const auto& o : s.objects()) {
    attempt([&] {
      if (auto v = s.try_fetch(o.ref)) {
        sink = sink + touch(v->bytes());
        (void)v->type().describe();
      }
    });
    attempt([&] { sink = sink + s.materialize<std::vector<std::byte>>(o.ref, std::chrono::nanoseconds(0)).size(); });
    attempt([&] { sink = sink + static_cast<std::uint64_t>(s.materialize<int>(o.ref, std::chrono::nanoseconds(0))); });
    attempt(
        [&] { sink = sink + s.materialize<sealstore::NdArray<double>>(o.ref, std::chrono::nanoseconds(0)).size(); });
    attempt([&] { s.bind("fuzzed", o.ref); });
    attempt([&] { s.erase(o.ref); });
  }
  attempt([&] {
    sealstore::RemoteRef r = s.put(std::vector<int>(100, 3));
    s.bind("mine", r);
    sink = sink + static_cast<std::uint64_t>(s.fetch(r).as_span<int>()[99]);
  });
  attempt([&] { s.put(s.make_ref(), 9); });
  attempt([&] { (void)s.recover(); });
  read_everything(s);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  make_template();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Template& t = *g_template;
  std::vector<std::byte> image = t.image;
  std::uint8_t flags = size > 0 ? data[0] : 0;
  std::size_t at = 1;
  std::uint64_t cut = t.file_size;
  if ((flags & 2U) != 0 && size >= at + 4) {
    std::uint32_t len = 0;
    std::memcpy(&len, data + at, 4);
    cut = len % (t.file_size + 1);
    at += 4;
  }
  while (at + 3 <= size) {
    std::uint16_t off = 0;
    std::memcpy(&off, data + at, 2);
    std::size_t len = data[at + 2] % 64U + 1;
    at += 3;
    len = std::min(len, size - at);
    for (std::size_t k = 0; k < len; ++k) {
      std::uint64_t pos = (std::uint64_t{off} + k) % image.size();
      image[pos] = static_cast<std::byte>(data[at + k]);
    }
    at += len;
  }
  if (::ftruncate(t.fd, static_cast<off_t>(t.file_size)) != 0) std::abort();
  if (::pwrite(t.fd, image.data(), image.size(), 0) != static_cast<ssize_t>(image.size())) std::abort();
  if (cut != t.file_size && ::ftruncate(t.fd, static_cast<off_t>(cut)) != 0) std::abort();

  sealstore::AttachOptions observer;
  observer.observer = true;
  observer.directory = t.dir;
  attempt([&] {
    Store s = Store::attach(t.name, observer);
    read_everything(s);
  });
  if ((flags & 1U) != 0) {
    sealstore::AttachOptions process;
    process.directory = t.dir;
    attempt([&] {
      Store s = Store::attach(t.name, process);
      use_everything(s);
    });
  }
  return 0;
}
