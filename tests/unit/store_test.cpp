#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <numeric>
#include <thread>

#include "sealstore/sealstore.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::SegmentGuard;
using test::small_options;

TEST(Store, create_attach_and_remove) {
  SegmentGuard g;
  EXPECT_FALSE(Store::exists(g.name()));
  Store s = Store::create(g.name(), small_options());
  EXPECT_TRUE(Store::exists(g.name()));
  EXPECT_EQ(s.myid(), 1U);
  Store t = Store::attach(g.name());
  EXPECT_EQ(t.myid(), 2U);
  SegmentInfo i = s.info();
  EXPECT_EQ(i.capacity, std::uint64_t{16} << 20U);
  EXPECT_EQ(i.processes, 2U);
  EXPECT_EQ(i.used, 0U);
  EXPECT_EQ(i.largest_free, i.capacity);
  EXPECT_TRUE(Store::remove(g.name()));
  EXPECT_FALSE(Store::remove(g.name()));
  // Attached handles keep working after the name is gone.
  RemoteRef r = s.put(7);
  EXPECT_EQ(t.fetch(r).as<int>(), 7);
}

TEST(Store, segment_is_owner_only_by_default_and_wider_on_request) {
  SegmentGuard g1;
  SegmentGuard g2;
  Store a = Store::create(g1.name(), small_options());
  struct stat st {};
  ASSERT_EQ(::stat(Store::path_of(g1.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777U, 0600U);
  CreateOptions o = small_options();
  o.mode = 0660;
  Store b = Store::create(g2.name(), o);
  ASSERT_EQ(::stat(Store::path_of(g2.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777U, 0660U);
  EXPECT_EQ(b.info().mode, 0660U);
}

TEST(Store, bad_segment_names_and_options_are_invalid_arguments) {
  EXPECT_ERRC(Store::create("", small_options()), Errc::InvalidArgument);
  EXPECT_ERRC(Store::create("../etc/passwd", small_options()), Errc::InvalidArgument);
  EXPECT_ERRC(Store::create("a/b", small_options()), Errc::InvalidArgument);
  EXPECT_ERRC(Store::create(".hidden", small_options()), Errc::InvalidArgument);
  EXPECT_ERRC(Store::create(std::string(201, 'a'), small_options()), Errc::InvalidArgument);
  EXPECT_ERRC(Store::attach("has space"), Errc::InvalidArgument);
  SegmentGuard g;
  CreateOptions o = small_options();
  o.capacity = 0;
  EXPECT_ERRC(Store::create(g.name(), o), Errc::InvalidArgument);
  o = small_options();
  o.mode = 0044;  // no owner read/write
  EXPECT_ERRC(Store::create(g.name(), o), Errc::InvalidArgument);
  o = small_options();
  o.max_objects = 1U << 30U;
  EXPECT_ERRC(Store::create(g.name(), o), Errc::InvalidArgument);
  EXPECT_FALSE(Store::exists(g.name())) << "a failed create leaves nothing";
}

TEST(Store, create_of_an_existing_segment_fails_with_already_exists) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  EXPECT_ERRC(Store::create(g.name(), small_options()), Errc::AlreadyExists);
  EXPECT_EQ(s.put(1).is_null(), false) << "the existing segment is untouched";
}

TEST(Store, create_in_a_missing_directory_fails_with_invalid_argument) {
  SegmentGuard g;
  CreateOptions o = small_options();
  o.directory = "/nonexistent-sealstore-dir";
  EXPECT_ERRC(Store::create(g.name(), o), Errc::InvalidArgument);
}

TEST(Store, racing_creators_of_one_name_leave_exactly_one_segment) {
  SegmentGuard g;
  std::atomic<int> made{0};
  std::atomic<int> exists{0};
  std::vector<std::thread> ts;
  ts.reserve(4);
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] {
      try {
        Store s = Store::create(g.name(), small_options());
        made += 1;
        s.put(1);  // usable
      } catch (const Error& e) {
        if (e.code() == Errc::AlreadyExists) exists += 1;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(made.load(), 1);
  EXPECT_EQ(exists.load(), 3);
  Store t = Store::attach(g.name());
  EXPECT_EQ(t.info().objects, 1U) << "the winner's segment is the one under the name";
}

TEST(Store, attach_to_a_missing_segment_fails_with_segment_missing) {
  SegmentGuard g;
  EXPECT_ERRC(Store::attach(g.name()), Errc::SegmentMissing);
}

TEST(Store, attach_to_a_foreign_file_fails_with_incompatible_segment) {
  SegmentGuard g;
  {
    std::ofstream f(Store::path_of(g.name()));
    f << std::string(8192, 'x');
  }
  EXPECT_ERRC(Store::attach(g.name()), Errc::IncompatibleSegment);
  {
    std::ofstream f(Store::path_of(g.name()), std::ios::trunc);
    f << "tiny";
  }
  EXPECT_ERRC(Store::attach(g.name()), Errc::IncompatibleSegment);
}

TEST(Store, attach_to_another_layout_version_fails_with_incompatible_segment) {
  SegmentGuard g;
  { Store s = Store::create(g.name(), small_options()); }
  // Bump the layout version field (right after the 8-byte magic).
  {
    std::fstream f(Store::path_of(g.name()), std::ios::in | std::ios::out | std::ios::binary);
    std::uint32_t v = 99;
    f.seekp(8);
    f.write(reinterpret_cast<const char*>(&v), sizeof v);
  }
  try {
    Store::attach(g.name());
    ADD_FAILURE() << "attach succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::IncompatibleSegment);
    EXPECT_NE(std::string(e.what()).find("version 99"), std::string::npos) << e.what();
  }
}

TEST(Store, attach_to_a_segment_whose_creator_died_mid_creation_fails_with_corrupt) {
  SegmentGuard g;
  {
    // What a creator killed before storing the magic leaves: a zeroed file.
    std::ofstream f(Store::path_of(g.name()), std::ios::binary);
    f << std::string(1 << 16, '\0');
  }
  try {
    Store::attach(g.name());
    ADD_FAILURE() << "attach succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::Corrupt);
    EXPECT_NE(std::string(e.what()).find("never initialised"), std::string::npos) << e.what();
  }
}

TEST(Store, attach_to_a_segment_with_inconsistent_geometry_fails_with_corrupt) {
  SegmentGuard g;
  { Store s = Store::create(g.name(), small_options()); }
  {
    // The capacity field (after magic, version, header size, fingerprint,
    // tag, mode and file size) no longer matches the file.
    std::fstream f(Store::path_of(g.name()), std::ios::in | std::ios::out | std::ios::binary);
    std::uint64_t capacity = std::uint64_t{1} << 30U;
    f.seekp(40);
    f.write(reinterpret_cast<const char*>(&capacity), sizeof capacity);
  }
  EXPECT_ERRC(Store::attach(g.name()), Errc::Corrupt);
}

TEST(Store, creating_beyond_the_mount_fails_with_out_of_memory_and_leaves_nothing) {
  SegmentGuard g;
  CreateOptions o = small_options();
  o.capacity = std::uint64_t{1} << 45U;  // 32 TiB: more than this machine's /dev/shm
  try {
    Store::create(g.name(), o);
    ADD_FAILURE() << "create succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::OutOfMemory) << e.what();
    EXPECT_NE(std::string(e.what()).find("available"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(Store::exists(g.name()));
}

TEST(Store, put_then_fetch_returns_the_same_bytes_without_copying) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::vector<double> v(1000);
  std::iota(v.begin(), v.end(), 0.5);
  RemoteRef r = s.put(v);
  EXPECT_EQ(r.where(), 1U);
  EXPECT_EQ(r.whence(), 1U);
  View a = s.fetch(r);
  View b = s.fetch(r);
  EXPECT_EQ(a.bytes().data(), b.bytes().data()) << "two fetches see the same memory";
  std::span<const double> d = a.as_span<double>();
  ASSERT_EQ(d.size(), v.size());
  EXPECT_TRUE(std::equal(d.begin(), d.end(), v.begin()));
  EXPECT_EQ(s.materialize<std::vector<double>>(r), v);
}

TEST(Store, typed_values_round_trip) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  struct Point {
    int x;
    double y;
  };
  RemoteRef p = s.put(Point{3, 4.5});
  EXPECT_EQ(s.fetch(p).as<Point>().y, 4.5);
  EXPECT_EQ(s.materialize<Point>(p).x, 3);

  RemoteRef str = s.put(std::string("aardvark"));
  EXPECT_EQ(s.fetch(str).as_string(), "aardvark");
  EXPECT_EQ(s.materialize<std::string>(str), "aardvark");

  NdArray<double> m({3, 5});
  for (std::uint64_t i = 0; i < 3; ++i) {
    for (std::uint64_t j = 0; j < 5; ++j) m(i, j) = static_cast<double>(i) + static_cast<double>(j) / 10.0;
  }
  RemoteRef mr = s.put(m);
  View mv = s.fetch(mr);
  NdView<double> nd = mv.as_ndarray<double>();
  EXPECT_EQ(nd.extent(0), 3U);
  EXPECT_EQ(nd.extent(1), 5U);
  EXPECT_EQ(nd(2, 4), 2.4);
  NdView<double> corner = nd.slice({{0, 2}, {0, 2}});
  EXPECT_EQ(&corner(1, 1), &nd(1, 1));
  EXPECT_EQ(mv.type().describe(), "f64[3x5]");
  EXPECT_EQ(s.materialize<NdArray<double>>(mr), m);

  RemoteRef empty = s.put(std::vector<int>{});
  EXPECT_EQ(s.fetch(empty).size(), 0U);
  EXPECT_TRUE(s.materialize<std::vector<int>>(empty).empty());
}

TEST(Store, asking_for_another_type_fails_with_type_mismatch) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<double>{1.0, 2.0});
  View v = s.fetch(r);
  EXPECT_ERRC((void)v.as<double>(), Errc::TypeMismatch);
  EXPECT_ERRC((void)v.as_span<float>(), Errc::TypeMismatch);
  EXPECT_ERRC((void)v.as_string(), Errc::TypeMismatch);
  EXPECT_ERRC((void)v.as_ndarray<double>(), Errc::TypeMismatch);
  EXPECT_ERRC(s.materialize<std::vector<int>>(r), Errc::TypeMismatch);
  EXPECT_ERRC(s.materialize<std::string>(r), Errc::TypeMismatch);
  EXPECT_ERRC(s.materialize<NdArray<double>>(r), Errc::TypeMismatch);
  try {
    s.materialize<std::vector<int>>(r);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f64[]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("i32[]"), std::string::npos) << e.what();
  }
  // Raw bytes of anything are always available.
  EXPECT_EQ(s.materialize<std::vector<std::byte>>(r).size(), 16U);
}

TEST(Store, second_put_fails_with_already_sealed_and_changes_nothing) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  s.put(r, std::string("aardvark"));
  try {
    s.put(r, std::string("anteater"));
    ADD_FAILURE() << "second put succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::AlreadySealed);
    EXPECT_NE(std::string(e.what()).find(r.to_string()), std::string::npos) << "names the ref: " << e.what();
  }
  EXPECT_EQ(s.fetch(r).as_string(), "aardvark");
  EXPECT_ERRC(s.create_writer(r, 8), Errc::AlreadySealed);
  EXPECT_EQ(s.info().used, 64U) << "the failed puts took no space";
}

TEST(Store, a_ref_being_written_cannot_be_claimed_twice) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref(2);
  EXPECT_EQ(r.where(), 2U);
  EXPECT_EQ(r.whence(), 1U);
  Writer w = s.create_writer(r, 16);
  EXPECT_ERRC(s.put(r, 5), Errc::AlreadySealed);
  EXPECT_ERRC(s.erase(r), Errc::NotSealed);
  std::memset(w.bytes().data(), 1, 16);
  EXPECT_EQ(std::move(w).seal(), r);
  EXPECT_EQ(s.fetch(r).size(), 16U);
}

