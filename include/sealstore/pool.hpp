// sealstore::Pool, worker processes that run functions registered by name:
// the program's own executable re-run in worker mode, attached to the
// pool's segment. Tasks travel through shared memory; results come back as
// RemoteRefs sealed by the worker. A Pool is safe for concurrent use from
// many threads of the process that made it; only that process runs tasks.
//
// A program opts in with two lines at the very top of main():
//
//   int main(int argc, char** argv) {
//     if (sealstore::Pool::is_worker(argc, argv)) return sealstore::Pool::worker_main(argc, argv);
//     ...
//
// and registers functions at namespace scope (see docs/pool.md):
//
//   double corner(sealstore::Context& cx, sealstore::RemoteRef m) {
//     return cx.store().fetch(m).as_ndarray<double>()(0, 0);
//   }
//   SEALSTORE_REGISTER("corner", corner);
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "sealstore/error.hpp"
#include "sealstore/ref.hpp"
#include "sealstore/store.hpp"
#include "sealstore/value.hpp"
#include "sealstore/writer.hpp"

namespace sealstore {

class Pool;

namespace detail {
class PoolImpl;
struct ContextAccess;
// For the cluster layer: a task whose arguments check_call() passed,
// queued unless the worker's queue is full (then nullopt: try again).
struct PoolAccess {
  static std::optional<RemoteRef> try_submit_checked(Pool& pool, WorkerId id, std::string_view fn,
                                                     std::span<const std::byte> args);
};
}  // namespace detail

// Worker ids of the pool workers attached to store's segment, ascending:
// the same answer in every process. The pool's own process (id 1) is not a
// worker; before any add() the list is empty. Does not block, except on a
// host of a cluster (cluster.hpp): there it lists the workers of every
// host, and waits for the host's serving process to ask them.
std::vector<WorkerId> workers(const Store& store);

// What a registered function may take as its first parameter: the store it
// runs against, its own id, and its task's result ref.
class Context {
 public:
  Store& store() const noexcept { return *store_; }
  WorkerId myid() const noexcept { return store_->myid(); }
  std::vector<WorkerId> workers() const { return sealstore::workers(*store_); }
  // The function's name, and the ref its result will be sealed under.
  std::string_view function() const noexcept { return function_; }
  const RemoteRef& result() const noexcept { return result_; }
  // Space to build the result in place (no copy): return the Writer from
  // the function and the pool seals it. Errors: as Store::create_writer.
  Writer result_writer(std::uint64_t bytes, const ValueType& type = {}) const {
    return store_->create_writer(result_, bytes, type);
  }

 private:
  friend struct detail::ContextAccess;
  Context(Store& store, const RemoteRef& result, std::string_view function) noexcept
      : store_(&store), result_(result), function_(function) {}
  Store* store_;
  RemoteRef result_;
  std::string_view function_;
};

namespace detail {

// ---- arguments: how a call's arguments are packed into a task

enum class ArgKind : std::uint8_t { Value = 1, String = 2, Ref = 3 };

// One argument's type: what the caller gave, or what a parameter takes.
struct ArgSig {
  ArgKind kind = ArgKind::Value;
  ElemType elem = ElemType::None;
  std::uint32_t size = 0;  // bytes of a Value
  std::uint64_t type_hash = 0;
  friend bool operator==(const ArgSig&, const ArgSig&) = default;
};
// "f64", "i32", "string", "RemoteRef", "trivial(24 B)"
std::string describe(const ArgSig& sig);

// Precedes each argument's bytes in a task; arguments start 8-aligned.
struct ArgHeader {
  ArgKind kind;
  ElemType elem;
  std::uint16_t reserved;
  std::uint32_t size;  // bytes that follow
  std::uint64_t type_hash;
};
static_assert(sizeof(ArgHeader) == 16);

// Bytes of arguments one task carries (headers included), and how many.
inline constexpr std::size_t kTaskArgBytes = 928;
inline constexpr std::size_t kMaxTaskArgs = 16;

template <class T>
inline constexpr bool kIsStringArg = std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view> ||
                                     std::is_same_v<T, const char*> || std::is_same_v<T, char*>;

// The signature of a value passed as (or a parameter taking) T, decayed.
template <class T>
constexpr ArgSig arg_sig() {
  if constexpr (std::is_same_v<T, RemoteRef>) {
    return ArgSig{ArgKind::Ref, ElemType::None, static_cast<std::uint32_t>(sizeof(RemoteRef)), 0};
  } else if constexpr (kIsStringArg<T>) {
    return ArgSig{ArgKind::String, ElemType::None, 0, 0};
  } else {
    static_assert(Element<T>,
                  "a task argument is a trivially copyable value without pointers, a string or a RemoteRef; "
                  "pass anything larger or richer as a RemoteRef");
    ValueType t = element_type<T>(ValueKind::Scalar);
    return ArgSig{ArgKind::Value, t.elem, t.elem_size, t.type_hash};
  }
}

// Packs a call's arguments. Never throws: running out of room is reported
// by overflow() and turned into an error naming the function by the pool.
class ArgWriter {
 public:
  template <class A>
  void add(const A& a) {
    using T = std::decay_t<A>;
    constexpr ArgSig sig = arg_sig<T>();
    if constexpr (std::is_same_v<T, RemoteRef>) {
      put(sig, &a, sizeof(RemoteRef));
    } else if constexpr (kIsStringArg<T>) {
      std::string_view s(a);
      put(sig, s.data(), s.size());
    } else {
      put(sig, &a, sizeof(T));
    }
  }
  std::span<const std::byte> bytes() const noexcept { return {buf_.data(), len_}; }
  std::span<const ArgSig> sigs() const noexcept { return {sigs_.data(), count_ <= kMaxTaskArgs ? count_ : 0}; }
  std::size_t count() const noexcept { return count_; }
  std::size_t needed() const noexcept { return needed_; }  // bytes all arguments need
  bool overflow() const noexcept { return needed_ > kTaskArgBytes || count_ > kMaxTaskArgs; }

