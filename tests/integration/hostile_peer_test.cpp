// A peer that can write the segment rewrites its header and tables while a
// victim is attached and working. The victim may get Corrupt (or NotFound)
// errors; it must never read or write outside its mappings of the segment,
// crash, or hang. Each victim runs in a child process, so a crash is a test
// failure, not the end of the test binary.
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
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
using test::Child;
using test::Pipe;
using test::SegmentFile;
using test::SegmentGuard;
using test::small_options;

std::uint32_t index_of(const RemoteRef& r) { return static_cast<std::uint32_t>(r.id() & 0xffffffffU); }

// Exit codes of the victims.
constexpr int kOk = 0;
constexpr int kWrongResult = 1;
constexpr int kNoSignal = 2;

// A victim attached to segment `name` waits until the peer has done its
// damage, then runs `work` (its return value is the exit code).
class Victim {
 public:
  Victim(const std::string& name, std::function<int(Store&)> work)
      : child_([this, name, work = std::move(work)] {
          Store t = Store::attach(name);
          attached_.send();
          if (damaged_.receive() != 'x') return kNoSignal;
          return work(t);
        }) {
    if (attached_.receive() != 'x') ADD_FAILURE() << "the victim did not attach";
  }
  // Lets the victim go on, and waits for it to end.
  Child::Status run() {
    damaged_.send();
    return child_.wait(60s);
  }

 private:
  Pipe attached_;
  Pipe damaged_;
  Child child_;
};

std::string describe(const Child::Status& st) {
  if (st.timed_out) return "hung";
  if (st.exited) return "exited with code " + std::to_string(st.code);
  return "killed by signal " + std::to_string(st.signal);
}

// Returns kOk if op throws exactly `code`.
int expect_code(Errc code, const std::function<void()>& op) {
  try {
    op();
  } catch (const Error& e) {
    if (e.code() == code) return kOk;
    std::fprintf(stderr, "expected %s, got %s\n", std::string(to_string(code)).c_str(), e.what());
    return kWrongResult;
  }
  std::fprintf(stderr, "expected %s, got no error\n", std::string(to_string(code)).c_str());
  return kWrongResult;
}

class HostilePeer : public ::testing::Test {
 protected:
  void SetUp() override {
    owner_.emplace(Store::create(g_.name(), small_options()));
    array_ = owner_->put(NdArray<double>({4}, 2.5));
    text_ = owner_->put(std::string(1000, 't'));
    file_ = std::make_unique<SegmentFile>(g_.name());
    h_ = file_->read<Header>(0);
  }
  std::uint64_t entry_at(const RemoteRef& r, std::size_t field) const {
    return h_.entries_offset + sizeof(Entry) * index_of(r) + field;
  }
  void expect_ok(Victim& v) {
    auto st = v.run();
    EXPECT_TRUE(st.exited && st.code == kOk) << "the victim " << describe(st);
  }

  SegmentGuard g_;
  std::optional<Store> owner_;
  RemoteRef array_, text_;
  std::unique_ptr<SegmentFile> file_;
  Header h_{};
};

TEST_F(HostilePeer, a_rewritten_pin_table_offset_does_not_move_the_victims_pins) {
  Victim v(g_.name(), [&](Store& t) {
    View view = t.fetch(text_);
    bool seen = false;
    for (const auto& p : t.processes()) seen = seen || (p.id == t.myid() && p.pinned_objects == 1);
    return seen && view.as_string() == std::string(1000, 't') ? kOk : kWrongResult;
  });
  // A terabyte past the mapping: a victim that believes it pins there.
  file_->write(offsetof(Header, pins_offset), std::uint64_t{1} << 40U);
  expect_ok(v);
}

TEST_F(HostilePeer, a_larger_object_count_does_not_reach_past_the_victims_tables) {
  // A fake sealed entry past the real table, where the larger count would
  // put entry 5000.
  RemoteRef fake(h_.segment_tag, (std::uint64_t{1} << 32U) | 5000U, 1, 1);
  Victim v(g_.name(), [&](Store& t) { return expect_code(Errc::NotFound, [&] { t.fetch(fake, 1s); }); });
  file_->write(offsetof(Header, max_objects), std::uint32_t{1} << 24U);
  std::uint64_t at = h_.entries_offset + sizeof(Entry) * 5000;
  ASSERT_LT(at + sizeof(Entry), h_.file_size);
  file_->write(at + offsetof(Entry, word), detail::make_word(detail::EntryState::Sealed, detail::kNoOwner, 1));
  file_->write(at + offsetof(Entry, size), std::uint64_t{64});
  expect_ok(v);
}