TEST(Store, a_dropped_writer_aborts_and_frees_its_space) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef fresh;
  {
    Writer w = s.create_writer(4096);
    fresh = w.ref();
    EXPECT_EQ(s.info().used, 4096U);
  }
  EXPECT_EQ(s.info().used, 0U);
  EXPECT_FALSE(s.contains(fresh));
  EXPECT_ERRC(s.fetch(fresh), Errc::NotFound);

  RemoteRef made = s.make_ref();
  { Writer w = s.create_writer(made, 100); }
  EXPECT_TRUE(s.contains(made)) << "a made ref returns to unfilled";
  EXPECT_FALSE(s.try_fetch(made).has_value());
  s.put(made, 42);
  EXPECT_EQ(s.fetch(made).as<int>(), 42);
}

TEST(Store, materialize_into_copies_into_a_caller_buffer_of_the_exact_size) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::vector<std::uint32_t> v(1000);
  std::iota(v.begin(), v.end(), 1U);
  RemoteRef r = s.put(v);
  std::vector<std::uint32_t> dst(1000);
  s.materialize_into(r, std::as_writable_bytes(std::span(dst)));
  EXPECT_EQ(dst, v);
  std::vector<std::byte> small(10);
  EXPECT_ERRC(s.materialize_into(r, small), Errc::InvalidArgument);
  RemoteRef unfilled = s.make_ref();
  EXPECT_ERRC(s.materialize_into(unfilled, small, 1ms), Errc::Timeout);
}

