// Spilling: a full segment writes sealed, unpinned objects to files and a
// fetch reads them back, under the same ref, with the same bytes and type.
#include <sys/stat.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "segment/layout.hpp"
#include "store/session.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"
#include "sync/atomics.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::SegmentGuard;
using test::TempDir;

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20U;

CreateOptions spilling(const TempDir& dir, std::uint64_t capacity = 4 * kMiB) {
  CreateOptions o = test::small_options(capacity);
  o.spill_directory = dir.path();
  return o;
}

// Bytes that say which object they belong to.
std::vector<std::uint32_t> pattern(std::uint32_t seed, std::size_t n) {
  std::vector<std::uint32_t> v(n);
  std::iota(v.begin(), v.end(), seed * 1000003U);
  return v;
}

TEST(Spill, a_workload_larger_than_the_segment_spills_and_every_object_comes_back_intact) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  std::vector<RemoteRef> refs;
  for (std::uint32_t k = 0; k < 12; ++k) refs.push_back(s.put(pattern(k, kMiB / 4)));  // 12 MiB into 4
  SegmentInfo i = s.info();
  EXPECT_GE(i.spills, 8U);
  EXPECT_GE(i.spilled_objects, 8U);
  EXPECT_EQ(i.spilled_bytes, i.spilled_objects * kMiB);
  EXPECT_LE(i.used, i.capacity);
  EXPECT_FALSE(i.spill_directory.empty());
  EXPECT_EQ(i.spill_directory.rfind(dir.path(), 0), 0U) << i.spill_directory;
  for (std::uint32_t k = 0; k < 12; ++k) {
    EXPECT_EQ(s.materialize<std::vector<std::uint32_t>>(refs[k]), pattern(k, kMiB / 4)) << k;
  }
  EXPECT_GE(s.info().restores, 8U);
  // Every object is still there, each either in the segment or in its file.
  std::size_t spilled = 0;
  for (const ObjectInfo& o : s.objects()) {
    EXPECT_EQ(o.state, ObjectState::Sealed);
    spilled += o.place == Place::Spill ? 1 : 0;
  }
  EXPECT_EQ(s.objects().size(), 12U);
  EXPECT_EQ(spilled, s.info().spilled_objects);
}

TEST(Spill, the_least_recently_fetched_object_goes_first) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  RemoteRef a = s.put(pattern(1, kMiB / 4));
  RemoteRef b = s.put(pattern(2, kMiB / 4));
  RemoteRef c = s.put(pattern(3, kMiB / 4));
  { View v = s.fetch(a); }  // a was fetched, b never since its put
  s.put(pattern(4, kMiB / 4));
  RemoteRef e = s.put(pattern(5, kMiB / 4));  // 5 MiB into 4: something goes
  (void)c;
  (void)e;
  std::vector<ObjectInfo> objects = s.objects();
  auto place = [&](const RemoteRef& r) {
    for (const ObjectInfo& o : objects) {
      if (o.ref == r) return o.place;
    }
    return Place::Restoring;
  };
  EXPECT_EQ(place(b), Place::Spill);
  EXPECT_EQ(place(a), Place::Segment);
}

TEST(Spill, an_explicit_spill_frees_the_space_and_a_fetch_restores_the_same_view) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  NdArray<double> m({64, 32});
  for (std::size_t k = 0; k < m.size(); ++k) m.data()[k] = static_cast<double>(k) / 3.0;  // NOLINT
  RemoteRef r = s.put(m);
  s.bind("matrix", r);
  std::uint64_t used = s.info().used;
  ASSERT_TRUE(s.spill(r));
  EXPECT_EQ(s.info().used, used - m.size() * sizeof(double));
  EXPECT_EQ(s.info().spilled_objects, 1U);
  EXPECT_FALSE(s.spill(r)) << "already spilled";
  EXPECT_TRUE(s.contains(r));
  EXPECT_EQ(s.lookup("matrix"), r);
  EXPECT_EQ(dir.files(), 1U);
  View v = s.fetch(r);
  EXPECT_EQ(v.type(), Codec<NdArray<double>>::type(m));
  auto back = v.as_ndarray<double>();
  EXPECT_EQ(back.shape()[0], 64U);
  EXPECT_EQ(back(63, 31), m.data()[m.size() - 1]);  // NOLINT
  EXPECT_EQ(s.info().restores, 1U);
  EXPECT_EQ(s.info().spilled_objects, 0U);
  EXPECT_FALSE(s.spill(r)) << "a pinned object is never spilled";
}

