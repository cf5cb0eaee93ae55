#include "sealstore/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "segment/segment.hpp"
#include "store/cluster_link.hpp"
#include "store/entry_view.hpp"
#include "store/session.hpp"

namespace sealstore {

Store::Store(std::shared_ptr<detail::Session> s) noexcept : session_(std::move(s)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

Store Store::create(std::string_view name, const CreateOptions& options) {
  return Store(detail::Session::create(name, options));
}

Store Store::attach(std::string_view name, const AttachOptions& options) {
  return Store(detail::Session::attach(name, options));
}

std::string Store::path_of(std::string_view name, std::string_view directory) {
  detail::validate_segment_name(name);
  return detail::segment_path(name, directory);
}

std::string Store::spill_folder(std::string_view name, std::string_view directory) {
  std::string path = path_of(name, directory);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return {};
  std::string folder = detail::spill_folder_of(fd, name);
  ::close(fd);
  return folder;
}

bool Store::remove(std::string_view name, std::string_view directory) {
  std::string path = path_of(name, directory);
  // Its spill folder goes too, now if nobody is attached (nobody holds the
  // file's shared flock), else with the last process to detach.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  std::string folder = fd >= 0 ? detail::spill_folder_of(fd, name) : std::string();
  if (::unlink(path.c_str()) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    if (err == ENOENT) return false;
    Errc code = (err == EACCES || err == EPERM) ? Errc::PermissionDenied : Errc::InvalidArgument;
    throw Error(code, fmt::format("cannot remove segment file {}: {}", path, std::strerror(err)));
  }
  if (fd >= 0) {
    struct stat st {};
    if (!folder.empty() && ::fstat(fd, &st) == 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      detail::Session::remove_spill_folder(folder, st.st_uid);
    }
    ::close(fd);
  }
  return true;
}

std::vector<std::string> Store::list(std::string_view directory) {
  std::string dir(directory.empty() ? detail::kDefaultDirectory : directory);
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
  if (!d) {
    int err = errno;
    Errc code = (err == EACCES || err == EPERM) ? Errc::PermissionDenied : Errc::InvalidArgument;
    throw Error(code, fmt::format("cannot list segments in directory {}: {}", dir, std::strerror(err)));
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d.get())) {
    std::string_view file(e->d_name);
    if (!file.starts_with(detail::kFilePrefix)) continue;
    std::string_view name = file.substr(detail::kFilePrefix.size());
    try {
      detail::validate_segment_name(name);
    } catch (const Error&) {
      continue;  // not a name this library makes
    }
    unsigned char type = e->d_type;
    if (type == DT_UNKNOWN) {
      struct stat st {};
      if (::fstatat(::dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      type = S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    }
    if (type == DT_REG) names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool Store::exists(std::string_view name, std::string_view directory) {
  return ::access(path_of(name, directory).c_str(), F_OK) == 0;
}

detail::Session& Store::session_ref() const {
  if (!session_) throw Error(Errc::InvalidArgument, "this Store is empty (it was moved from)");
  return *session_;
}

const std::string& Store::name() const { return session_ref().name(); }
WorkerId Store::myid() const { return session_ref().id(); }

RemoteRef Store::make_ref() { return session_ref().make_ref(session_ref().id()); }
RemoteRef Store::make_ref(WorkerId where) { return session_ref().make_ref(where); }

// A put is a writer that nothing can interrupt between its claim and its
// seal (a memcpy does not throw): no Writer handle is made.
RemoteRef Store::put_bytes(const ValueType& type, std::span<const std::byte> bytes) {
  detail::Session& s = session_ref();
  auto c = s.begin_write(nullptr, bytes.size(), type);
  if (!bytes.empty()) std::memcpy(c.bytes.data(), bytes.data(), bytes.size());
  s.seal(c.index, static_cast<std::uint32_t>(c.ref.id() >> 32U), c.cache);
  return c.ref;
}

void Store::put_bytes(const RemoteRef& ref, const ValueType& type, std::span<const std::byte> bytes) {
  detail::Session& s = session_ref();
  auto c = s.begin_write(&ref, bytes.size(), type);
  if (!bytes.empty()) std::memcpy(c.bytes.data(), bytes.data(), bytes.size());
  s.seal(c.index, static_cast<std::uint32_t>(c.ref.id() >> 32U));
}

Writer Store::create_writer(std::uint64_t bytes, const ValueType& type) {
  detail::Session& s = session_ref();
  auto c = s.begin_write(nullptr, bytes, type);
  return Writer(&s, c.cache != nullptr ? detail::Session::acquire_handle(*c.cache) : s.acquire_handle(), c.index, c.ref,
                c.bytes);
}

Writer Store::create_writer(const RemoteRef& ref, std::uint64_t bytes, const ValueType& type) {
  detail::Session& s = session_ref();
  auto c = s.begin_write(&ref, bytes, type);
  return Writer(&s, s.acquire_handle(), c.index, c.ref, c.bytes);
}

void Store::fail(const RemoteRef& ref, std::string_view reason) { session_ref().fail(ref, reason); }

View Store::fetch_until(const RemoteRef& ref, std::optional<std::chrono::steady_clock::time_point> deadline, bool wait,
                        std::chrono::nanoseconds spin) {
  detail::Session& s = session_ref();
  if (!ref.is_null() && ref.segment_tag() != s.geo().segment_tag) {
    // Another host's object, if this segment is a host of a cluster: its
    // replica here (made on first use). A replica this thread used before
    // is tried first; if it was erased since, it is looked up again.
    if (std::optional<RemoteRef> known = detail::cluster::remembered(s.geo().segment_tag, ref)) {
      try {
        return fetch_until(*known, deadline, wait, spin);
      } catch (const Error& e) {
        if (e.code() != Errc::NotFound) throw;
        detail::cluster::forget(s.geo().segment_tag, ref);
      }
    }
    std::optional<RemoteRef> local = detail::cluster::resolve(*this, ref, deadline, wait);
    if (!local) return {};
    View v = fetch_until(*local, deadline, wait, spin);
    if (!v.empty()) detail::cluster::remember(s.geo().segment_tag, ref, *local);
    return v;
  }
  View v;
  if (!s.fetch(ref, deadline, wait, spin, v.pin_)) return v;
  v.session_ = &s;
  v.hold_ = s.acquire_handle();
  v.ref_ = ref;
  return v;
}

View Store::fetch(const RemoteRef& ref) { return fetch_until(ref, std::nullopt, true); }

View Store::fetch(const RemoteRef& ref, std::chrono::nanoseconds timeout) {
  return fetch(ref, FetchOptions{timeout, {}});
}

std::optional<std::chrono::steady_clock::time_point> Store::deadline_of(const RemoteRef& ref,
                                                                        const FetchOptions& options) {
  if (options.timeout < std::chrono::nanoseconds::zero() || options.spin < std::chrono::nanoseconds::zero()) {
    throw Error(Errc::InvalidArgument, fmt::format("negative timeout or spin for fetch of {}", ref.to_string()));
  }
  if (options.timeout == kForever) return std::nullopt;
  auto now = std::chrono::steady_clock::now();
  auto limit = std::chrono::steady_clock::time_point::max() - now;
  return options.timeout >= limit
             ? std::chrono::steady_clock::time_point::max()
             : now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(options.timeout);
}

View Store::fetch(const RemoteRef& ref, const FetchOptions& options) {
  return fetch_until(ref, deadline_of(ref, options), true, options.spin);
}

std::vector<View> Store::fetch_many(std::span<const RemoteRef> refs, const FetchOptions& options) {
  detail::Session& s = session_ref();
  auto deadline = deadline_of(refs.empty() ? RemoteRef() : refs.front(), options);
  std::vector<RemoteRef> mapped;  // other hosts' refs replaced by their replicas here
  for (std::size_t k = 0; k < refs.size(); ++k) {
    if (refs[k].is_null() || refs[k].segment_tag() == s.geo().segment_tag) continue;
    if (mapped.empty()) mapped.assign(refs.begin(), refs.end());
    mapped[k] = *detail::cluster::resolve(*this, refs[k], deadline, true);
  }
  // Whatever may throw comes before the pins: from them on nothing does.
  // The pins go straight into the views, empty until the batch succeeds.
  std::vector<View> views(refs.size());
  detail::ThreadCache& tc = s.thread_cache();
  s.fetch_many(
      mapped.empty() ? refs : std::span<const RemoteRef>(mapped), deadline, options.spin,
      [](void* ctx, std::size_t k) -> detail::PinnedObject& { return (*static_cast<std::vector<View>*>(ctx))[k].pin_; },
      &views);
  // One handle per View, taken for the whole batch at once.
  detail::ThreadCache* hold = detail::Session::acquire_handle(tc, static_cast<std::int64_t>(views.size()));
  for (std::size_t k = 0; k < views.size(); ++k) {
    View& v = views[k];
    v.session_ = &s;
    v.hold_ = hold;
    v.ref_ = refs[k];
  }
  return views;
}

bool Store::snapshot(const RemoteRef& ref, Snapshot& s, ValueType& t) const {
  return session_ref().begin_read(ref, s.bytes, t, s.word_at, s.word);
}

std::optional<View> Store::try_fetch(const RemoteRef& ref) {
  View v = fetch_until(ref, std::nullopt, false);
  if (v.empty()) return std::nullopt;
  return v;
}

void Store::materialize_into(const RemoteRef& ref, std::span<std::byte> dst, std::chrono::nanoseconds timeout) {
  Snapshot s;
  ValueType t;
  if (snapshot(ref, s, t) && s.bytes.size() == dst.size()) {
    if (!dst.empty()) std::memcpy(dst.data(), s.bytes.data(), dst.size());
    if (still_valid(s)) return;
  }
  View v = fetch(ref, timeout);
  if (dst.size() != v.size()) {
    throw Error(Errc::InvalidArgument, fmt::format("materialize_into {}: the object has {} bytes, the buffer {}",
                                                   ref.to_string(), v.size(), dst.size()));
  }
  if (!dst.empty()) std::memcpy(dst.data(), v.bytes().data(), dst.size());
}

void Store::throw_type_mismatch(const RemoteRef& ref, const ValueType& stored, std::string_view wanted) {
  throw Error(Errc::TypeMismatch, fmt::format("{} holds {}, not {}", ref.to_string(), stored.describe(), wanted));
}

void Store::erase(const RemoteRef& ref) { session_ref().erase(ref); }
bool Store::contains(const RemoteRef& ref) const { return session_ref().contains(ref); }
void Store::bind(std::string_view name, const RemoteRef& ref) { session_ref().bind(name, ref); }
std::optional<RemoteRef> Store::lookup(std::string_view name) const { return session_ref().lookup(name); }
bool Store::unbind(std::string_view name) { return session_ref().unbind(name); }
SegmentInfo Store::info() const { return session_ref().info(); }
std::vector<ProcessInfo> Store::processes() const { return session_ref().processes(); }
std::vector<ObjectInfo> Store::objects() const { return session_ref().objects(); }
std::size_t Store::recover() { return session_ref().recover(); }

// ---- View

View::View(View&& o) noexcept
    : session_(std::exchange(o.session_, nullptr)), hold_(std::exchange(o.hold_, nullptr)), ref_(o.ref_), pin_(o.pin_) {
  o.pin_.bytes = {};
}

View& View::operator=(View&& o) noexcept {
  if (this != &o) {
    reset();
    session_ = std::exchange(o.session_, nullptr);
    hold_ = std::exchange(o.hold_, nullptr);
    ref_ = o.ref_;
    pin_ = o.pin_;
    o.pin_.bytes = {};
  }
  return *this;
}

View::~View() { reset(); }

void View::reset() noexcept {
  if (session_ != nullptr) {
    detail::Session* s = std::exchange(session_, nullptr);
    s->unpin(pin_.index, static_cast<std::uint32_t>(ref_.id() >> 32U));
    s->release_handle(std::exchange(hold_, nullptr));  // may end the session: the last use of it
  }
  pin_.bytes = {};
}

ValueType View::type() const {
  if (session_ == nullptr) throw Error(Errc::InvalidArgument, "an empty View has no type");
  ValueType t;
  detail::decode_type(pin_.type, t);
  if (!detail::type_fits(t, pin_.bytes.size())) session_->throw_misfit(ref_, t, pin_.bytes.size());
  return t;
}

void View::check(const ValueType& want) const {
  ValueType t = type();
  if (t != want) {
    throw Error(Errc::TypeMismatch,
                fmt::format("{} holds {}, not {}", ref_.to_string(), t.describe(), want.describe()));
  }
}

void View::check_elements(const ValueType& want) const {
  ValueType t = type();
  bool ok = (t.kind == ValueKind::Array || t.kind == ValueKind::NdArray) && t.elem == want.elem &&
            t.elem_size == want.elem_size && t.type_hash == want.type_hash;
  if (!ok) {
    throw Error(Errc::TypeMismatch,
                fmt::format("{} holds {}, not {}", ref_.to_string(), t.describe(), want.describe()));
  }
}

ValueType View::check_ndarray(const ValueType& want) const {
  ValueType t = type();
  if (t.kind != ValueKind::NdArray || t.elem != want.elem || t.elem_size != want.elem_size) {
    throw Error(Errc::TypeMismatch,
                fmt::format("{} holds {}, not an n-d array of {}", ref_.to_string(), t.describe(), want.describe()));
  }
  return t;
}

std::string_view View::as_string() const {
  ValueType t = type();
  if (t.kind != ValueKind::String) {
    throw Error(Errc::TypeMismatch, fmt::format("{} holds {}, not a string", ref_.to_string(), t.describe()));
  }
  return {reinterpret_cast<const char*>(pin_.bytes.data()), pin_.bytes.size()};  // NOLINT: bytes of chars
}

// ---- Writer

Writer::Writer(Writer&& o) noexcept
    : session_(std::exchange(o.session_, nullptr)),
      hold_(std::exchange(o.hold_, nullptr)),
      index_(o.index_),
      ref_(o.ref_),
      bytes_(std::exchange(o.bytes_, {})) {}

Writer& Writer::operator=(Writer&& o) noexcept {
  if (this != &o) {
    if (session_ != nullptr) std::move(*this).abort();
    session_ = std::exchange(o.session_, nullptr);
    hold_ = std::exchange(o.hold_, nullptr);
    index_ = o.index_;
    ref_ = o.ref_;
    bytes_ = std::exchange(o.bytes_, {});
  }
  return *this;
}

Writer::~Writer() {
  if (session_ != nullptr) std::move(*this).abort();
}

void Writer::release() noexcept {
  detail::Session* s = std::exchange(session_, nullptr);
  bytes_ = {};
  if (s != nullptr) s->release_handle(std::exchange(hold_, nullptr));
}

RemoteRef Writer::seal() && {
  if (session_ == nullptr) throw Error(Errc::InvalidArgument, "seal() of an empty Writer");
  struct Release {  // the writer is consumed, sealed or not
    Writer& w;
    ~Release() { w.release(); }
  } release{*this};
  // The counters go on the line of the thread that made the writer.
  session_->seal(index_, static_cast<std::uint32_t>(ref_.id() >> 32U), hold_);
  return ref_;
}

void Writer::abort() && noexcept {
  if (session_ == nullptr) return;
  session_->abort(index_, static_cast<std::uint32_t>(ref_.id() >> 32U));
  release();
}

}  // namespace sealstore