 private:
  void put(ArgSig sig, const void* data, std::size_t size) noexcept {
    if (count_ < kMaxTaskArgs) sigs_[count_] = sig;
    ++count_;
    std::size_t total = sizeof(ArgHeader) + ((size + 7) & ~std::size_t{7});
    std::size_t at = needed_;
    needed_ += total;
    if (needed_ > kTaskArgBytes) return;
    ArgHeader h{sig.kind, sig.elem, 0, static_cast<std::uint32_t>(size), sig.type_hash};
    std::memcpy(buf_.data() + at, &h, sizeof h);
    if (size > 0) std::memcpy(buf_.data() + at + sizeof h, data, size);
    len_ = needed_;
  }
  std::array<std::byte, kTaskArgBytes> buf_{};
  std::size_t len_ = 0;
  std::size_t needed_ = 0;
  std::array<ArgSig, kMaxTaskArgs> sigs_{};
  std::size_t count_ = 0;
};

// Unpacks arguments in order, checking each against the parameter's type.
// Errors: TypeMismatch, InvalidArgument (malformed or missing arguments).
class ArgReader {
 public:
  ArgReader(std::span<const std::byte> bytes, std::string_view function) noexcept
      : bytes_(bytes), function_(function) {}

  template <class P>
  auto read() {
    using T = std::remove_cvref_t<P>;
    static_assert(std::is_same_v<T, RemoteRef> || std::is_same_v<T, std::string> ||
                      std::is_same_v<T, std::string_view> || Element<T>,
                  "a registered function's parameters are Context& (first only), trivially copyable values, "
                  "std::string, std::string_view or RemoteRef");
    std::span<const std::byte> payload = next(arg_sig<T>());
    if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
      return T(reinterpret_cast<const char*>(payload.data()), payload.size());  // NOLINT: bytes of chars
    } else {
      T v;
      std::memcpy(&v, payload.data(), sizeof(T));
      return v;
    }
  }
  // Throws InvalidArgument if arguments are left over.
  void finish() const;

