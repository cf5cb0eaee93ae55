// Who may use a segment: its owner by default, its group when asked for,
// nobody else. Run as root, children drop for good to another uid (nobody)
// with setresuid/setresgid and try what another user would.
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <cstdio>
#include <functional>
#include <string>

#include "sealstore/sealstore.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using test::Child;
using test::SegmentGuard;
using test::small_options;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr gid_t kOtherGroup = 65533;

// Exit codes of the children: 0 is success, these say what went wrong.
constexpr int kCannotDrop = 90;
constexpr int kWrongCode = 91;
constexpr int kNoError = 92;

// A child that becomes uid:gid (no supplementary groups), then runs fn.
int as_user(uid_t uid, gid_t gid, const std::function<int()>& fn) {
  if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) {
    return kCannotDrop;
  }
  if (::geteuid() != uid || ::getegid() != gid) return kCannotDrop;
  return fn();
}

// Runs op, which must throw exactly `code`.
int expect_code(Errc code, const std::function<void()>& op) {
  try {
    op();
  } catch (const Error& e) {
    if (e.code() == code) return 0;
    std::fprintf(stderr, "expected %s, got %s\n", std::string(to_string(code)).c_str(), e.what());
    return kWrongCode;
  }
  return kNoError;
}

int run_as(uid_t uid, gid_t gid, const std::function<int()>& fn) {
  Child c([&] { return as_user(uid, gid, fn); });
  Child::Status st = c.wait();
  return st.exited ? st.code : 128 + st.signal;
}

class AccessControl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to switch a child to another uid";
  }
};