TEST(Spill, spilling_again_an_object_whose_file_is_complete_writes_nothing) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  RemoteRef r = s.put(pattern(7, kMiB / 8));
  ASSERT_TRUE(s.spill(r));
  std::string file;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (e.is_regular_file()) file = e.path();
  }
  ASSERT_FALSE(file.empty());
  struct stat first {};
  ASSERT_EQ(::stat(file.c_str(), &first), 0);
  EXPECT_EQ(first.st_mode & 0777U, 0600U) << "spill files are owner-only";
  EXPECT_EQ(s.materialize<std::vector<std::uint32_t>>(r), pattern(7, kMiB / 8));
  EXPECT_TRUE(s.objects().at(0).spill_file);
  ASSERT_TRUE(s.spill(r));
  struct stat second {};
  ASSERT_EQ(::stat(file.c_str(), &second), 0);
  EXPECT_EQ(second.st_ino, first.st_ino);
  EXPECT_EQ(second.st_mtim.tv_sec, first.st_mtim.tv_sec);
  EXPECT_EQ(second.st_mtim.tv_nsec, first.st_mtim.tv_nsec);
  EXPECT_EQ(s.info().spills, 2U);
}

TEST(Spill, erasing_a_spilled_or_restored_object_deletes_its_file) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  RemoteRef a = s.put(pattern(1, 1000));
  RemoteRef b = s.put(pattern(2, 1000));
  ASSERT_TRUE(s.spill(a));
  ASSERT_TRUE(s.spill(b));
  EXPECT_EQ(dir.files(), 2U);
  s.erase(a);
  EXPECT_EQ(dir.files(), 1U);
  EXPECT_EQ(s.info().spilled_objects, 1U);
  EXPECT_EQ(s.info().spilled_bytes, 4000U);
  EXPECT_THROW(s.fetch(a), Error);
  EXPECT_EQ(s.materialize<std::vector<std::uint32_t>>(b), pattern(2, 1000));  // restored, file kept
  EXPECT_EQ(dir.files(), 1U);
  s.erase(b);
  EXPECT_EQ(dir.files(), 0U);
  EXPECT_EQ(s.info().spilled_objects, 0U);
  EXPECT_EQ(s.info().spilled_bytes, 0U);
}

TEST(Spill, removing_the_segment_removes_its_spill_folder) {
  TempDir dir;
  std::string folder;
  {
    SegmentGuard g;
    Store s = Store::create(g.name(), spilling(dir));
    folder = s.info().spill_directory;
    EXPECT_EQ(Store::spill_folder(g.name()), folder);
    ASSERT_TRUE(s.spill(s.put(pattern(1, 1000))));
    struct stat st {};
    ASSERT_EQ(::stat(folder.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777U, 0700U);
    // Removed while attached: the files stay until the last process leaves.
    Store::remove(g.name());
    EXPECT_EQ(dir.files(), 1U);
  }
  EXPECT_FALSE(std::filesystem::exists(folder));
  {
    SegmentGuard g;
    {
      Store s = Store::create(g.name(), spilling(dir));
      folder = s.info().spill_directory;
      ASSERT_TRUE(s.spill(s.put(pattern(1, 1000))));
    }
    EXPECT_TRUE(std::filesystem::exists(folder));  // the segment lives on, unattached
    EXPECT_TRUE(Store::remove(g.name()));
    EXPECT_FALSE(std::filesystem::exists(folder));
  }
  EXPECT_EQ(dir.files(), 0U);
}

TEST(Spill, try_fetch_and_materialize_restore_a_spilled_object) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  RemoteRef r = s.put(std::string(3000, 'q'));
  ASSERT_TRUE(s.spill(r));
  std::optional<View> v = s.try_fetch(r);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->as_string(), std::string(3000, 'q'));
  v.reset();
  ASSERT_TRUE(s.spill(r));
  EXPECT_EQ(s.materialize<std::string>(r), std::string(3000, 'q'));
  ASSERT_TRUE(s.spill(r));
  std::vector<std::byte> raw(3000);
  s.materialize_into(r, raw);
  EXPECT_EQ(raw[2999], std::byte{'q'});
  EXPECT_EQ(s.info().restores, 3U);
}