TEST(Store, explicit_abort_frees_the_space_and_empties_the_writer) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  Writer w = s.create_writer(10000);
  RemoteRef r = w.ref();
  EXPECT_EQ(s.info().used, 10240U) << "a small object's extent is its size class's: 10 KiB here";
  std::move(w).abort();
  EXPECT_TRUE(w.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(s.info().used, 0U);
  EXPECT_FALSE(s.contains(r));
  std::move(w).abort();  // a second abort of an empty writer does nothing
}

TEST(Store, writer_fills_in_place_then_seal_publishes) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::uint64_t shape[] = {4, 4};
  Writer w = s.create_writer(16 * sizeof(float), ndarray_type<float>(shape));
  auto f = w.as_span<float>();
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i);
  RemoteRef r = w.ref();
  EXPECT_FALSE(s.try_fetch(r).has_value()) << "not visible before seal";
  RemoteRef sealed = std::move(w).seal();
  EXPECT_EQ(sealed, r);
  EXPECT_TRUE(w.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(s.fetch(r).as_ndarray<float>()(3, 3), 15.0F);
  EXPECT_ERRC(std::move(w).seal(), Errc::InvalidArgument);
}

TEST(Store, writer_sizes_must_match_their_type) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::uint64_t shape[] = {4, 4};
  EXPECT_ERRC(s.create_writer(10, ndarray_type<float>(shape)), Errc::InvalidArgument);
  EXPECT_ERRC(s.create_writer(6, element_type<int>(ValueKind::Array)), Errc::InvalidArgument);
  EXPECT_ERRC(s.create_writer(8, element_type<int>(ValueKind::Scalar)), Errc::InvalidArgument);
  std::uint64_t huge[] = {std::uint64_t{1} << 40U, std::uint64_t{1} << 40U};
  EXPECT_ERRC(s.create_writer(8, ndarray_type<double>(huge)), Errc::InvalidArgument);
}

