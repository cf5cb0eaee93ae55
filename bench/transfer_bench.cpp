// Julia-style transfer: the payload sent to another process over a unix
// socket, received into a fresh buffer (as Distributed's fetch does), against
// sealstore: the ref sent over the same socket and fetched by the other
// process. Both are timed from the first byte sent to the other process's
// one-byte acknowledgement, alternated in each iteration.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "support/bench_support.hpp"

namespace sealstore::bench {
namespace {

enum : std::uint64_t { kPayload = 0, kRef = 1 };

void send_all(int fd, const void* data, std::uint64_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw std::system_error(errno, std::generic_category(), "send on the transfer socket");
    p += w;  // NOLINT
    n -= static_cast<std::uint64_t>(w);
  }
}

// False on a clean EOF before the first byte.
bool recv_all(int fd, void* data, std::uint64_t n) {
  auto* p = static_cast<char*>(data);
  std::uint64_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd, p + got, n - got, 0);  // NOLINT
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && got == 0) return false;
    if (r <= 0) throw std::system_error(errno, std::generic_category(), "recv on the transfer socket");
    got += static_cast<std::uint64_t>(r);
  }
  return true;
}

// Fd 5 is its end of the socket; attaches to segment ARGS[0] in ARGS[1].
// Each message is {kind, length} then length bytes: a payload, received into
// a fresh malloc'd buffer, or a ref's text, fetched. Either way it
// acknowledges with one byte, then waits for "done" on the pipe to let the
// buffer (or view) go, untimed, and answers "ok".
int receiver(const ParentLink& link, const std::vector<std::string>& args) {
  AttachOptions o;
  o.directory = args.size() > 1 ? args[1] : "";
  Store store = Store::attach(args.at(0), o);
  int fd = ParentLink::kExtraFd;
  for (;;) {
    std::array<std::uint64_t, 2> header{};
    if (!recv_all(fd, header.data(), sizeof header)) return 0;
    std::unique_ptr<std::byte, decltype(&std::free)> buffer(nullptr, &std::free);
    View view;
    if (header[0] == kPayload) {
      buffer.reset(static_cast<std::byte*>(std::malloc(header[1])));  // NOLINT: a fresh buffer, as Julia's
      if (!buffer) throw std::bad_alloc();
      recv_all(fd, buffer.get(), header[1]);
    } else {
      std::string text(header[1], '\0');
      recv_all(fd, text.data(), header[1]);
      view = store.fetch(RemoteRef::parse(text));
    }
    char ack = 'k';
    send_all(fd, &ack, 1);
    auto line = link.receive();
    if (!line) return 0;
    buffer.reset();
    view.reset();
    link.send("ok");
  }
}
const ChildRole receiver_role("receiver", receiver);

struct Transfer {
  Transfer(std::uint64_t size, std::array<int, 2> fds)
      : owned("transfer", store_options(size + MiB)),
        ref(owned.store.put_bytes({}, std::span(source_buffer(), size))),
        socket(fds[0]),
        child("receiver", {owned.name.name(), owned.name.directory()}, fds[1]) {
    ::close(fds[1]);
  }
  ~Transfer() { ::close(socket); }  // the child sees EOF and exits
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  OwnedStore owned;
  RemoteRef ref;
  int socket;
  ChildProcess child;

  std::uint64_t send(std::uint64_t kind, const void* data, std::uint64_t n) {
    std::array<std::uint64_t, 2> header{kind, n};
    std::uint64_t t0 = now_ns();
    send_all(socket, header.data(), sizeof header);
    send_all(socket, data, n);
    char ack = 0;
    if (!recv_all(socket, &ack, 1)) throw std::runtime_error("the receiver closed the socket");
    std::uint64_t dt = now_ns() - t0;
    child.send("done");
    if (child.receive() != "ok") throw std::runtime_error("the receiver did not finish");
    return dt;
  }
};

std::array<int, 2> socket_pair() {
  std::array<int, 2> fds{};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  return fds;
}

void transfer(benchmark::State& state, std::uint64_t size) {
  auto& f = cached<Transfer>("transfer/" + size_label(size),
                             [size] { return std::make_unique<Transfer>(size, socket_pair()); });
  std::string text = f.ref.to_string();
  Tally t;
  Samples samples;
  for (auto _ : state) {
    std::uint64_t by_ref = f.send(kRef, text.data(), text.size());
    std::uint64_t by_socket = f.send(kPayload, source_buffer(), size);
    state.SetIterationTime(seconds(by_ref));
    samples.subject.push_back(by_ref);
    samples.baseline.push_back(by_socket);
    t.subject_ns += by_ref;
    t.baseline_ns += by_socket;
    t.ops += 1;
    t.baseline_ops += 1;
  }
  finish(state, t, 0, Ratio::Latency);  // no bytes_per_second: the ref hand-off moves none
  finish_samples(state, samples);
  state.counters["size"] = static_cast<double>(size);
}

void register_transfer() {
  for (std::uint64_t s : capped_sizes({4 * KiB, 64 * KiB, MiB, 16 * MiB, 64 * MiB, 256 * MiB, GiB})) {
    // The timed ref hand-off is ~50 us whatever the size, the socket baseline
    // in the same iteration up to a second: a fixed count, fewer for larger.
    auto n = static_cast<benchmark::IterationCount>(std::clamp<std::uint64_t>(GiB / s, 5, 200));
    add("transfer/" + size_label(s), [s](benchmark::State& st) { transfer(st, s); })->Iterations(fixed_iterations(n));
  }
}
const Registrar registrar(60, register_transfer);

}  // namespace
}  // namespace sealstore::bench