TEST(Spill, pinned_and_unsealed_objects_stay_and_out_of_memory_says_who_holds_them) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  RemoteRef a = s.put(pattern(1, kMiB / 4));
  View pinned = s.fetch(a);
  Writer w = s.create_writer(2 * kMiB);
  std::string msg;
  EXPECT_ERRC_MSG(s.put(pattern(2, kMiB / 2)), Errc::OutOfMemory, msg);
  EXPECT_NE(msg.find("pinned"), std::string::npos) << msg;
  EXPECT_NE(msg.find(fmt::format("worker {}", s.myid())), std::string::npos) << msg;
  EXPECT_NE(msg.find("1048576"), std::string::npos) << "the pinned bytes: " << msg;
  EXPECT_EQ(s.info().spills, 0U);
  EXPECT_EQ(pinned.as_span<std::uint32_t>()[5], pattern(1, 6)[5]);
  std::move(w).abort();
}

TEST(Spill, watermarks_spill_ahead_in_one_batch) {
  SegmentGuard g;
  TempDir dir;
  CreateOptions o = spilling(dir, 8 * kMiB);
  o.spill_high_water = 0.75;
  o.spill_low_water = 0.25;
  Store s = Store::create(g.name(), o);
  std::vector<RemoteRef> refs;
  for (std::uint32_t k = 0; k < 6; ++k) refs.push_back(s.put(pattern(k, kMiB / 4)));  // 6 MiB: at the mark
  EXPECT_EQ(s.info().spills, 0U);
  refs.push_back(s.put(pattern(6, kMiB / 4)));  // 7 MiB would cross 6: down to 2 MiB at most
  SegmentInfo i = s.info();
  EXPECT_GE(i.spills, 5U);
  EXPECT_LE(i.used, 2 * kMiB + kMiB);
  std::uint64_t spills = i.spills;
  refs.push_back(s.put(pattern(7, kMiB / 4)));
  refs.push_back(s.put(pattern(8, kMiB / 4)));
  EXPECT_EQ(s.info().spills, spills) << "below the high mark again: no spill per put";
  for (std::uint32_t k = 0; k < refs.size(); ++k) {
    EXPECT_EQ(s.materialize<std::vector<std::uint32_t>>(refs[k]), pattern(k, kMiB / 4)) << k;
  }
}

TEST(Spill, bad_settings_and_a_store_that_does_not_spill_are_refused_clearly) {
  SegmentGuard g;
  TempDir dir;
  std::string msg;
  CreateOptions o = spilling(dir);
  o.spill_low_water = 0.9;
  o.spill_high_water = 0.5;
  EXPECT_ERRC_MSG(Store::create(g.name(), o), Errc::InvalidArgument, msg);
  EXPECT_NE(msg.find("watermarks"), std::string::npos) << msg;
  o = spilling(dir);
  o.spill_directory = "/" + std::string(300, 'd');
  EXPECT_ERRC_MSG(Store::create(g.name(), o), Errc::InvalidArgument, msg);
  o = spilling(dir);
  o.spill_directory = "/proc/version/spill";  // its parent is a file
  EXPECT_ERRC_MSG(Store::create(g.name(), o), Errc::InvalidArgument, msg);
  EXPECT_NE(msg.find("/proc/version/spill"), std::string::npos) << msg;
  EXPECT_FALSE(Store::exists(g.name())) << "a failed create leaves nothing behind";
  Store plain = Store::create(g.name(), test::small_options());
  RemoteRef r = plain.put(1);
  EXPECT_ERRC_MSG(plain.spill(r), Errc::InvalidArgument, msg);
  EXPECT_NE(msg.find("does not spill"), std::string::npos) << msg;
  EXPECT_TRUE(plain.info().spill_directory.empty());
}