TEST(Store, too_large_for_the_segment_fails_with_out_of_memory_naming_sizes) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options(1 << 20));
  std::vector<char> big((1 << 20) + 1);
  EXPECT_ERRC(s.put(big), Errc::OutOfMemory);
  RemoteRef a = s.put(std::vector<char>(600 << 10));
  try {
    s.put(std::vector<char>(600 << 10));
    ADD_FAILURE() << "put succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("largest free block"), std::string::npos) << e.what();
  }
  s.erase(a);
  EXPECT_NO_THROW(s.put(std::vector<char>(600 << 10))) << "erased space is reused";
}

TEST(Store, a_full_object_table_fails_with_out_of_memory) {
  SegmentGuard g;
  CreateOptions o = small_options();
  o.max_objects = 4;
  Store s = Store::create(g.name(), o);
  for (int i = 0; i < 4; ++i) s.put(i);
  EXPECT_ERRC(s.put(5), Errc::OutOfMemory);
  EXPECT_ERRC(s.make_ref(), Errc::OutOfMemory);
  EXPECT_EQ(s.info().used, 4U * 64U) << "the failed put released its space";
}

TEST(Store, erase_frees_space_and_later_fetch_is_not_found) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<char>(1000));
  EXPECT_TRUE(s.contains(r));
  s.erase(r);
  EXPECT_FALSE(s.contains(r));
  EXPECT_EQ(s.info().used, 0U);
  EXPECT_ERRC(s.fetch(r), Errc::NotFound);
  EXPECT_ERRC(s.erase(r), Errc::NotFound);
  // The entry is reused under a new generation: the old ref stays dead.
  RemoteRef r2 = s.put(std::vector<char>(1000));
  EXPECT_NE(r, r2);
  EXPECT_ERRC(s.fetch(r), Errc::NotFound);
}

TEST(Store, erase_while_pinned_defers_the_free_until_the_last_view_goes) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::string(5000, 'z'));
  View v1 = s.fetch(r);
  View v2 = s.fetch(r);
  s.erase(r);
  EXPECT_FALSE(s.contains(r));
  EXPECT_ERRC(s.fetch(r), Errc::NotFound);
  auto objs = s.objects();
  ASSERT_EQ(objs.size(), 1U);
  EXPECT_EQ(objs[0].state, ObjectState::ErasePending);
  EXPECT_EQ(objs[0].pinned_by, std::vector<WorkerId>{1});
  EXPECT_EQ(v1.as_string(), std::string(5000, 'z'));
  v1.reset();
  EXPECT_EQ(s.info().objects, 1U);
  EXPECT_EQ(v2.as_string()[4999], 'z');
  v2 = View();
  EXPECT_EQ(s.info().objects, 0U);
  EXPECT_EQ(s.info().used, 0U);
}

TEST(Store, fetch_many_returns_a_pinned_view_per_ref_in_order) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::vector<RemoteRef> refs(100);
  for (std::size_t i = 0; i < refs.size(); ++i) refs[i] = s.put("object " + std::to_string(i));
  // Out of order, and one ref twice: a view each, in the order asked.
  std::vector<RemoteRef> ask(refs.rbegin(), refs.rend());
  ask.push_back(refs[7]);
  std::vector<View> views = s.fetch_many(ask);
  ASSERT_EQ(views.size(), ask.size());
  for (std::size_t k = 0; k < ask.size(); ++k) {
    EXPECT_EQ(views[k].ref(), ask[k]);
    EXPECT_EQ(views[k].as_string(), "object " + std::to_string(k < 100 ? 99 - k : 7));
  }
  // Each view pins its object: erased, every one waits for its views.
  for (const auto& r : refs) s.erase(r);
  EXPECT_EQ(s.info().objects, 100U);
  views.resize(50);  // drops the views of objects 49 down to 0, and object 7's second
  EXPECT_EQ(s.info().objects, 50U);
  views.clear();
  EXPECT_EQ(s.info().objects, 0U);
  EXPECT_EQ(s.info().used, 0U);
  EXPECT_TRUE(s.fetch_many({}).empty());
}

