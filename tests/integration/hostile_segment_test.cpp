// Real segments with garbage written into their header and tables, as a
// bug, a crash of another program or a hostile user could leave them:
// attaching gives Corrupt or IncompatibleSegment naming the bad value, never
// a crash or a read out of bounds; derived state is rebuilt, not trusted.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "segment/layout.hpp"
#include "support/errc.hpp"
#include "support/segment_file.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using detail::Entry;
using detail::Header;
using detail::NameSlot;
using detail::ProcessSlot;
using test::Child;
using test::SegmentGuard;
using test::small_options;
using File = test::SegmentFile;

std::uint32_t index_of(const RemoteRef& r) { return static_cast<std::uint32_t>(r.id() & 0xffffffffU); }

// A segment holding a few objects and a name, its creator detached.
class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    Store s = Store::create(g_.name(), small_options());
    scalar_ = s.put(12345);
    text_ = s.put(std::string(1000, 't'));
    array_ = s.put(NdArray<double>({10, 20}, 0.5));
    s.bind("text", text_);
    file_ = std::make_unique<File>(g_.name());
    h_ = file_->read<Header>(0);
  }

  std::uint64_t entry_at(const RemoteRef& r, std::size_t field) const {
    return h_.entries_offset + sizeof(Entry) * index_of(r) + field;
  }

  // Attaching (as a process and as an observer) fails with exactly `code`,
  // the message containing `words`.
  void expect_attach_fails(Errc code, const std::string& words, bool observer_too = true) const {
    for (bool observer : {false, true}) {
      if (observer && !observer_too) continue;
      AttachOptions o;
      o.observer = observer;
      try {
        Store t = Store::attach(g_.name(), o);
        ADD_FAILURE() << (observer ? "observer " : "") << "attach succeeded; expected " << to_string(code);
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      }
    }
  }

  SegmentGuard g_;
  RemoteRef scalar_, text_, array_;
  std::unique_ptr<File> file_;
  Header h_{};
};

TEST_F(Hostile, garbage_magic_fingerprint_or_version_is_incompatible) {
  file_->write(offsetof(Header, fingerprint), std::uint64_t{0x1234});
  expect_attach_fails(Errc::IncompatibleSegment, "another layout");
  file_->write(offsetof(Header, fingerprint), h_.fingerprint);
  file_->write(offsetof(Header, magic), std::uint64_t{0xdeadbeef});
  expect_attach_fails(Errc::IncompatibleSegment, "not a sealstore segment");
  file_->write(offsetof(Header, magic), std::uint64_t{0});
  expect_attach_fails(Errc::Corrupt, "never initialised");
}

TEST_F(Hostile, every_geometry_field_of_the_header_is_checked) {
  struct Field {
    const char* name;
    std::size_t offset;
    std::uint64_t value;
    std::size_t bytes;
  };
  const std::vector<Field> fields = {
      {"capacity", offsetof(Header, capacity), h_.capacity + 4096, 8},
      {"capacity 0", offsetof(Header, capacity), 0, 8},
      {"capacity huge", offsetof(Header, capacity), ~std::uint64_t{0}, 8},
      {"max_objects", offsetof(Header, max_objects), h_.max_objects * 4ULL, 4},
      {"max_objects 0", offsetof(Header, max_objects), 0, 4},
      {"max_names", offsetof(Header, max_names), 0xffffffffULL, 4},
      {"name_slots", offsetof(Header, name_slots), h_.name_slots + 1ULL, 4},
      {"pin_words", offsetof(Header, pin_words), 0, 4},
      {"slots_offset", offsetof(Header, slots_offset), 0, 8},
      {"stats_offset", offsetof(Header, stats_offset), 1, 8},
      {"entries_offset", offsetof(Header, entries_offset), h_.file_size - 64, 8},
      {"pins_offset", offsetof(Header, pins_offset), ~std::uint64_t{0} - 7, 8},
      {"names_offset", offsetof(Header, names_offset), h_.names_offset + 8, 8},
      {"alloc_offset", offsetof(Header, alloc_offset), 64, 8},
      {"alloc_bytes", offsetof(Header, alloc_bytes), 1ULL << 40U, 8},
      {"data_offset", offsetof(Header, data_offset), h_.data_offset + 4096, 8},
      {"file_size", offsetof(Header, file_size), h_.file_size * 2, 8},
  };
  for (const Field& f : fields) {
    SCOPED_TRACE(f.name);
    auto saved = file_->read<std::uint64_t>(f.offset);
    if (f.bytes == 4) {
      file_->write(f.offset, static_cast<std::uint32_t>(f.value));
    } else {
      file_->write(f.offset, f.value);
    }
    expect_attach_fails(Errc::Corrupt, "corrupt header");
    file_->write(f.offset, saved);
  }
  Store t = Store::attach(g_.name());  // restored: fine again
  EXPECT_EQ(t.fetch(scalar_).as<int>(), 12345);
}