TEST(Spill, a_relative_spill_directory_is_made_absolute_and_created) {
  SegmentGuard g;
  TempDir dir;
  std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  CreateOptions o = test::small_options();
  o.spill_directory = "spill/here";
  std::string folder;
  try {
    std::filesystem::create_directory("spill");
    Store s = Store::create(g.name(), o);
    folder = s.info().spill_directory;
  } catch (...) {
    std::filesystem::current_path(cwd);
    throw;
  }
  std::filesystem::current_path(cwd);
  EXPECT_EQ(folder.rfind(dir.path() + "/spill/here/sealstore.", 0), 0U) << folder;
}

TEST(Spill, a_lost_spill_file_is_a_clear_error_and_the_ref_stays_erasable) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  RemoteRef r = s.put(pattern(3, 500));
  ASSERT_TRUE(s.spill(r));
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (e.is_regular_file()) std::filesystem::resize_file(e.path(), 10);
  }
  std::string msg;
  EXPECT_ERRC_MSG(s.fetch(r), Errc::Corrupt, msg);
  EXPECT_NE(msg.find("spill file"), std::string::npos) << msg;
  EXPECT_EQ(s.objects().at(0).place, Place::Spill);
  EXPECT_EQ(s.info().used, 0U) << "the failed restore gave its space back";
  s.erase(r);
  EXPECT_EQ(dir.files(), 0U);
}

// Threads of one process share one pin bit: a spill must see a View taken
// by another thread of its own process, however the two interleave, or the
// View would read an extent freed and reused under it.
TEST(Spill, a_view_in_another_thread_of_the_spilling_process_keeps_its_bytes) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir, 2 * kMiB));
  constexpr std::size_t kWords = std::size_t{64} * 1024;  // 256 KiB objects
  RemoteRef x = s.put(pattern(42, kWords));
  ASSERT_TRUE(s.spill(x));
  s.fetch(x);  // restored: its file stays valid, so later spills write nothing (the quick path)
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> damaged{0};
  std::atomic<std::uint64_t> reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      View v = s.fetch(x);
      auto words = v.as_span<std::uint32_t>();
      for (std::size_t k = 0; k < words.size(); k += 97) {
        if (words[k] != static_cast<std::uint32_t>(std::size_t{42} * 1000003U + k)) damaged.fetch_add(1);
      }
      reads.fetch_add(1);
    }
  });
  std::thread writer([&] {  // reuses whatever space a spill frees
    while (!stop.load()) {
      try {
        RemoteRef r = s.put(pattern(7, kWords));
        s.erase(r);
      } catch (const Error& e) {
        if (e.code() != Errc::OutOfMemory) throw;
      }
    }
  });
  auto until = std::chrono::steady_clock::now() + 2s;
  std::uint64_t spilled = 0;
  while (std::chrono::steady_clock::now() < until) spilled += s.spill(x) ? 1U : 0U;
  stop.store(true);
  reader.join();
  writer.join();
  EXPECT_EQ(damaged.load(), 0U) << "after " << reads.load() << " reads and " << spilled << " spills";
  EXPECT_GT(reads.load(), 0U);
  EXPECT_EQ(s.materialize<std::vector<std::uint32_t>>(x), pattern(42, kWords));
}