TEST_F(HostilePeer, a_larger_capacity_does_not_let_a_view_leave_the_data_region) {
  Victim v(g_.name(), [&](Store& t) { return expect_code(Errc::Corrupt, [&] { t.fetch(text_).bytes()[0]; }); });
  file_->write(offsetof(Header, capacity), std::uint64_t{1} << 42U);
  file_->write(entry_at(text_, offsetof(Entry, offset)), std::uint64_t{1} << 41U);
  expect_ok(v);
}

TEST_F(HostilePeer, a_larger_name_table_does_not_send_lookups_past_it) {
  Victim v(g_.name(), [&](Store& t) {
    for (int i = 0; i < 100; ++i) {
      if (t.lookup("name-" + std::to_string(i))) return kWrongResult;
    }
    return kOk;
  });
  file_->write(offsetof(Header, name_slots), std::uint32_t{1} << 30U);
  expect_ok(v);
}

TEST_F(HostilePeer, garbage_in_the_allocator_is_corrupt_never_a_wild_write) {
  for (std::uint32_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE(seed);
    Victim v(g_.name(), [&](Store& t) {
      // Every call either works or says Corrupt; the victim goes on.
      int corrupt = 0;
      for (int i = 0; i < 200; ++i) {
        try {
          RemoteRef r = t.put(std::vector<char>(64 + 200 * static_cast<std::size_t>(i % 7), 'v'));
          if (i % 2 == 0) t.erase(r);
        } catch (const Error& e) {
          if (e.code() != Errc::Corrupt && e.code() != Errc::OutOfMemory) {
            std::fprintf(stderr, "unexpected: %s\n", e.what());
            return kWrongResult;
          }
          ++corrupt;
        }
      }
      std::fprintf(stderr, "%d calls said Corrupt\n", corrupt);
      return t.fetch(text_).as_string() == std::string(1000, 't') ? kOk : kWrongResult;
    });
    std::mt19937_64 rng(seed);
    std::vector<unsigned char> garbage(h_.alloc_bytes);
    for (auto& b : garbage) b = static_cast<unsigned char>(rng());
    file_->write_bytes(h_.alloc_offset, garbage);
    expect_ok(v);
  }
}

// A lock word a peer wrote, naming a live process that is not locking (its
// slot claims no acquisition, or not that one): a locker takes it over
// after a few slices instead of waiting on it for ever.
TEST_F(HostilePeer, a_lock_word_naming_a_live_process_that_does_not_hold_it_is_taken_over) {
  // holder = the owner's slot 0 (+1); the owner is alive and not locking.
  for (std::uint32_t word : {std::uint32_t{1} | (77U << 9U), std::uint32_t{1}}) {
    SCOPED_TRACE(word);
    Victim v(g_.name(), [&](Store& t) {
      auto start = std::chrono::steady_clock::now();
      t.bind("after", text_);  // takes the lock
      auto took = std::chrono::steady_clock::now() - start;
      std::fprintf(stderr, "took the lock in %lld ms\n",
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
      t.unbind("after");
      return took < 5s && t.info().lock_repairs >= 1 ? kOk : kWrongResult;
    });
    std::vector<unsigned char> bytes(sizeof word);
    std::memcpy(bytes.data(), &word, sizeof word);
    file_->write_bytes(offsetof(Header, lock_word), bytes);
    expect_ok(v);
  }
}

// What a fetch returns is what was sealed when it pinned: a peer that
// rewrites the stored type afterwards cannot make the victim index past
// the object.
TEST_F(HostilePeer, a_type_rewritten_after_the_fetch_does_not_widen_the_view) {
  Pipe fetched;
  Pipe changed;
  Child c([&] {
    Store t = Store::attach(g_.name());
    View view = t.fetch(array_);
    fetched.send();
    if (changed.receive() != 'x') return kNoSignal;
    NdView<double> a = view.as_ndarray<double>();
    if (a.extent(0) != 4 || view.size() != 32) return kWrongResult;
    int r = expect_code(Errc::InvalidArgument, [&] { (void)a.at(1000000); });
    if (r != kOk) return r;
    return view.type().shape[0] == 4 && view.type().rank == 1 && a(3) == 2.5 ? kOk : kWrongResult;
  });
  ASSERT_EQ(fetched.receive(), 'x');
  file_->write(entry_at(array_, offsetof(Entry, shape)), std::uint64_t{1} << 20U);
  file_->write(entry_at(array_, offsetof(Entry, size)), std::uint64_t{8} << 20U);
  changed.send();
  auto st = c.wait(60s);
  EXPECT_TRUE(st.exited && st.code == kOk) << "the victim " << describe(st);
}

}  // namespace
}  // namespace sealstore