TEST_F(Hostile, a_file_of_another_size_than_its_header_says_is_corrupt) {
  file_->resize(h_.file_size - 4096);
  expect_attach_fails(Errc::Corrupt, "the file has");
  file_->resize(h_.file_size + 4096);
  expect_attach_fails(Errc::Corrupt, "the file has");
  file_->resize(100);
  expect_attach_fails(Errc::IncompatibleSegment, "less than a header");
}

// Attaching costs the same whatever the segment holds: the tables are not
// validated up front. Each call bounds what it reads, so damage shows where
// it is touched.
TEST_F(Hostile, an_object_outside_the_data_region_is_corrupt_when_fetched) {
  Store t = Store::attach(g_.name());
  file_->write(entry_at(text_, offsetof(Entry, offset)), h_.capacity - 512);
  EXPECT_ERRC(t.fetch(text_), Errc::Corrupt);
  file_->write(entry_at(text_, offsetof(Entry, offset)), std::uint64_t{0});
  file_->write(entry_at(text_, offsetof(Entry, size)), ~std::uint64_t{0});
  EXPECT_ERRC(t.fetch(text_), Errc::Corrupt);
  EXPECT_ERRC(t.materialize<std::string>(text_), Errc::Corrupt);
  EXPECT_EQ(t.fetch(scalar_).as<int>(), 12345) << "the others are unaffected";
  EXPECT_EQ(t.fetch(array_).as_ndarray<double>()(9, 19), 0.5);
}

TEST_F(Hostile, two_objects_on_the_same_bytes_do_not_stop_the_store) {
  auto text_offset = file_->read<std::uint64_t>(entry_at(text_, offsetof(Entry, offset)));
  file_->write(entry_at(array_, offsetof(Entry, offset)), text_offset);
  file_->write(offsetof(Header, repair_pending), std::uint32_t{1});  // the next locker rebuilds from the table
  Store t = Store::attach(g_.name());
  // One of the two keeps the bytes; the space is handed out once.
  std::vector<RemoteRef> more;
  try {
    for (int i = 0; i < 100; ++i) more.push_back(t.put(std::vector<char>(100000, 'm')));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::OutOfMemory) << e.what();
  }
  EXPECT_FALSE(more.empty());
  EXPECT_EQ(t.fetch(scalar_).as<int>(), 12345);
  for (const RemoteRef& r : more) EXPECT_EQ(t.fetch(r).as_span<char>()[99999], 'm');
}