TEST_F(AccessControl, another_user_gets_permission_denied_for_an_owner_only_segment) {
  SegmentGuard g;
  Store s = Store::create(g.name(), small_options());
  RemoteRef r = s.put(std::string("private"));
  struct stat st {};
  ASSERT_EQ(::stat(Store::path_of(g.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777U, 0600U);
  EXPECT_EQ(st.st_uid, 0U);

  AttachOptions observer;
  observer.observer = true;
  EXPECT_EQ(
      run_as(kNobody, kNogroup, [&] { return expect_code(Errc::PermissionDenied, [&] { Store::attach(g.name()); }); }),
      0);
  EXPECT_EQ(run_as(kNobody, kNogroup,
                   [&] { return expect_code(Errc::PermissionDenied, [&] { Store::attach(g.name(), observer); }); }),
            0);
  // Nor can it remove the segment from under its owner, or replace it.
  EXPECT_EQ(
      run_as(kNobody, kNogroup, [&] { return expect_code(Errc::PermissionDenied, [&] { Store::remove(g.name()); }); }),
      0);
  EXPECT_EQ(run_as(kNobody, kNogroup,
                   [&] { return expect_code(Errc::AlreadyExists, [&] { Store::create(g.name(), small_options()); }); }),
            0);
  EXPECT_TRUE(Store::exists(g.name()));
  EXPECT_EQ(s.fetch(r).as_string(), "private");
  EXPECT_EQ(s.processes().size(), 1U);
}

TEST_F(AccessControl, a_group_shared_segment_admits_its_group_and_no_one_else) {
  SegmentGuard g;
  // Created by a process whose group is nogroup, with the group bits asked for.
  RemoteRef r;
  {
    Child creator([&] {
      if (::setresgid(kNogroup, kNogroup, kNogroup) != 0) return kCannotDrop;
      CreateOptions o = small_options();
      o.mode = 0660;
      Store s = Store::create(g.name(), o);
      return 0;
    });
    ASSERT_EQ(creator.wait().code, 0);
  }
  struct stat st {};
  ASSERT_EQ(::stat(Store::path_of(g.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777U, 0660U);
  EXPECT_EQ(st.st_gid, kNogroup);
  Store owner = Store::attach(g.name());
  r = owner.put(std::vector<int>(1000, 8));
  std::string text = r.to_string();

  // A member of the group (not the owner) attaches, reads and writes.
  int code = run_as(kNobody, kNogroup, [&] {
    Store t = Store::attach(g.name());
    if (t.fetch(RemoteRef::parse(text)).as_span<int>()[999] != 8) return 1;
    RemoteRef mine = t.put(std::string("from the group"));
    t.bind("group", mine);
    return 0;
  });
  EXPECT_EQ(code, 0);
  auto mine = owner.lookup("group");
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(owner.fetch(*mine).as_string(), "from the group");
  // The same uid outside the group is refused.
  EXPECT_EQ(run_as(kNobody, kOtherGroup,
                   [&] { return expect_code(Errc::PermissionDenied, [&] { Store::attach(g.name()); }); }),
            0);
  EXPECT_EQ(owner.processes().size(), 1U) << "the group member detached; the refused one never attached";
}

// A segment file someone else owns may have been planted: its owner wrote
// every byte of it. A process attaches only to its own segments (or
// root's) unless it names the owner as trusted.
TEST_F(AccessControl, a_segment_file_owned_by_another_user_is_refused) {
  SegmentGuard g;
  { Store s = Store::create(g.name(), small_options()); }
  ASSERT_EQ(::chown(Store::path_of(g.name()).c_str(), kNobody, kNogroup), 0);
  try {
    Store::attach(g.name());
    ADD_FAILURE() << "root attached to a segment file owned by nobody";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::PermissionDenied) << e.what();
    EXPECT_NE(std::string(e.what()).find("owned by uid 65534"), std::string::npos) << e.what();
  }
  AttachOptions observer;
  observer.observer = true;
  EXPECT_NO_THROW(Store::attach(g.name(), observer)) << "an observer only reads, bounds-checked";
  AttachOptions trusting;
  trusting.trusted_owners = {kNobody};
  Store t = Store::attach(g.name(), trusting);
  EXPECT_EQ(t.processes().size(), 1U);
}

TEST_F(AccessControl, a_group_member_attaches_to_another_users_segment_only_if_it_trusts_the_owner) {
  SegmentGuard g;
  constexpr uid_t kMember = 65533;
  RemoteRef r;
  {
    Store s = Store::create(g.name(), [] {
      CreateOptions o = small_options();
      o.mode = 0660;
      return o;
    }());
    r = s.put(7);
  }
  ASSERT_EQ(::chown(Store::path_of(g.name()).c_str(), kNobody, kNogroup), 0);
  std::string text = r.to_string();
  EXPECT_EQ(
      run_as(kMember, kNogroup, [&] { return expect_code(Errc::PermissionDenied, [&] { Store::attach(g.name()); }); }),
      0);
  EXPECT_EQ(run_as(kMember, kNogroup,
                   [&] {
                     AttachOptions o;
                     o.trusted_owners = {kNobody};
                     Store t = Store::attach(g.name(), o);
                     return t.fetch(RemoteRef::parse(text)).as<int>() == 7 ? 0 : 1;
                   }),
            0);
}

TEST_F(AccessControl, segments_are_owner_only_whatever_the_umask) {
  SegmentGuard g1;
  SegmentGuard g2;
  mode_t old = ::umask(0);
  Store a = Store::create(g1.name(), small_options());
  CreateOptions o = small_options();
  o.mode = 0640;
  Store b = Store::create(g2.name(), o);
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(Store::path_of(g1.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777U, 0600U);
  ASSERT_EQ(::stat(Store::path_of(g2.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777U, 0640U);
  // A group that may only read cannot attach to change the store, but may observe it.
  EXPECT_EQ(::chown(Store::path_of(g2.name()).c_str(), static_cast<uid_t>(-1), kNogroup), 0);
  EXPECT_EQ(
      run_as(kNobody, kNogroup, [&] { return expect_code(Errc::PermissionDenied, [&] { Store::attach(g2.name()); }); }),
      0);
  EXPECT_EQ(run_as(kNobody, kNogroup,
                   [&] {
                     AttachOptions obs;
                     obs.observer = true;
                     Store t = Store::attach(g2.name(), obs);
                     return t.info().processes == 1 ? 0 : 1;
                   }),
            0);
}

}  // namespace
}  // namespace sealstore