 private:
  std::span<const std::byte> next(const ArgSig& want);
  std::span<const std::byte> bytes_;
  std::string_view function_;
  std::size_t pos_ = 0;
  std::size_t index_ = 0;
};

// ---- registered functions

struct FunctionEntry {
  std::string name;
  std::vector<ArgSig> params;
  // Runs the function on the packed arguments and seals its result into
  // cx.result(). Throws whatever the function throws.
  std::function<void(Context& cx, std::span<const std::byte> args)> invoke;
};

// The registered function fn, if args fit its parameters. Errors: NotFound,
// InvalidArgument, TypeMismatch (as Pool::run_at).
const FunctionEntry& check_call(std::string_view fn, const ArgWriter& args);

// Adds entry to this program's table. Returns false when the name is
// invalid or taken; Pool::create and worker_main then fail naming it.
bool register_entry(FunctionEntry entry) noexcept;

void seal_empty_result(Context& cx);
void seal_result_writer(Context& cx, Writer&& w);

template <class F>
struct Signature : Signature<decltype(&F::operator())> {};
template <class R, class... P>
struct Signature<R (*)(P...)> {
  using Result = R;
  using Params = std::tuple<P...>;
};
template <class R, class... P>
struct Signature<R(P...)> : Signature<R (*)(P...)> {};
template <class R, class... P>
struct Signature<R (*)(P...) noexcept> : Signature<R (*)(P...)> {};
template <class C, class R, class... P>
struct Signature<R (C::*)(P...) const> : Signature<R (*)(P...)> {};
template <class C, class R, class... P>
struct Signature<R (C::*)(P...) const noexcept> : Signature<R (*)(P...)> {};
template <class C, class R, class... P>
struct Signature<R (C::*)(P...)> : Signature<R (*)(P...)> {};

template <class R, class Call>
void run_and_seal(Context& cx, Call&& call) {
  if constexpr (std::is_void_v<R>) {
    call();
    seal_empty_result(cx);
  } else if constexpr (std::is_same_v<std::remove_cvref_t<R>, Writer>) {
    seal_result_writer(cx, call());
  } else {
    cx.store().put(cx.result(), call());
  }
}

template <class... Q>
std::vector<ArgSig> param_sigs(std::tuple<Q...>* /*params*/) {
  return {arg_sig<std::remove_cvref_t<Q>>()...};
}
template <class... Q>
std::vector<ArgSig> param_sigs(std::tuple<Context&, Q...>* /*params*/) {
  return {arg_sig<std::remove_cvref_t<Q>>()...};
}

// Braced initialisation of the tuples reads the arguments left to right.
template <class R, class F, class... Q>
void invoke(F& fn, Context& cx, ArgReader& in, std::tuple<Q...>* /*params*/) {
  std::tuple<std::remove_cvref_t<Q>...> values{in.read<Q>()...};
  in.finish();
  run_and_seal<R>(cx, [&]() -> R { return std::apply(fn, values); });
}
template <class R, class F, class... Q>
void invoke(F& fn, Context& cx, ArgReader& in, std::tuple<Context&, Q...>* /*params*/) {
  std::tuple<std::remove_cvref_t<Q>...> values{in.read<Q>()...};
  in.finish();
  run_and_seal<R>(cx, [&]() -> R { return std::apply([&](auto&... v) -> R { return fn(cx, v...); }, values); });
}

template <class F>
FunctionEntry make_entry(std::string_view name, F fn) {
  using S = Signature<F>;
  using R = typename S::Result;
  using Params = typename S::Params;
  FunctionEntry e;
  e.name = std::string(name);
  e.params = param_sigs(static_cast<Params*>(nullptr));
  e.invoke = [fn, name = e.name](Context& cx, std::span<const std::byte> args) mutable {
    ArgReader in(args, name);
    invoke<R>(fn, cx, in, static_cast<Params*>(nullptr));
  };
  return e;
}

}  // namespace detail

// Registers fn under name (1 to 63 of letters, digits, '.', '_', '-', ':',
// '/') in this program, so that workers, which run the same executable, can
// run it. fn is a function or a lambda without captures; its parameters are
// an optional Context& first, then trivially copyable values, std::string,
// std::string_view or RemoteRef. Its result is sealed into the task's
// result ref: any value Store::put takes, a Writer from
// Context::result_writer (sealed in place), or void (an empty object).
// Register before main() runs (SEALSTORE_REGISTER): a worker knows only
// what was registered by the time it reached Pool::worker_main.
template <class F>
bool register_function(std::string_view name, F fn) noexcept {
  try {
    return detail::register_entry(detail::make_entry(name, fn));
  } catch (...) {  // out of memory before main(): reported as a registration failure
    return false;
  }
}

#define SEALSTORE_DETAIL_CAT2(a, b) a##b
#define SEALSTORE_DETAIL_CAT(a, b) SEALSTORE_DETAIL_CAT2(a, b)
// At namespace scope: SEALSTORE_REGISTER("name", function);
#define SEALSTORE_REGISTER(name, fn)                                                            \
  [[maybe_unused]] static const bool SEALSTORE_DETAIL_CAT(sealstore_registered_, __COUNTER__) = \
      ::sealstore::register_function(name, fn)

struct PoolOptions {
  // The segment the pool creates, and removes when it goes.
  CreateOptions store{};
  // The worker executable: empty for this program (/proc/self/exe), which
  // must call Pool::is_worker/worker_main first thing in main().
  std::string executable{};
  // Workers alive at once (at most 120: the segment has 128 process slots).
  std::uint32_t max_workers = 64;
  // Tasks queued per worker; run_at waits (sleeping) while a queue is full.
  std::uint32_t queue_depth = 64;
  // A new worker must attach within this; a removed one must stop within
  // stop_timeout, or it is killed.
  std::chrono::milliseconds start_timeout{30000};
  std::chrono::milliseconds stop_timeout{10000};
  // On SIGINT, SIGTERM, SIGHUP and SIGABRT (where the program has not set
  // its own handler), and at exit(), kill the workers and remove the
  // segment before the process goes.
  bool handle_signals = true;
};

struct EverywhereOptions {
  // Run it in the calling process too, as worker 1.
  bool include_self = false;
  // Run it also on every worker added later, before add() returns, so a
  // pool's set-up follows it as it grows. RemoteRef arguments of a sticky
  // broadcast must stay alive as long as the pool.
  bool sticky = false;
};

