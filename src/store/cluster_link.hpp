// How a process attached to one host's segment talks to that host's serving
// process (the MPI rank that owns the segment), through the segment alone:
// no MPI in the asking process. It is the whole of what a worker needs to
// fetch a ref of another host or to reach another host's workers.
//
// - The serving process binds kDirectoryName to an object describing the
//   cluster (Directory, then a DirectoryHost per host).
// - A request is an object of type request_type(): a RequestHead, then the
//   kind's payload. The serving process sees it sealed (it subscribes to
//   the segment's seals), reads it and erases it.
// - The answer goes into the request's reply ref, made by the asker with
//   where = the serving process: a ReplyHead, then the payload, or, when
//   code is not 0, the error's message. A null reply asks for no answer.
// - A replica of another host's object is an ordinary object of this
//   segment, bound to replica_name(ref, host) once it is sealed.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sealstore/ref.hpp"
#include "sealstore/store.hpp"
#include "sealstore/value.hpp"

namespace sealstore::detail::cluster {

inline constexpr std::string_view kDirectoryName = "sealstore.cluster";
inline constexpr std::string_view kReplicaPrefix = "sealstore.replica/";
inline constexpr std::uint64_t kDirectoryMagic = 0x3130535543534c53ULL;  // "SLSCUS01"
inline constexpr std::uint64_t kRequestMagic = 0x3130515243534c53ULL;    // "SLSCRQ01"
// Host H's segment gives out worker ids from H * kIdsPerHost + 1.
inline constexpr std::uint32_t kIdsPerHost = 1000000;
inline constexpr std::size_t kMaxHosts = 4000;

struct Directory {
  std::uint64_t magic;
  std::uint32_t hosts;
  std::uint32_t this_host;
  std::uint64_t chunk_bytes;  // largest message of a transfer
};
struct DirectoryHost {
  std::uint32_t segment_tag;
  std::int32_t rank;
  std::uint32_t first_id;  // the serving process's id
  std::uint32_t reserved;
  std::array<char, 64> hostname;
  std::array<char, 208> segment;
};
static_assert(sizeof(DirectoryHost) == 288);

// What a request asks. The payload of each follows its RequestHead.
enum class Kind : std::uint32_t {
  Fetch = 1,      // RemoteRef: replicate it here; reply: RemoteRef (the replica)
  Wait = 2,       // RemoteRef: until it is sealed (or failed) where it lives; reply: u64 size
  Erase = 3,      // RemoteRef: erase it where it lives, and its replica here; reply: none
  Workers = 4,    // none; reply: WorkerId[] of every host, ascending
  Add = 5,        // u64 n, u64 host; reply: WorkerId[]
  Remove = 6,     // WorkerId; reply: none
  RunAt = 7,      // WorkerId, u32 name length, u32 args length, name, args; reply: RemoteRef
  Stats = 8,      // u64 host; reply: TransferStats
  Replicate = 9,  // RemoteRef: to every host, by broadcast; reply: none
  Stop = 10,      // (between ranks only)
  Pids = 11,      // WorkerId; reply: i32 pid
  // Between ranks only:
  Go = 100,        // the asker's writer is ready: send the bytes
  Cancel = 101,    // the asker could not take the object: unpin it
  BcastRun = 102,  // to the root: broadcast this ref to every rank
  BcastGo = 103,   // from the root: join the broadcast
};

struct RequestHead {
  std::uint64_t magic;
  Kind kind;
  std::uint32_t payload_bytes;
  RemoteRef reply;
};

struct ReplyHead {
  std::uint32_t code;  // 0, or an Errc
  std::uint32_t bytes;
};

struct TransferStats {
  std::uint64_t transfers_in = 0;  // replicas received
  std::uint64_t bytes_in = 0;
  std::uint64_t transfers_out = 0;  // objects sent to another host
  std::uint64_t bytes_out = 0;
  std::uint64_t broadcasts = 0;  // broadcasts this host took part in
  std::uint64_t requests = 0;    // local requests served
};

// The type a request object is sealed with (a trivial type of its own).
ValueType request_type();
// "sealstore.replica/1/7f3a91c2:2a00000001": the name of the replica of
// ref, an object of host `from`.
std::string replica_name(const RemoteRef& ref, std::size_t from);
// What a replica name stands for, if it is one: the ref's segment tag and
// id (its where and whence are not in the name), and the host it is from.
struct ReplicaOf {
  RemoteRef ref;
  std::size_t from;
};
std::optional<ReplicaOf> parse_replica_name(std::string_view name);

struct HostEntry {
  std::uint32_t segment_tag = 0;
  int rank = 0;
  WorkerId first_id = 0;
  std::string hostname;
  std::string segment;
};
struct ClusterMap {
  std::size_t this_host = 0;
  std::uint64_t chunk_bytes = 0;
  std::vector<HostEntry> hosts;
  // The host whose segment has tag, if any.
  std::optional<std::size_t> host_of_tag(std::uint32_t tag) const;
  // The host worker id lives on. Throws InvalidArgument for an id of none.
  std::size_t host_of_id(WorkerId id) const;
};
// The directory bytes for map, and back. parse_directory throws Corrupt.
std::vector<std::byte> encode_directory(const ClusterMap& map);
ClusterMap parse_directory(std::span<const std::byte> bytes);

// The cluster store's segment belongs to, if it belongs to one (cached).
const ClusterMap* cluster_of(const Store& store);

// Sends a request of kind with payload to the serving process and waits
// (asleep) for its answer; returns the payload, or throws the error it
// carries. Timeout if none comes by the deadline.
std::vector<std::byte> ask(Store& store, Kind kind, std::span<const std::byte> payload,
                           std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
// Sends a request nobody answers.
void tell(Store& store, Kind kind, std::span<const std::byte> payload);

// The local replica of another host's ref: bound already, else asked for
// (wait false: asked for and not waited on; nullopt). Throws NotFound if
// store is in no cluster or no host of it holds the ref's segment.
std::optional<RemoteRef> resolve(Store& store, const RemoteRef& ref,
                                 std::optional<std::chrono::steady_clock::time_point> deadline, bool wait);

// This thread's memory of the replicas it fetched, by the segment they are
// in (its tag) and the ref they copy: a second fetch skips the name lookup.
std::optional<RemoteRef> remembered(std::uint32_t segment_tag, const RemoteRef& ref) noexcept;
void remember(std::uint32_t segment_tag, const RemoteRef& ref, const RemoteRef& replica) noexcept;
void forget(std::uint32_t segment_tag, const RemoteRef& ref) noexcept;

template <class T>
void append(std::vector<std::byte>& out, const T& v) {
  // resize + memcpy, not insert: GCC 12 at -O3 warns falsely about insert's memmove
  std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

// Reads trivial values off a payload; throws Corrupt when it runs short.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}
  template <class T>
  T get() {
    T v;
    std::span<const std::byte> b = take(sizeof(T));
    std::memcpy(&v, b.data(), sizeof(T));
    return v;
  }
  std::span<const std::byte> take(std::size_t n);
  std::string_view text(std::size_t n);
  std::size_t left() const noexcept { return bytes_.size() - pos_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
};

}  // namespace sealstore::detail::cluster