TEST(Store, views_from_fetch_many_outlive_their_store) {
  SegmentGuard g;
  std::vector<View> views;
  {
    Store s = Store::create(g.name(), small_options());
    std::vector<RemoteRef> refs(20);
    for (std::size_t i = 0; i < refs.size(); ++i) refs[i] = s.put(std::string(100, static_cast<char>('a' + i)));
    views = s.fetch_many(refs);
  }
  // The views hold the attachment: released one at a time, the last one
  // ends it, and none before.
  Store watcher = Store::attach(g.name());
  for (std::size_t k = 0; k < views.size(); ++k) {
    EXPECT_EQ(views[k].as_string(), std::string(100, static_cast<char>('a' + k)));
    EXPECT_EQ(watcher.processes().size(), 2U);
    views[k].reset();
  }
  EXPECT_EQ(watcher.processes().size(), 1U);
}

TEST(Store, a_failed_fetch_many_releases_the_views_it_took) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef a = s.put(std::string(3000, 'a'));
  RemoteRef b = s.put(std::string(3000, 'b'));
  RemoteRef gone = s.put(std::string(3000, 'g'));
  s.erase(gone);
  RemoteRef unfilled = s.make_ref();
  std::vector<RemoteRef> refs{a, b, gone, a};
  EXPECT_ERRC(s.fetch_many(refs), Errc::NotFound);
  FetchOptions brief;
  brief.timeout = 20ms;
  std::vector<RemoteRef> waits{b, a, unfilled};
  EXPECT_ERRC(s.fetch_many(waits, brief), Errc::Timeout);
  // Nothing stayed pinned: the erases free at once.
  s.erase(a);
  s.erase(b);
  s.erase(unfilled);
  EXPECT_EQ(s.info().objects, 0U);
  EXPECT_EQ(s.info().used, 0U);
}

TEST(Store, fetch_of_an_unfilled_ref_times_out) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_ERRC(s.fetch(r, 50ms), Errc::Timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  EXPECT_ERRC(s.fetch(r, 0ms), Errc::Timeout);
  EXPECT_ERRC(s.fetch(r, -1ms), Errc::InvalidArgument);
  EXPECT_FALSE(s.try_fetch(r).has_value());
}

TEST(Store, fetch_wakes_when_another_thread_seals) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  std::thread t([&] { s.put(r, 99); });
  EXPECT_EQ(s.fetch(r, 30s).as<int>(), 99);
  t.join();
}

TEST(Store, a_spinning_fetch_sees_the_seal_and_honours_its_timeout) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  FetchOptions o;
  o.spin = 5s;  // far longer than the seal takes: the spin sees it
  std::thread t([&] { s.put(r, 7); });
  EXPECT_EQ(s.fetch(r, o).as<int>(), 7);
  t.join();
  RemoteRef never = s.make_ref();
  o.spin = 1s;
  o.timeout = 20ms;  // the deadline bounds the spin too
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_ERRC(s.fetch(never, o), Errc::Timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 900ms);
  o.spin = -1ms;
  EXPECT_ERRC(s.fetch(never, o), Errc::InvalidArgument);
}

TEST(Store, erasing_an_unfilled_ref_wakes_its_waiters_with_not_found) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  std::thread t([&] { EXPECT_ERRC(s.fetch(r, 30s), Errc::NotFound); });
  while (s.objects().empty()) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // let the thread reach its wait; correctness does not depend on it
  s.erase(r);
  t.join();
}

TEST(Store, refs_of_another_segment_or_malformed_are_rejected) {
  SegmentGuard g1;
  SegmentGuard g2;
  Store a = Store::create(g1.name(), small_options());
  Store b = Store::create(g2.name(), small_options());
  RemoteRef r = a.put(1);
  EXPECT_ERRC(b.fetch(r), Errc::NotFound);
  EXPECT_FALSE(b.contains(r));
  EXPECT_ERRC(a.fetch(RemoteRef()), Errc::InvalidArgument);
  RemoteRef out_of_range(r.segment_tag(), (std::uint64_t{1} << 32U) | 999999U, 1, 1);
  EXPECT_ERRC(a.fetch(out_of_range), Errc::NotFound);
  EXPECT_ERRC(a.erase(out_of_range), Errc::NotFound);
  RemoteRef wrong_gen(r.segment_tag(), r.id() + (std::uint64_t{5} << 32U), 1, 1);
  EXPECT_ERRC(a.fetch(wrong_gen), Errc::NotFound);
}

TEST(Store, names_bind_lookup_and_unbind) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(1.234);
  s.bind("y", r);
  ASSERT_TRUE(s.lookup("y").has_value());
  EXPECT_EQ(*s.lookup("y"), r);
  EXPECT_FALSE(s.lookup("x").has_value());
  RemoteRef r2 = s.put(1.345);
  s.bind("y", r2);  // rebinding replaces
  EXPECT_EQ(*s.lookup("y"), r2);
  auto objs = s.objects();
  for (const auto& o : objs) {
    if (o.ref == r2) {
      EXPECT_EQ(o.names, std::vector<std::string>{"y"});
    }
    if (o.ref == r) {
      EXPECT_TRUE(o.names.empty());
    }
  }
  EXPECT_TRUE(s.unbind("y"));
  EXPECT_FALSE(s.unbind("y"));
  EXPECT_FALSE(s.lookup("y").has_value());
  s.bind("model/weights:v1", r);
  s.erase(r);
  EXPECT_FALSE(s.lookup("model/weights:v1").has_value()) << "erase unbinds";
}

