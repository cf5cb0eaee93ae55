#include "alloc/local_cache.hpp"

#include <algorithm>
#include <atomic>

#include "segment/layout.hpp"

namespace sealstore::detail {

namespace {

std::atomic<std::uint64_t> g_serial{0};

// The caches this thread holds, by registry. A registry that is gone (its
// attachment ended) leaves an expired entry, pruned when the thread next
// takes a cache.
struct ThreadCaches {
  struct Held {
    std::uint64_t serial;
    ThreadCache* cache;
    std::weak_ptr<CacheRegistry> registry;
  };
  std::vector<Held> held;

  ThreadCaches() = default;
  ThreadCaches(const ThreadCaches&) = delete;
  ThreadCaches& operator=(const ThreadCaches&) = delete;
  ~ThreadCaches() {
    for (const Held& h : held) {
      if (auto r = h.registry.lock()) {
        std::lock_guard lock(r->mu);
        h.cache->in_use = false;  // its records stay, for the next thread that comes
      }
    }
  }
};

thread_local ThreadCaches t_caches;

// The cache this thread used last, looked at first: a thread that works
// with one attachment finds its cache without a walk (serials are never
// reused, so an attachment that is gone cannot match).
struct LastCache {
  std::uint64_t serial = 0;
  ThreadCache* cache = nullptr;
};
thread_local LastCache t_last;

}  // namespace

CacheRegistry::CacheRegistry() : serial_(g_serial.fetch_add(1) + 1) {}

ThreadCache& CacheRegistry::mine() {
  if (t_last.serial == serial_) [[likely]] {
    return *t_last.cache;
  }
  return mine_slow();
}

// (Apart, so that the fast path above saves no registers.)
ThreadCache& CacheRegistry::mine_slow() {
  for (const auto& h : t_caches.held) {
    if (h.serial == serial_) {
      t_last = {serial_, h.cache};
      return *h.cache;
    }
  }
  ThreadCache* tc = nullptr;
  {
    std::lock_guard lock(mu);
    for (auto& c : caches_) {
      if (!c->in_use) {
        tc = c.get();
        break;
      }
    }
    if (tc == nullptr) {
      caches_.push_back(std::make_unique<ThreadCache>());
      tc = caches_.back().get();
      // Lines 1 to kStatLines - 1 for the first caches, one each; any more
      // share line 0, where every count is an atomic add.
      std::size_t k = caches_.size() - 1;
      tc->own_line = k < kStatLines - 1;
      tc->line = tc->own_line ? static_cast<std::uint32_t>(k + 1) : 0;
    }
    tc->in_use = true;
  }
  auto& held = t_caches.held;
  held.erase(std::remove_if(held.begin(), held.end(), [](const auto& h) { return h.registry.expired(); }), held.end());
  held.push_back({serial_, tc, weak_from_this()});
  t_last = {serial_, tc};
  return *tc;
}

std::int64_t CacheRegistry::handles() {
  std::lock_guard lock(mu);
  std::int64_t n = 0;
  for (auto& c : caches_) n += c->handles.load();
  return n;
}

std::vector<CachedExtent> CacheRegistry::take_all() {
  std::lock_guard lock(mu);
  std::vector<CachedExtent> out;
  auto drain = [&out](Bins& bins) {
    for (auto& bin : bins) {
      out.insert(out.end(), bin.begin(), bin.end());
      bin.clear();
    }
  };
  drain(depot);
  for (auto& c : caches_) drain(c->bins);
  return out;
}

}  // namespace sealstore::detail