TEST_F(Hostile, unknown_states_and_out_of_range_indices_are_refused_where_they_are_used) {
  Store t = Store::attach(g_.name());
  auto word = file_->read<std::uint64_t>(entry_at(text_, offsetof(Entry, word)));
  file_->write(entry_at(text_, offsetof(Entry, word)), (word & ~std::uint64_t{0xf}) | 9U);
  EXPECT_ERRC(t.fetch(text_), Errc::Corrupt);
  EXPECT_ERRC(t.erase(text_), Errc::Corrupt);
  EXPECT_FALSE(t.contains(text_));
  EXPECT_EQ(t.objects().size(), 2U) << "an entry in no known state is not listed";
  file_->write(entry_at(text_, offsetof(Entry, word)), word);
  EXPECT_EQ(t.fetch(text_).as_string(), std::string(1000, 't'));

  // A process slot in an unknown state is never taken; one "alive" with a
  // nonsense pid (and no lock byte held) is reaped.
  std::uint64_t slot7 = h_.slots_offset + sizeof(ProcessSlot) * 7;
  file_->write(slot7 + offsetof(ProcessSlot, state), std::uint32_t{5});
  { Store u = Store::attach(g_.name()); }
  file_->write(slot7 + offsetof(ProcessSlot, state), static_cast<std::uint32_t>(detail::SlotState::Live));
  file_->write(slot7 + offsetof(ProcessSlot, pid), std::int32_t{-4});
  EXPECT_EQ(t.recover(), 1U);

  // A name that names an entry past the table is no name.
  for (std::uint32_t i = 0; i < h_.name_slots; ++i) {
    std::uint64_t at = h_.names_offset + sizeof(NameSlot) * i;
    if (file_->read<std::uint32_t>(at + offsetof(NameSlot, state)) != 1) continue;
    file_->write(at + offsetof(NameSlot, index), h_.max_objects + 5);
    EXPECT_FALSE(t.lookup("text").has_value());
    file_->write(at + offsetof(NameSlot, index), index_of(text_));
    EXPECT_EQ(t.lookup("text"), text_);
  }
  file_->write(offsetof(Header, next_worker_id), std::uint32_t{0});
  Store u = Store::attach(g_.name());
  EXPECT_NE(u.myid(), 0U);
}

TEST_F(Hostile, a_stored_type_that_does_not_fit_its_bytes_is_corrupt_for_typed_reads) {
  file_->write(entry_at(scalar_, offsetof(Entry, elem_size)), std::uint32_t{4096});
  Store t = Store::attach(g_.name());
  View v = t.fetch(scalar_);
  EXPECT_EQ(v.size(), 4U) << "the bytes themselves are still readable, untyped";
  EXPECT_ERRC(v.as<int>(), Errc::Corrupt);
  EXPECT_ERRC(v.type(), Errc::Corrupt);
  EXPECT_ERRC(t.materialize<int>(scalar_), Errc::Corrupt);
  // An n-d array whose shape claims more elements than it has bytes.
  file_->write(entry_at(array_, offsetof(Entry, shape) + 8), std::uint64_t{1} << 40U);
  EXPECT_ERRC(t.fetch(array_).as_ndarray<double>(), Errc::Corrupt);
  EXPECT_ERRC(t.materialize<NdArray<double>>(array_), Errc::Corrupt);
  EXPECT_EQ(t.fetch(text_).as_string(), std::string(1000, 't')) << "the others are unaffected";
  // An observer lists the objects without tripping over them.
  AttachOptions o;
  o.observer = true;
  Store obs = Store::attach(g_.name(), o);
  EXPECT_EQ(obs.objects().size(), 3U);
}

// The allocator's state and the header's counters are derived: garbage in
// them is found by the first call that uses them, and rebuilt from the
// object table by the next locker.
TEST_F(Hostile, derived_state_is_rebuilt_not_trusted) {
  Store t = Store::attach(g_.name());
  SegmentInfo before = t.info();
  file_->fill(h_.alloc_offset, h_.alloc_bytes, 0xab);
  file_->write(offsetof(Header, free_bytes), std::uint64_t{123});
  file_->write(offsetof(Header, free_entries), std::uint64_t{999});
  file_->write(offsetof(Header, largest_free), std::uint64_t{1});
  file_->write(offsetof(Header, names_bound), std::uint32_t{0xffffffff});
  std::optional<RemoteRef> r;
  for (int attempt = 0; attempt < 3 && !r; ++attempt) {
    try {
      r = t.put(std::vector<int>(50000, 3));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::Corrupt) << e.what();
    }
  }
  ASSERT_TRUE(r.has_value()) << "the store never recovered from the damage";
  EXPECT_EQ(t.fetch(*r).as_span<int>()[49999], 3);
  t.erase(*r);
  SegmentInfo after = t.info();
  EXPECT_EQ(after.objects, before.objects);
  EXPECT_EQ(after.used, before.used);
  EXPECT_GE(after.largest_free, 200000U) << "the rebuilt free space takes the same object again";
  t.bind("another", scalar_);
  EXPECT_EQ(t.lookup("another"), scalar_);
  EXPECT_EQ(t.fetch(array_).as_ndarray<double>()(9, 19), 0.5);
}

