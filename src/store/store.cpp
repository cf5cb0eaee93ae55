#include "sealstore/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "segment/segment.hpp"
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

bool Store::remove(std::string_view name, std::string_view directory) {
  std::string path = path_of(name, directory);
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  Errc code = (errno == EACCES || errno == EPERM) ? Errc::PermissionDenied : Errc::InvalidArgument;
  throw Error(code, fmt::format("cannot remove segment file {}: {}", path, std::strerror(errno)));
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

RemoteRef Store::put_bytes(const ValueType& type, std::span<const std::byte> bytes) {
  Writer w = create_writer(bytes.size(), type);
  if (!bytes.empty()) std::memcpy(w.bytes().data(), bytes.data(), bytes.size());
  return std::move(w).seal();
}

void Store::put_bytes(const RemoteRef& ref, const ValueType& type, std::span<const std::byte> bytes) {
  Writer w = create_writer(ref, bytes.size(), type);
  if (!bytes.empty()) std::memcpy(w.bytes().data(), bytes.data(), bytes.size());
  std::move(w).seal();
}

Writer Store::create_writer(std::uint64_t bytes, const ValueType& type) {
  auto c = session_ref().begin_write(nullptr, bytes, type);
  return Writer(session_, c.index, c.ref, c.bytes);
}

Writer Store::create_writer(const RemoteRef& ref, std::uint64_t bytes, const ValueType& type) {
  auto c = session_ref().begin_write(&ref, bytes, type);
  return Writer(session_, c.index, c.ref, c.bytes);
}

void Store::fail(const RemoteRef& ref, std::string_view reason) { session_ref().fail(ref, reason); }

View Store::fetch_until(const RemoteRef& ref, std::optional<std::chrono::steady_clock::time_point> deadline, bool wait,
                        std::chrono::nanoseconds spin) {
  auto p = session_ref().fetch(ref, deadline, wait, spin);
  if (!p) return View();
  return View(session_, p->index, ref, p->bytes, p->type, p->type_fits);
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
  std::vector<detail::Session::Pinned> pinned = s.fetch_many(refs, deadline, options.spin);
  std::vector<View> views;
  views.reserve(pinned.size());
  for (std::size_t k = 0; k < pinned.size(); ++k) {
    const auto& p = pinned[k];
    views.push_back(View(session_, p.index, refs[k], p.bytes, p.type, p.type_fits));
  }
  return views;
}

std::optional<Store::Snapshot> Store::snapshot(const RemoteRef& ref) const {
  auto r = session_ref().begin_read(ref);
  if (!r) return std::nullopt;
  return Snapshot{r->bytes, r->type, r->type_fits, r->index, r->word};
}

bool Store::still_valid(const Snapshot& s) const noexcept {
  detail::Session::UnpinnedRead r{s.bytes, s.type, s.type_fits, s.index, s.word};
  return session_->read_still_valid(r);
}

std::optional<View> Store::try_fetch(const RemoteRef& ref) {
  View v = fetch_until(ref, std::nullopt, false);
  if (v.empty()) return std::nullopt;
  return v;
}

void Store::materialize_into(const RemoteRef& ref, std::span<std::byte> dst, std::chrono::nanoseconds timeout) {
  if (auto s = snapshot(ref); s && s->bytes.size() == dst.size()) {
    if (!dst.empty()) std::memcpy(dst.data(), s->bytes.data(), dst.size());
    if (still_valid(*s)) return;
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
    : session_(std::move(o.session_)),
      index_(o.index_),
      ref_(o.ref_),
      bytes_(std::exchange(o.bytes_, {})),
      type_(o.type_),
      type_fits_(o.type_fits_) {}

View& View::operator=(View&& o) noexcept {
  if (this != &o) {
    reset();
    session_ = std::move(o.session_);
    index_ = o.index_;
    ref_ = o.ref_;
    bytes_ = std::exchange(o.bytes_, {});
    type_ = o.type_;
    type_fits_ = o.type_fits_;
  }
  return *this;
}

View::~View() { reset(); }

void View::reset() noexcept {
  if (session_) {
    session_->unpin(index_, static_cast<std::uint32_t>(ref_.id() >> 32U));
    session_.reset();
  }
  bytes_ = {};
}

ValueType View::type() const {
  if (!session_) throw Error(Errc::InvalidArgument, "an empty View has no type");
  if (!type_fits_) session_->throw_misfit(ref_, type_, bytes_.size());
  return type_;
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
  return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};  // NOLINT: bytes of chars
}

// ---- Writer

Writer::Writer(Writer&& o) noexcept
    : session_(std::move(o.session_)), index_(o.index_), ref_(o.ref_), bytes_(std::exchange(o.bytes_, {})) {}

Writer& Writer::operator=(Writer&& o) noexcept {
  if (this != &o) {
    if (session_) std::move(*this).abort();
    session_ = std::move(o.session_);
    index_ = o.index_;
    ref_ = o.ref_;
    bytes_ = std::exchange(o.bytes_, {});
  }
  return *this;
}

Writer::~Writer() {
  if (session_) std::move(*this).abort();
}

RemoteRef Writer::seal() && {
  if (!session_) throw Error(Errc::InvalidArgument, "seal() of an empty Writer");
  auto session = std::move(session_);
  bytes_ = {};
  session->seal(index_, static_cast<std::uint32_t>(ref_.id() >> 32U));
  return ref_;
}

void Writer::abort() && noexcept {
  if (!session_) return;
  auto session = std::move(session_);
  bytes_ = {};
  session->abort(index_, static_cast<std::uint32_t>(ref_.id() >> 32U));
}

}  // namespace sealstore