TEST(Spill, a_spill_directory_that_fails_stops_the_spilling_and_the_write_takes_the_room_there_is) {
  SegmentGuard g;
  TempDir dir;
  CreateOptions o = spilling(dir, 8 * kMiB);
  o.spill_high_water = 0.5;
  o.spill_low_water = 0.25;
  Store s = Store::create(g.name(), o);
  for (std::uint32_t k = 0; k < 4; ++k) s.put(pattern(k, kMiB / 4));  // at the high mark
  // The spill folder goes away: no spill can be written.
  std::filesystem::remove_all(s.info().spill_directory);
  RemoteRef r = s.put(pattern(9, kMiB / 4));  // above the mark, but it fits
  EXPECT_EQ(s.materialize<std::vector<std::uint32_t>>(r), pattern(9, kMiB / 4));
  EXPECT_EQ(s.info().spills, 0U);
  for (std::uint32_t k = 0; k < 3; ++k) s.put(pattern(10 + k, kMiB / 4));  // full now
  std::string msg;
  EXPECT_ERRC_MSG(s.put(pattern(20, kMiB / 4)), Errc::OutOfMemory, msg);
  EXPECT_NE(msg.find("spilling failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("spill file"), std::string::npos) << msg;
}

TEST(Spill, an_object_larger_than_the_low_mark_spills_only_what_it_needs) {
  SegmentGuard g;
  TempDir dir;
  CreateOptions o = spilling(dir, 8 * kMiB);
  o.spill_high_water = 0.5;
  o.spill_low_water = 0.5;
  Store s = Store::create(g.name(), o);
  for (std::uint32_t k = 0; k < 3; ++k) s.put(pattern(k, kMiB / 4));  // 3 MiB
  s.put(pattern(7, 5 * kMiB / 4));                                    // 5 MiB: beyond both marks, and it fits
  EXPECT_EQ(s.info().spills, 0U);
  s.put(pattern(8, kMiB / 4));  // 9 MiB would not fit: room for it, down to the low mark
  EXPECT_GE(s.info().spills, 1U);
  EXPECT_LE(s.info().spills, 4U);
}

TEST(Spill, a_spilled_entry_of_no_size_is_corrupt_and_costs_nothing) {
  SegmentGuard g;
  TempDir dir;
  Store s = Store::create(g.name(), spilling(dir));
  RemoteRef keep = s.put(pattern(1, kMiB / 4));
  RemoteRef r = s.put(pattern(2, 100));
  ASSERT_TRUE(s.spill(r));
  auto* entries = reinterpret_cast<detail::Entry*>(s.session()->mapping().base() +  // NOLINT
                                                   s.session()->geo().entries_offset);
  detail::store(entries[r.id() & 0xffffffffU].size, std::uint64_t{0});  // NOLINT: as a peer could
  std::string msg;
  EXPECT_ERRC_MSG(s.fetch(r), Errc::Corrupt, msg);
  EXPECT_EQ(s.info().spills, 1U) << "nothing else was spilled to make room for it";
  EXPECT_EQ(s.objects().size(), 2U);
  EXPECT_EQ(s.materialize<std::vector<std::uint32_t>>(keep), pattern(1, kMiB / 4));
}

TEST(Spill, a_spill_directory_others_could_rearrange_is_refused) {
  SegmentGuard g;
  TempDir dir;
  std::string open = dir.path() + "/open";
  std::filesystem::create_directory(open);
  std::filesystem::permissions(open, std::filesystem::perms::all);  // 0777, not sticky
  CreateOptions o = test::small_options();
  o.spill_directory = open;
  std::string msg;
  EXPECT_ERRC_MSG(Store::create(g.name(), o), Errc::PermissionDenied, msg);
  EXPECT_NE(msg.find("sticky"), std::string::npos) << msg;
  std::filesystem::create_directory_symlink(dir.path(), dir.path() + "/link");
  o.spill_directory = dir.path() + "/link";
  EXPECT_ERRC_MSG(Store::create(g.name(), o), Errc::PermissionDenied, msg);
  EXPECT_FALSE(Store::exists(g.name()));
}

TEST(Spill, removing_a_segment_never_follows_a_link_planted_for_its_spill_folder) {
  TempDir dir;
  TempDir victim;
  { std::ofstream(victim.path() + "/precious") << "keep me"; }
  SegmentGuard g;
  std::string folder;
  {
    Store s = Store::create(g.name(), spilling(dir));
    ASSERT_TRUE(s.spill(s.put(pattern(1, 100))));
    folder = s.info().spill_directory;
  }
  std::filesystem::remove_all(folder);
  std::filesystem::create_directory_symlink(victim.path(), folder);
  EXPECT_TRUE(Store::remove(g.name()));
  EXPECT_TRUE(std::filesystem::exists(victim.path() + "/precious"));
}

}  // namespace
}  // namespace sealstore
