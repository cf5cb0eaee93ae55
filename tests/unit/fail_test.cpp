// Store::fail: a ref filled with a failure instead of a value.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <string>
#include <thread>

#include "sealstore/sealstore.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::SegmentGuard;
using test::small_options;

TEST(Fail, fetch_of_a_failed_ref_throws_worker_failed_with_the_reason) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref(2);
  s.fail(r, "the disk caught fire");
  std::string msg;
  EXPECT_ERRC_MSG(s.fetch(r), Errc::WorkerFailed, msg);
  EXPECT_NE(msg.find("the disk caught fire"), std::string::npos) << msg;
  EXPECT_NE(msg.find(r.to_string()), std::string::npos) << msg;
  EXPECT_ERRC_MSG(s.try_fetch(r), Errc::WorkerFailed, msg);
  EXPECT_ERRC_MSG(s.materialize<std::string>(r), Errc::WorkerFailed, msg);
  auto objects = s.objects();
  ASSERT_EQ(objects.size(), 1U);
  EXPECT_EQ(objects[0].state, ObjectState::Abandoned);
  EXPECT_EQ(objects[0].size, std::string("the disk caught fire").size());
}

TEST(Fail, a_fetch_waiting_on_the_ref_wakes_with_worker_failed) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  std::string msg;
  std::thread waiter([&] {
    try {
      s.fetch(r, 30s);
      msg = "no error";
    } catch (const Error& e) {
      msg = std::string(to_string(e.code())) + " " + e.what();
    }
  });
  while (s.objects().at(0).waiters == 0) std::this_thread::yield();
  s.fail(r, "gave up");
  waiter.join();
  EXPECT_EQ(msg.rfind("WorkerFailed", 0), 0U) << msg;
  EXPECT_NE(msg.find("gave up"), std::string::npos) << msg;
}

TEST(Fail, a_sealed_ref_cannot_be_failed_and_is_unchanged) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  s.put(r, 42);
  std::string msg;
  EXPECT_ERRC_MSG(s.fail(r, "too late"), Errc::AlreadySealed, msg);
  EXPECT_NE(msg.find(r.to_string()), std::string::npos) << msg;
  EXPECT_EQ(s.fetch(r).as<int>(), 42);
}

TEST(Fail, a_failed_ref_cannot_be_filled_or_failed_again) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  s.fail(r, "first");
  std::string msg;
  EXPECT_ERRC_MSG(s.put(r, 1), Errc::AlreadySealed, msg);
  EXPECT_ERRC_MSG(s.fail(r, "second"), Errc::AlreadySealed, msg);
  EXPECT_ERRC_MSG(s.fetch(r), Errc::WorkerFailed, msg);
  EXPECT_NE(msg.find("first"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("second"), std::string::npos) << msg;
}

TEST(Fail, bad_refs_are_rejected) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::string msg;
  EXPECT_ERRC_MSG(s.fail(RemoteRef(), "x"), Errc::InvalidArgument, msg);
  RemoteRef r = s.make_ref();
  s.erase(r);
  EXPECT_ERRC_MSG(s.fail(r, "x"), Errc::NotFound, msg);
  RemoteRef other(s.info().segment_tag ^ 1U, r.id(), 1, 1);
  EXPECT_ERRC_MSG(s.fail(other, "x"), Errc::NotFound, msg);
}

TEST(Fail, erasing_a_failed_ref_gives_its_space_back) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  std::uint64_t used = s.info().used;
  RemoteRef r = s.make_ref();
  s.fail(r, std::string(1000, 'r'));
  EXPECT_EQ(s.info().used, used + 1024);
  s.erase(r);
  EXPECT_EQ(s.info().used, used);
  EXPECT_EQ(s.info().objects, 0U);
  std::string msg;
  EXPECT_ERRC_MSG(s.fetch(r), Errc::NotFound, msg);
}

TEST(Fail, a_long_reason_is_cut_to_4_kib) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  s.fail(r, std::string(10000, 'z'));
  EXPECT_EQ(s.objects().at(0).size, 4096U);
}

TEST(Fail, an_empty_reason_still_fails_the_ref) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  s.fail(r, "");
  std::string msg;
  EXPECT_ERRC_MSG(s.fetch(r), Errc::WorkerFailed, msg);
  EXPECT_NE(msg.find("failed by worker 1"), std::string::npos) << msg;
}

TEST(Fail, a_ref_being_filled_by_a_live_writer_cannot_be_failed) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  Writer w = s.create_writer(r, 8);
  std::string msg;
  EXPECT_ERRC_MSG(s.fail(r, "x"), Errc::AlreadySealed, msg);
  std::move(w).abort();
  s.fail(r, "after the abort");
  EXPECT_ERRC_MSG(s.fetch(r), Errc::WorkerFailed, msg);
}

TEST(Fail, a_ref_whose_writer_died_can_be_failed_with_a_better_reason) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.make_ref();
  std::uint64_t used = s.info().used;
  test::Pipe writing;
  Child c([&] {
    Store t = Store::attach(g.name());
    Writer w = t.create_writer(r, 4096);
    writing.send();
    for (;;) ::pause();
    return 0;
  });
  ASSERT_EQ(writing.receive(), 'x');
  c.kill(SIGKILL);
  auto st = c.wait();
  ASSERT_EQ(st.signal, SIGKILL);
  // Not reaped yet: the entry is still Writing in the dead process's slot.
  s.fail(r, "the filler was killed");
  std::string msg;
  EXPECT_ERRC_MSG(s.fetch(r), Errc::WorkerFailed, msg);
  EXPECT_NE(msg.find("the filler was killed"), std::string::npos) << msg;
  s.recover();
  EXPECT_EQ(s.info().used, used + 64) << "the dead writer's 4096 bytes are released; the reason holds 64";
  // Reaped first, then failed: the reason replaces the generic one.
  RemoteRef r2 = s.make_ref();
  Child c2([&] {
    Store t = Store::attach(g.name());
    Writer w = t.create_writer(r2, 4096);
    writing.send();
    for (;;) ::pause();
    return 0;
  });
  ASSERT_EQ(writing.receive(), 'x');
  c2.kill(SIGKILL);
  c2.wait();
  s.recover();
  EXPECT_ERRC_MSG(s.fetch(r2), Errc::WorkerFailed, msg);
  EXPECT_NE(msg.find("died before sealing"), std::string::npos) << msg;
  s.fail(r2, "killed by SIGKILL");
  EXPECT_ERRC_MSG(s.fetch(r2), Errc::WorkerFailed, msg);
  EXPECT_NE(msg.find("killed by SIGKILL"), std::string::npos) << msg;
}

}  // namespace
}  // namespace sealstore