TEST(Store, invalid_names_and_dead_refs_cannot_be_bound) {
  SegmentGuard g;
  CreateOptions o = small_options();
  o.max_names = 2;
  Store s = Store::create(g.name(), o);
  RemoteRef r = s.put(1);
  EXPECT_ERRC(s.bind("", r), Errc::InvalidArgument);
  EXPECT_ERRC(s.bind("has space", r), Errc::InvalidArgument);
  EXPECT_ERRC(s.bind(std::string(64, 'n'), r), Errc::InvalidArgument);
  EXPECT_ERRC(s.lookup("bad name"), Errc::InvalidArgument);
  s.bind("a", r);
  s.bind("b", r);
  EXPECT_ERRC(s.bind("c", r), Errc::OutOfMemory);
  RemoteRef dead = s.put(2);
  s.erase(dead);
  EXPECT_ERRC(s.bind("a", dead), Errc::NotFound);
  EXPECT_EQ(*s.lookup("a"), r) << "a failed bind changes nothing";
}

TEST(Store, observer_reads_but_cannot_change_anything) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(5);
  s.bind("five", r);
  AttachOptions o;
  o.observer = true;
  Store obs = Store::attach(g.name(), o);
  EXPECT_EQ(obs.info().objects, 1U);
  EXPECT_EQ(obs.objects().size(), 1U);
  EXPECT_EQ(obs.processes().size(), 1U) << "an observer takes no slot";
  EXPECT_EQ(*obs.lookup("five"), r);
  EXPECT_ERRC(obs.fetch(r), Errc::InvalidArgument);
  EXPECT_ERRC(obs.put(1), Errc::InvalidArgument);
  EXPECT_ERRC(obs.erase(r), Errc::InvalidArgument);
}

TEST(Store, processes_lists_attached_ids_and_pins) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  Store t = Store::attach(g.name());
  RemoteRef r = s.put(std::vector<char>(1000));
  View v = t.fetch(r);
  auto ps = s.processes();
  ASSERT_EQ(ps.size(), 2U);
  EXPECT_EQ(ps[0].id, 1U);
  EXPECT_EQ(ps[0].role, Role::Owner);
  EXPECT_EQ(ps[0].objects_created, 1U);
  EXPECT_EQ(ps[1].id, 2U);
  EXPECT_EQ(ps[1].role, Role::Client);
  EXPECT_EQ(ps[1].pinned_objects, 1U);
  EXPECT_EQ(ps[1].pinned_bytes, 1000U);
  EXPECT_TRUE(ps[1].alive);
  EXPECT_EQ(ps[1].pid, ::getpid());
}

TEST(Store, views_and_writers_are_move_only_and_moved_from_is_empty) {
  static_assert(!std::is_copy_constructible_v<View> && std::is_nothrow_move_constructible_v<View>);
  static_assert(!std::is_copy_constructible_v<Writer> && std::is_nothrow_move_constructible_v<Writer>);
  static_assert(!std::is_copy_constructible_v<Store> && std::is_nothrow_move_constructible_v<Store>);
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(3);
  View a = s.fetch(r);
  View b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.as<int>(), 3);
  s.erase(r);
  EXPECT_EQ(s.info().objects, 1U) << "b still pins";
  b = View();
  EXPECT_EQ(s.info().objects, 0U);
}

TEST(Store, a_moved_from_store_refuses_every_call_with_a_clear_error) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(3);
  Store t = std::move(s);
  auto refused = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code() == Errc::InvalidArgument && std::string(e.what()).find("moved") != std::string::npos;
    }
    return false;
  };
  // NOLINTBEGIN(bugprone-use-after-move): what a moved-from Store does is the point
  EXPECT_TRUE(refused([&] { s.put(4); }));
  EXPECT_TRUE(refused([&] { s.fetch(r); }));
  EXPECT_TRUE(refused([&] { s.try_fetch(r); }));
  EXPECT_TRUE(refused([&] { s.materialize<int>(r); }));
  EXPECT_TRUE(refused([&] { s.make_ref(); }));
  EXPECT_TRUE(refused([&] { s.erase(r); }));
  EXPECT_TRUE(refused([&] { (void)s.contains(r); }));
  EXPECT_TRUE(refused([&] { s.lookup("x"); }));
  EXPECT_TRUE(refused([&] { s.info(); }));
  EXPECT_TRUE(refused([&] { s.objects(); }));
  EXPECT_TRUE(refused([&] { s.recover(); }));
  EXPECT_TRUE(refused([&] { (void)s.name(); }));
  EXPECT_TRUE(refused([&] { (void)s.myid(); }));
  // NOLINTEND(bugprone-use-after-move)
  EXPECT_EQ(t.fetch(r).as<int>(), 3);
  s = std::move(t);
  EXPECT_EQ(s.fetch(r).as<int>(), 3) << "assigning to a moved-from store makes it whole again";
}