class Pool {
 public:
  // True when this process was started by a pool as a worker: main() must
  // then return worker_main(argc, argv) before doing anything else.
  static bool is_worker(int argc, char** argv) noexcept;
  // Runs this process as a worker until its pool removes it (or dies) and
  // returns main()'s exit code. Does not throw: failures are printed to
  // stderr and the owner sees the worker exit.
  static int worker_main(int argc, char** argv) noexcept;

  // Creates segment NAME (as Store::create: this process becomes worker 1)
  // and a pool on it with no workers yet. Errors: as Store::create, and
  // InvalidArgument (options; a function registered twice or under a bad
  // name; called in a process started as a worker whose main() did not
  // call worker_main first).
  static Pool create(std::string_view segment, const PoolOptions& options = {});

  Pool(Pool&&) noexcept;
  Pool& operator=(Pool&&) noexcept;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  // Stops every worker (each finishes its queue; killed after stop_timeout),
  // then detaches and removes the segment. Blocks until all are gone.
  ~Pool();

  // The pool's segment. Valid as long as the pool.
  Store& store();
  WorkerId myid() const;  // 1
  // As sealstore::workers(store()): ascending, the same in every process.
  std::vector<WorkerId> workers() const;
  // The process id of worker id. Errors: InvalidArgument (not a live worker).
  std::int32_t pid(WorkerId id) const;

  // Starts n workers; returns their ids once each has attached and run
  // every sticky broadcast. All or nothing: if one fails, none is added.
  // Blocks. Errors: WorkerFailed (a worker could not start, exited, timed
  // out, or a sticky broadcast failed on it), OutOfMemory (max_workers).
  std::vector<WorkerId> add(std::size_t n = 1);
  // Stops worker id: it takes no new tasks, finishes those queued, detaches
  // and exits; killed if it takes longer than the timeout (its unfinished
  // tasks then fail with WorkerFailed). Blocks until it is gone. Errors:
  // InvalidArgument (not a live worker of this pool, or 1).
  void remove(WorkerId id);
  void remove(WorkerId id, std::chrono::milliseconds timeout);

  // Queues function fn on worker id (1: runs it here, now) and returns the
  // ref its result will be sealed under (where = id, whence = 1); fetch it
  // like any ref. Does not wait for the task, only for room in a full
  // queue. The result is an object like any other: erase it when done.
  // Errors: NotFound (fn is not registered), TypeMismatch (an argument's
  // type is not the parameter's), InvalidArgument (wrong number of
  // arguments, arguments too large for a task, id not a live worker).
  // Fetching the result fails with WorkerFailed if fn threw (its message
  // included) or the worker died (the worker and the signal named).
  template <class... A>
  RemoteRef run_at(WorkerId id, std::string_view fn, const A&... args) {
    detail::ArgWriter w;
    (w.add(args), ...);
    return submit(id, fn, w);
  }

  // run_at, then waits for the result and copies it out (R as for
  // Store::materialize, or void), erasing the result ref. Errors: as
  // run_at, then WorkerFailed, TypeMismatch.
  template <class R = void, class... A>
  R call(WorkerId id, std::string_view fn, const A&... args) {
    RemoteRef ref = run_at(id, fn, args...);
    struct Erase {
      Store& s;
      RemoteRef r;
      ~Erase() { erase_quietly(s, r); }
    } erase{store(), ref};
    if constexpr (std::is_void_v<R>) {
      store().fetch(ref);
    } else {
      return store().template materialize<R>(ref);
    }
  }

  // Runs fn on every worker (and, with include_self, here as worker 1) and
  // waits for all. Returns the result refs in ascending worker order (the
  // worker of each is its where()). If any fails, all results are erased
  // and WorkerFailed names every failure. Errors: as run_at, WorkerFailed.
  template <class... A>
  std::vector<RemoteRef> everywhere(std::string_view fn, const A&... args) {
    return everywhere(EverywhereOptions{}, fn, args...);
  }
  template <class... A>
  std::vector<RemoteRef> everywhere(const EverywhereOptions& options, std::string_view fn, const A&... args) {
    detail::ArgWriter w;
    (w.add(args), ...);
    return broadcast(options, fn, w);
  }

 private:
  friend struct detail::PoolAccess;
  explicit Pool(std::unique_ptr<detail::PoolImpl> impl) noexcept;
  detail::PoolImpl& impl() const;
  RemoteRef submit(WorkerId id, std::string_view fn, const detail::ArgWriter& args);
  std::vector<RemoteRef> broadcast(const EverywhereOptions& options, std::string_view fn,
                                   const detail::ArgWriter& args);
  static void erase_quietly(Store& s, const RemoteRef& r) noexcept;

  std::unique_ptr<detail::PoolImpl> impl_;
};

}  // namespace sealstore
