// The asking half of the cluster link (see cluster_link.hpp): what any
// process attached to a host's segment does to reach the serving process.
#include "store/cluster_link.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "sealstore/error.hpp"
#include "sealstore/view.hpp"
#include "store/session.hpp"

namespace sealstore::detail::cluster {

namespace {

constexpr std::uint64_t kRequestTypeHash = 0x5eab57a7ec1a5700ULL;

// Directories of the segment incarnations this process has seen (a
// directory never changes once bound), keyed by the segment's tag.
struct DirectoryCache {
  std::mutex mu;
  std::map<std::uint32_t, std::shared_ptr<const ClusterMap>> maps;
};
DirectoryCache& cache() {
  static auto* c = new DirectoryCache;  // never destroyed: used from exit-time destructors
  return *c;
}

std::string text_of(const std::array<char, 64>& a) { return {a.data(), strnlen(a.data(), a.size())}; }
std::string text_of(const std::array<char, 208>& a) { return {a.data(), strnlen(a.data(), a.size())}; }

template <std::size_t N>
void copy_text(std::array<char, N>& to, std::string_view from) {
  to.fill('\0');
  std::memcpy(to.data(), from.data(), std::min(from.size(), N - 1));
}

[[noreturn]] void throw_no_cluster(const Store& store, const RemoteRef& ref) {
  throw Error(Errc::NotFound,
              fmt::format("{} belongs to another segment, not '{}' (tag {:08x}), and '{}' is not a "
                          "host of a cluster",
                          ref.to_string(), store.name(), store.session()->geo().segment_tag, store.name()));
}

struct Remembered {
  std::uint32_t segment_tag;
  std::uint32_t tag;
  std::uint64_t id;
  friend bool operator==(const Remembered&, const Remembered&) = default;
};
struct RememberedHash {
  std::size_t operator()(const Remembered& k) const noexcept {
    return std::hash<std::uint64_t>{}(k.id ^ (std::uint64_t{k.tag} << 32U) ^ k.segment_tag);
  }
};
constexpr std::size_t kMaxRemembered = 4096;
std::unordered_map<Remembered, RemoteRef, RememberedHash>& remembered_map() {
  thread_local std::unordered_map<Remembered, RemoteRef, RememberedHash> m;
  return m;
}

// Fetch requests this thread sent for try_fetch and has not read the answer of.
std::unordered_map<Remembered, RemoteRef, RememberedHash>& pending_map() {
  thread_local std::unordered_map<Remembered, RemoteRef, RememberedHash> m;
  return m;
}
std::optional<RemoteRef> pending(std::uint32_t segment_tag, const RemoteRef& ref) {
  auto& m = pending_map();
  auto it = m.find(Remembered{segment_tag, ref.segment_tag(), ref.id()});
  if (it == m.end()) return std::nullopt;
  return it->second;
}
void remember_pending(std::uint32_t segment_tag, const RemoteRef& ref, const RemoteRef& reply) {
  auto& m = pending_map();
  if (m.size() >= kMaxRemembered) m.clear();
  m[Remembered{segment_tag, ref.segment_tag(), ref.id()}] = reply;
}
void forget_pending(std::uint32_t segment_tag, const RemoteRef& ref) {
  pending_map().erase(Remembered{segment_tag, ref.segment_tag(), ref.id()});
}

}  // namespace

std::optional<RemoteRef> remembered(std::uint32_t segment_tag, const RemoteRef& ref) noexcept {
  auto& m = remembered_map();
  if (m.empty()) return std::nullopt;
  auto it = m.find(Remembered{segment_tag, ref.segment_tag(), ref.id()});
  if (it == m.end()) return std::nullopt;
  return it->second;
}

void remember(std::uint32_t segment_tag, const RemoteRef& ref, const RemoteRef& replica) noexcept {
  try {
    auto& m = remembered_map();
    if (m.size() >= kMaxRemembered) m.clear();
    m[Remembered{segment_tag, ref.segment_tag(), ref.id()}] = replica;
  } catch (...) {  // NOLINT(bugprone-empty-catch): a memory, not a need
  }
}

void forget(std::uint32_t segment_tag, const RemoteRef& ref) noexcept {
  remembered_map().erase(Remembered{segment_tag, ref.segment_tag(), ref.id()});
}

std::span<const std::byte> Reader::take(std::size_t n) {
  if (n > left()) {
    throw Error(Errc::Corrupt, fmt::format("a cluster message is cut short: {} bytes wanted, {} left", n, left()));
  }
  std::span<const std::byte> out = bytes_.subspan(pos_, n);
  pos_ += n;
  return out;
}

std::string_view Reader::text(std::size_t n) {
  std::span<const std::byte> b = take(n);
  return {reinterpret_cast<const char*>(b.data()), b.size()};  // NOLINT: bytes of chars
}

ValueType request_type() {
  ValueType t;
  t.kind = ValueKind::Array;
  t.elem = ElemType::Trivial;
  t.elem_size = 8;
  t.type_hash = kRequestTypeHash;
  return t;
}

std::string replica_name(const RemoteRef& ref, std::size_t from) {
  return fmt::format("{}{}/{:08x}:{:x}", kReplicaPrefix, from, ref.segment_tag(), ref.id());
}

std::optional<ReplicaOf> parse_replica_name(std::string_view name) {
  if (!name.starts_with(kReplicaPrefix)) return std::nullopt;
  name.remove_prefix(kReplicaPrefix.size());
  std::size_t slash = name.find('/');
  std::size_t colon = name.find(':');
  if (slash == std::string_view::npos || colon == std::string_view::npos || colon < slash) return std::nullopt;
  std::size_t from = 0;
  std::uint32_t tag = 0;
  std::uint64_t id = 0;
  const char* end = name.data() + name.size();
  auto f = std::from_chars(name.data(), name.data() + slash, from, 10);
  auto t = std::from_chars(name.data() + slash + 1, name.data() + colon, tag, 16);
  auto i = std::from_chars(name.data() + colon + 1, end, id, 16);
  if (f.ec != std::errc() || f.ptr != name.data() + slash || t.ec != std::errc() || t.ptr != name.data() + colon ||
      i.ec != std::errc() || i.ptr != end || id == 0) {
    return std::nullopt;
  }
  return ReplicaOf{RemoteRef(tag, id, 0, 0), from};
}

std::optional<std::size_t> ClusterMap::host_of_tag(std::uint32_t tag) const {
  for (std::size_t h = 0; h < hosts.size(); ++h) {
    if (hosts[h].segment_tag == tag) return h;
  }
  return std::nullopt;
}

std::size_t ClusterMap::host_of_id(WorkerId id) const {
  std::size_t h = id / kIdsPerHost;
  if (id == 0 || h >= hosts.size()) {
    throw Error(Errc::InvalidArgument,
                fmt::format("{} is the id of no host's worker (the cluster has {} hosts)", id, hosts.size()));
  }
  return h;
}

std::vector<std::byte> encode_directory(const ClusterMap& map) {
  std::vector<std::byte> out;
  append(out, Directory{kDirectoryMagic, static_cast<std::uint32_t>(map.hosts.size()),
                        static_cast<std::uint32_t>(map.this_host), map.chunk_bytes});
  for (const HostEntry& h : map.hosts) {
    DirectoryHost d{};
    d.segment_tag = h.segment_tag;
    d.rank = h.rank;
    d.first_id = h.first_id;
    copy_text(d.hostname, h.hostname);
    copy_text(d.segment, h.segment);
    append(out, d);
  }
  return out;
}

ClusterMap parse_directory(std::span<const std::byte> bytes) {
  Reader in(bytes);
  auto d = in.get<Directory>();
  if (d.magic != kDirectoryMagic || d.hosts == 0 || d.hosts > kMaxHosts || d.this_host >= d.hosts ||
      in.left() != std::size_t{d.hosts} * sizeof(DirectoryHost)) {
    throw Error(Errc::Corrupt, fmt::format("the cluster directory ('{}') is not one this build wrote", kDirectoryName));
  }
  ClusterMap map;
  map.this_host = d.this_host;
  map.chunk_bytes = d.chunk_bytes;
  for (std::uint32_t h = 0; h < d.hosts; ++h) {
    auto e = in.get<DirectoryHost>();
    map.hosts.push_back(HostEntry{e.segment_tag, e.rank, e.first_id, text_of(e.hostname), text_of(e.segment)});
  }
  return map;
}

const ClusterMap* cluster_of(const Store& store) {
  std::uint32_t tag = store.session()->geo().segment_tag;
  DirectoryCache& c = cache();
  {
    std::lock_guard lock(c.mu);
    auto it = c.maps.find(tag);
    if (it != c.maps.end()) return it->second.get();
  }
  std::optional<RemoteRef> at = store.lookup(kDirectoryName);
  if (!at) return nullptr;
  auto map = std::make_shared<const ClusterMap>(
      parse_directory(const_cast<Store&>(store).fetch(*at).bytes()));  // NOLINT: fetch pins; it changes nothing
  std::lock_guard lock(c.mu);
  return c.maps.try_emplace(tag, std::move(map)).first->second.get();
}

namespace {

RemoteRef send_request(Store& store, const ClusterMap& map, Kind kind, std::span<const std::byte> payload,
                       bool answer) {
  RemoteRef reply = answer ? store.make_ref(map.hosts[map.this_host].first_id) : RemoteRef();
  std::vector<std::byte> bytes;
  append(bytes, RequestHead{kRequestMagic, kind, static_cast<std::uint32_t>(payload.size()), reply});
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  bytes.resize((bytes.size() + 7) & ~std::size_t{7});
  try {
    store.put_bytes(request_type(), bytes);
  } catch (...) {
    if (answer) store.erase(reply);
    throw;
  }
  return reply;
}

}  // namespace

void tell(Store& store, Kind kind, std::span<const std::byte> payload) {
  const ClusterMap* map = cluster_of(store);
  if (map == nullptr) throw Error(Errc::InvalidArgument, fmt::format("'{}' is not a host of a cluster", store.name()));
  send_request(store, *map, kind, payload, false);
}

std::vector<std::byte> ask(Store& store, Kind kind, std::span<const std::byte> payload,
                           std::optional<std::chrono::steady_clock::time_point> deadline) {
  const ClusterMap* map = cluster_of(store);
  if (map == nullptr) throw Error(Errc::InvalidArgument, fmt::format("'{}' is not a host of a cluster", store.name()));
  RemoteRef reply = send_request(store, *map, kind, payload, true);
  struct Erase {
    Store& s;
    RemoteRef r;
    ~Erase() {
      try {
        s.erase(r);
      } catch (const Error&) {  // being answered at this very moment (a timeout): a small object left over
      }
    }
  } erase{store, reply};
  FetchOptions o;
  if (deadline) {
    auto now = std::chrono::steady_clock::now();
    o.timeout = *deadline > now ? std::chrono::nanoseconds(*deadline - now) : std::chrono::nanoseconds::zero();
  }
  View v = store.fetch(reply, o);
  Reader in(v.bytes());
  auto head = in.get<ReplyHead>();
  std::span<const std::byte> body = in.take(head.bytes);
  if (head.code != 0) {
    throw Error(static_cast<Errc>(head.code),
                std::string(reinterpret_cast<const char*>(body.data()), body.size()));  // NOLINT: chars
  }
  return {body.begin(), body.end()};
}

std::optional<RemoteRef> resolve(Store& store, const RemoteRef& ref,
                                 std::optional<std::chrono::steady_clock::time_point> deadline, bool wait) {
  const ClusterMap* map = cluster_of(store);
  if (map == nullptr || !map->host_of_tag(ref.segment_tag())) {
    if (map == nullptr) throw_no_cluster(store, ref);
    throw Error(Errc::NotFound, fmt::format("{} belongs to no host of the cluster of '{}' (no host's segment has tag "
                                            "{:08x})",
                                            ref.to_string(), store.name(), ref.segment_tag()));
  }
  std::string name = replica_name(ref, *map->host_of_tag(ref.segment_tag()));
  std::vector<std::byte> payload;
  append(payload, ref);
  if (!wait) {
    // Asked for once; the next try reads the answer (an error, if the ref
    // failed or is gone on its host, is thrown then) before anything else.
    std::uint32_t own = store.session()->geo().segment_tag;
    if (std::optional<RemoteRef> asked = pending(own, ref)) {
      std::optional<View> answer = store.try_fetch(*asked);
      if (!answer) return std::nullopt;
      Reader in(answer->bytes());
      auto head = in.get<ReplyHead>();
      std::span<const std::byte> body = in.take(head.bytes);
      std::vector<std::byte> copy(body.begin(), body.end());
      answer.reset();
      forget_pending(own, ref);
      try {
        store.erase(*asked);
      } catch (const Error&) {  // NOLINT(bugprone-empty-catch): erased already
      }
      if (head.code != 0) {
        throw Error(static_cast<Errc>(head.code),
                    std::string(reinterpret_cast<const char*>(copy.data()), copy.size()));  // NOLINT: chars
      }
      // The replica it names may have been erased since: the name says.
      if (std::optional<RemoteRef> local = store.lookup(name)) return local;
      return Reader(copy).get<RemoteRef>();
    }
    if (std::optional<RemoteRef> local = store.lookup(name)) return local;
    remember_pending(own, ref, send_request(store, *map, Kind::Fetch, payload, true));
    return std::nullopt;
  }
  if (std::optional<RemoteRef> local = store.lookup(name)) return local;
  std::vector<std::byte> answer = ask(store, Kind::Fetch, payload, deadline);
  return Reader(answer).get<RemoteRef>();
}

}  // namespace sealstore::detail::cluster
