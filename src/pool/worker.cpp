// The worker side of the pool: a process started by Pool::add with
//   PROGRAM --sealstore-worker SEGMENT DIRECTORY CONTROL_FD SLOT OWNER_PID
// attaches to the segment, announces itself in its control slot, then
// takes tasks from its ring until told to stop (or its owner dies).
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <array>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pool/control.hpp"
#include "pool/registry.hpp"
#include "pool/task.hpp"
#include "sealstore/pool.hpp"
#include "sync/atomics.hpp"

namespace sealstore {

namespace {

constexpr std::string_view kWorkerFlag = "--sealstore-worker";
// A sleeping worker looks up at least this often to see that its owner lives.
constexpr std::chrono::seconds kOwnerCheck{1};

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

struct WorkerArgs {
  std::string segment;
  std::string directory;
  int control_fd = -1;
  std::uint32_t slot = 0;
  pid_t owner = 0;
};

WorkerArgs parse_args(int argc, char** argv) {
  WorkerArgs a;
  if (argc != 7) throw Error(Errc::InvalidArgument, fmt::format("{} takes 5 arguments, not {}", kWorkerFlag, argc - 2));
  a.segment = argv[2];                                                           // NOLINT
  a.directory = std::string_view(argv[3]) == "-" ? "" : argv[3];                 // NOLINT
  if (!parse_number(argv[4], a.control_fd) || !parse_number(argv[5], a.slot) ||  // NOLINT
      !parse_number(argv[6], a.owner)) {                                         // NOLINT
    throw Error(Errc::InvalidArgument, fmt::format("malformed {} arguments", kWorkerFlag));
  }
  return a;
}

class Mapped {
 public:
  explicit Mapped(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
      throw Error(Errc::InvalidArgument, fmt::format("the pool's control block (fd {}) is missing", fd));
    }
    bytes_ = static_cast<std::uint64_t>(st.st_size);
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw Error(Errc::OutOfMemory, "cannot map the pool's control block");
    base_ = static_cast<std::byte*>(p);
  }
  ~Mapped() { ::munmap(base_, bytes_); }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  detail::ControlBlock block() const noexcept { return {base_, bytes_}; }

 private:
  std::byte* base_ = nullptr;
  std::uint64_t bytes_ = 0;
};

int serve(Store& segment, const detail::ControlBlock& cb, std::uint32_t slot, pid_t owner) {
  using detail::load;
  using detail::store;  // the atomic store, not a Store
  detail::WorkerControl& w = cb.worker(slot);
  std::array<std::byte, detail::kTaskArgBytes> args{};
  std::uint32_t tail = load(w.tail);
  for (;;) {
    // The bell is read before what it announces: if the owner publishes a
    // task or sets stop after this read, it bumps the bell after, and the
    // futex wait below returns at once instead of sleeping through it.
    std::uint32_t bell = load(w.bell, std::memory_order_acquire);
    std::uint32_t head = load(w.head, std::memory_order_acquire);
    if (head == tail) {
      if (load(w.stop) != 0) return 0;
      // Announce the sleep, then look again: the owner rings the bell and
      // then reads worker_sleeping, so one of us sees the other.
      store(w.worker_sleeping, std::uint32_t{1});
      if (load(w.head) == tail && load(w.stop) == 0) detail::futex_wait(&w.bell, bell, kOwnerCheck);
      store(w.worker_sleeping, std::uint32_t{0});
      if (::getppid() != owner) return 0;  // the owner died; PR_SET_PDEATHSIG normally got here first
      continue;
    }
    const detail::TaskSlot& t = cb.task(slot, tail);
    RemoteRef result(t.segment_tag, t.ref_id, t.where, t.whence);
    std::array<char, detail::kFunctionNameBytes> fn{};
    std::memcpy(fn.data(), t.function, fn.size());
    fn.back() = '\0';
    std::size_t n = std::min<std::size_t>(t.args_size, args.size());
    std::memcpy(args.data(), t.args, n);
    // The slot is copied out: hand it back to the producer.
    store(w.tail, tail + 1);
    ++tail;
    if (load(w.owner_waiting) != 0) detail::futex_wake_all(&w.tail);
    detail::run_task(segment, result, std::string_view(fn.data()), std::span<const std::byte>(args.data(), n));
    store(w.done, tail, std::memory_order_release);
  }
}

}  // namespace

bool Pool::is_worker(int argc, char** argv) noexcept {
  return argc >= 2 && argv != nullptr && argv[1] != nullptr && std::string_view(argv[1]) == kWorkerFlag;  // NOLINT
}

namespace detail {
namespace {
std::atomic<bool> g_in_worker_main{false};
}  // namespace
bool in_worker_main() noexcept { return g_in_worker_main.load(); }
}  // namespace detail

int Pool::worker_main(int argc, char** argv) noexcept {
  detail::g_in_worker_main.store(true);
  try {
    WorkerArgs a = parse_args(argc, argv);
    // Die with the owner (its spawning thread, which lives as long as the
    // pool), and check it did not die before this took effect.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != a.owner) return 1;
    // Ctrl-C reaches the whole process group: the owner handles it and
    // stops its workers.
    ::signal(SIGINT, SIG_IGN);
    detail::check_registrations();

    Mapped control(a.control_fd);
    ::close(a.control_fd);
    detail::ControlBlock cb = control.block();
    cb.validate();
    if (a.slot >= cb.header().max_workers) {
      throw Error(Errc::InvalidArgument, fmt::format("worker slot {} is out of range", a.slot));
    }
    AttachOptions o;
    o.role = Role::Worker;
    o.directory = a.directory;
    Store store = Store::attach(a.segment, o);
    if (store.info().segment_tag != cb.header().segment_tag) {
      throw Error(Errc::IncompatibleSegment,
                  fmt::format("segment '{}' is not the one the pool made (it was re-created)", a.segment));
    }
    detail::WorkerControl& w = cb.worker(a.slot);
    detail::store(w.worker_id, store.myid());
    detail::store(w.pid, static_cast<std::int32_t>(::getpid()));
    auto expected = static_cast<std::uint32_t>(detail::WorkerState::Starting);
    if (!detail::atomic(w.state).compare_exchange_strong(expected,
                                                         static_cast<std::uint32_t>(detail::WorkerState::Ready))) {
      return 1;  // the owner gave up on this start
    }
    detail::futex_wake_all(&w.state);
    int rc = serve(store, cb, a.slot, a.owner);
    std::fflush(nullptr);
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sealstore worker (pid %d): %s\n", static_cast<int>(::getpid()), e.what());
  } catch (...) {
    std::fprintf(stderr, "sealstore worker (pid %d): unknown exception\n", static_cast<int>(::getpid()));
  }
  return 2;
}

}  // namespace sealstore