TEST_F(Hostile, a_write_whose_writer_has_no_slot_is_rolled_back) {
  // An object left Writing by a slot that is not attached (a reap cut short).
  auto word = file_->read<std::uint64_t>(entry_at(text_, offsetof(Entry, word)));
  file_->write(entry_at(text_, offsetof(Entry, word)),
               detail::make_word(detail::EntryState::Writing, 9, detail::word_gen(word)));
  Store t = Store::attach(g_.name());
  std::uint64_t used = t.info().used;
  EXPECT_ERRC(t.fetch(text_, 10s), Errc::WorkerFailed);
  EXPECT_LT(t.info().used, used) << "its space was given back";
  t.erase(text_);
  EXPECT_EQ(t.info().objects, 2U);
}

TEST_F(Hostile, an_object_damaged_under_attached_processes_is_refused_and_its_space_never_reused) {
  Store t = Store::attach(g_.name());
  file_->write(entry_at(text_, offsetof(Entry, offset)), h_.capacity * 2);
  EXPECT_ERRC(t.fetch(text_), Errc::Corrupt);
  EXPECT_EQ(t.fetch(scalar_).as<int>(), 12345) << "the others are unaffected";
  // Erasing it must not hand its bogus extent to the allocator: the next
  // locker rebuilds the free space from the table instead.
  t.erase(text_);
  std::vector<RemoteRef> more;
  try {
    for (int i = 0; i < 1000; ++i) more.push_back(t.put(std::vector<char>(50000, 'b')));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::OutOfMemory) << e.what();
  }
  EXPECT_GT(more.size(), 100U);
  for (const RemoteRef& r : more) EXPECT_EQ(t.fetch(r).as_span<char>()[49999], 'b');
  EXPECT_EQ(t.fetch(scalar_).as<int>(), 12345);
  EXPECT_EQ(t.fetch(array_).as_ndarray<double>()(9, 19), 0.5);
}

TEST(HostilePath, something_else_at_a_segments_path_is_refused_without_blocking) {
  SegmentGuard g;
  std::string path = Store::path_of(g.name());
  AttachOptions observer;
  observer.observer = true;
  // A FIFO: opening it for reading would block until a writer came.
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  Child c([&] {
    try {
      Store::attach(g.name(), observer);
    } catch (const Error& e) {
      return e.code() == Errc::IncompatibleSegment ? 0 : 1;
    }
    return 2;
  });
  auto st = c.wait(20s);
  EXPECT_FALSE(st.timed_out) << "attach blocked on a FIFO";
  EXPECT_EQ(st.code, 0);
  EXPECT_ERRC(Store::attach(g.name()), Errc::IncompatibleSegment);
  ::unlink(path.c_str());
  // A symbolic link is not followed, and what it points to is untouched.
  SegmentGuard target;
  { Store s = Store::create(target.name(), small_options()); }
  ASSERT_EQ(::symlink(Store::path_of(target.name()).c_str(), path.c_str()), 0);
  EXPECT_ERRC(Store::attach(g.name()), Errc::IncompatibleSegment);
  EXPECT_ERRC(Store::attach(g.name(), observer), Errc::IncompatibleSegment);
  EXPECT_ERRC(Store::create(g.name(), small_options()), Errc::AlreadyExists);
  Store t = Store::attach(target.name());
  EXPECT_EQ(t.info().processes, 1U);
}

TEST(HostilePath, a_segment_file_every_user_can_write_is_refused) {
  SegmentGuard g;
  { Store s = Store::create(g.name(), small_options()); }
  ASSERT_EQ(::chmod(Store::path_of(g.name()).c_str(), 0666), 0);
  EXPECT_ERRC(Store::attach(g.name()), Errc::PermissionDenied);
  AttachOptions o;
  o.observer = true;
  EXPECT_ERRC(Store::attach(g.name(), o), Errc::PermissionDenied);
  ASSERT_EQ(::chmod(Store::path_of(g.name()).c_str(), 0600), 0);
  EXPECT_NO_THROW(Store::attach(g.name()));
}

}  // namespace
}  // namespace sealstore