// The maker of a ref is its creator, whoever fills it.
TEST(Store, an_objects_creator_is_the_worker_that_made_it_and_its_filler_is_recorded) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  Store other = Store::attach(g.name());
  RemoteRef r = s.make_ref(other.myid());
  other.put(r, 42);
  ObjectInfo o = s.objects().at(0);
  EXPECT_EQ(o.creator, s.myid());
  EXPECT_EQ(o.sealed_by, other.myid());
  RemoteRef mine = other.put(1);
  for (const ObjectInfo& i : s.objects()) {
    if (i.ref == mine) {
      EXPECT_EQ(i.creator, other.myid());
      EXPECT_EQ(i.sealed_by, other.myid());
    }
  }
}

TEST(Store, errors_say_what_happened_to_the_ref_and_name_the_segment) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(1);
  RemoteRef never(r.segment_tag(), (std::uint64_t{7} << 32U) | 900U, 1, 1);
  try {
    s.fetch(never);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::NotFound);
    EXPECT_EQ(std::string(e.what()).find("erased"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("never"), std::string::npos) << e.what();
  }
  s.erase(r);
  try {
    s.fetch(r);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("erased"), std::string::npos) << e.what();
  }
  RemoteRef unfilled = s.make_ref();
  try {
    s.fetch(unfilled, std::chrono::milliseconds(1));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::Timeout);
    EXPECT_NE(std::string(e.what()).find(g.name()), std::string::npos) << e.what();
  }
}

TEST(Store, contains_is_false_from_the_erase_on_even_while_the_free_waits_for_a_view) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(1);
  View v = s.fetch(r);
  EXPECT_TRUE(s.contains(r));
  s.erase(r);
  EXPECT_FALSE(s.contains(r));
  EXPECT_EQ(v.as<int>(), 1);
  v.reset();
  EXPECT_FALSE(s.contains(r));
}

TEST(Store, space_is_reused_and_coalesced) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options(1 << 20));
  std::vector<RemoteRef> refs;
  refs.reserve(16);
  for (int i = 0; i < 16; ++i) refs.push_back(s.put(std::vector<char>(64 << 10)));
  EXPECT_EQ(s.info().largest_free, 0U);
  for (int i = 0; i < 16; i += 2) s.erase(refs[static_cast<std::size_t>(i)]);
  EXPECT_EQ(s.info().largest_free, 64U << 10U);
  EXPECT_EQ(s.info().free_extents, 8U);
  for (int i = 1; i < 16; i += 2) s.erase(refs[static_cast<std::size_t>(i)]);
  EXPECT_EQ(s.info().free_extents, 1U);
  EXPECT_EQ(s.info().largest_free, 1U << 20U);
}

TEST(Store, many_threads_fetch_and_release_one_object) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::vector<int>(100, 7));
  std::vector<std::thread> ts;
  ts.reserve(4);
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        View v = s.fetch(r);
        ASSERT_EQ(v.as_span<int>()[99], 7);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(s.processes()[0].pinned_objects, 0U);
  s.erase(r);
  EXPECT_EQ(s.info().objects, 0U);
}

// More threads than a process has counter lines: the first threads count
// on lines of their own without a locked add, the rest share one with
// atomic adds. A lost count would show as bytes used (or cached) by nobody.
TEST(Store, many_threads_putting_and_erasing_keep_the_books_exact) {
  SegmentGuard g;
  CreateOptions o = small_options(32U << 20U);
  o.max_objects = 32768;
  Store s = Store::create(g.name(), o);
  constexpr int kThreads = 12;  // beyond kStatLines (8)
  std::vector<std::thread> ts;
  ts.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&s, t] {
      std::vector<RemoteRef> refs;
      refs.reserve(200);
      for (int round = 0; round < 10; ++round) {
        for (int k = 0; k < 200; ++k) {
          auto size = static_cast<std::size_t>(1 + (t * 131 + k * 37) % 3000);
          refs.push_back(s.put(std::vector<char>(size, static_cast<char>(t))));
        }
        for (std::size_t k = 0; k < refs.size(); ++k) {
          ASSERT_EQ(s.fetch(refs[k]).bytes()[0], static_cast<std::byte>(t));
          s.erase(refs[k]);
        }
        refs.clear();
      }
    });
  }
  for (auto& t : ts) t.join();
  SegmentInfo i = s.info();
  EXPECT_EQ(i.objects, 0U);
  EXPECT_EQ(i.used, 0U) << "every byte not free is cached, and counted so";
  EXPECT_GT(i.cached, 0U);
  ASSERT_EQ(s.processes().size(), 1U);
  EXPECT_EQ(s.processes()[0].cached_bytes, i.cached);
}

// Puts of n small objects, then their erases: what the cache holds after.
std::uint64_t cached_after_put_and_erase(Store& s, std::size_t n, std::size_t size) {
  std::vector<RemoteRef> refs;
  refs.reserve(n);
  std::vector<std::byte> value(size, std::byte{7});
  for (std::size_t k = 0; k < n; ++k) refs.push_back(s.put_bytes({}, value));
  for (const RemoteRef& r : refs) s.erase(r);
  return s.info().cached;
}

// A run of puts after a run of erases finds its records whole in the
// process's cache. It kept two batches (a few KiB) before, and refilled
// the rest from the segment under the lock, an extent split and an entry
// popped per record.
TEST(Store, erased_small_objects_stay_cached_for_the_next_puts) {
  SegmentGuard g;
  CreateOptions o = small_options();
  o.max_objects = 16384;
  Store s = Store::create(g.name(), o);
  std::uint64_t cached = cached_after_put_and_erase(s, 4096, 64);
  EXPECT_GE(cached, 4000U * 64) << "the erased objects' records stay cached";
  EXPECT_EQ(s.info().used, 0U);
  // The next run takes them: the segment's free space does not move.
  std::uint64_t free_before = s.info().capacity - s.info().used - s.info().cached;
  std::vector<RemoteRef> refs;
  refs.reserve(4000);
  for (int k = 0; k < 4000; ++k) refs.push_back(s.put(std::vector<char>(64, 'n')));
  SegmentInfo i = s.info();
  EXPECT_EQ(i.capacity - i.used - i.cached, free_before) << "no refill from the segment";
  EXPECT_EQ(i.used, 4000U * 64);
  for (const RemoteRef& r : refs) EXPECT_EQ(s.materialize<std::vector<char>>(r), std::vector<char>(64, 'n'));
}

// The depot's bounds: 1 MiB in all, a quarter of a small segment, and two
// batches a class once the segment is short of space or entries.
TEST(Store, a_process_caches_at_most_a_mebibyte_and_a_quarter_of_the_segment) {
  constexpr std::uint64_t kSlack = 64U << 10U;  // the thread's bins and the last batch moved
  {
    SegmentGuard g;
    CreateOptions o = small_options(64U << 20U);
    o.max_objects = 65536;
    Store s = Store::create(g.name(), o);
    EXPECT_LE(cached_after_put_and_erase(s, 32768, 64), (1U << 20U) + kSlack);
    EXPECT_GE(s.info().cached, 1U << 19U);
  }
  {
    SegmentGuard g;
    CreateOptions o = small_options(1U << 20U);
    o.max_objects = 16384;
    Store s = Store::create(g.name(), o);
    EXPECT_LE(cached_after_put_and_erase(s, 8192, 64), (1U << 18U) + kSlack);
  }
  {
    // Nearly every entry in use while the erases begin: short of entries,
    // the depot keeps two batches a class.
    SegmentGuard g;
    CreateOptions o = small_options(16U << 20U);
    o.max_objects = 8192;
    Store s = Store::create(g.name(), o);
    std::vector<RemoteRef> refs;
    refs.reserve(8000);
    for (int k = 0; k < 8000; ++k) refs.push_back(s.put(std::vector<char>(64, 'x')));
    // (1,500 erases leave fewer than a quarter of the entries free.)
    for (int k = 0; k < 1500; ++k) s.erase(refs[static_cast<std::size_t>(k)]);
    EXPECT_LE(s.info().cached, 16U << 10U) << "short of entries: nothing beyond two batches kept";
  }
}

// What one process keeps cached, another short of room takes back.
TEST(Store, space_cached_by_one_process_goes_to_another_short_of_room) {
  SegmentGuard g;
  CreateOptions o = small_options(4U << 20U);
  o.max_objects = 16384;
  Store s = Store::create(g.name(), o);
  test::Pipe cached;
  test::Pipe done;
  test::Child c([&] {
    Store t = Store::attach(g.name());
    cached_after_put_and_erase(t, 8000, 100);
    cached.send();
    done.receive();
    return t.info().cached <= (64U << 10U) ? 0 : 1;
  });
  ASSERT_EQ(cached.receive(), 'x');
  SegmentInfo before = s.info();
  ASSERT_GE(before.cached, 512U << 10U) << "the child's cache holds its erased objects' space";
  // More than is free outside the caches: fits only with the child's taken back.
  std::uint64_t want = before.capacity - before.cached / 2;
  RemoteRef big = s.put_bytes({}, std::vector<std::byte>(want, std::byte{1}));
  EXPECT_EQ(s.fetch(big).size(), want);
  done.send();
  EXPECT_EQ(c.wait().code, 0) << "the child's cache was emptied";
}

}  // namespace
}  // namespace sealstore
