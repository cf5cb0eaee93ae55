// Handles inherited across fork belong to the parent's attachment: in the
// child they refuse to work and their destructors leave the parent's
// writes and pins alone, however the child was made (fork(), _Fork(), a raw
// fork system call: the last two run no pthread_atfork handlers).
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <cstring>
#include <functional>

#include "sealstore/sealstore.hpp"
#include "support/errc.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

using test::Child;
using test::SegmentGuard;
using test::small_options;

// Runs fn in a child made by `how`, returns its exit code (or 128 + signal).
int in_child(const std::function<pid_t()>& how, const std::function<int()>& fn) {
  pid_t pid = how();
  if (pid == 0) ::_exit(fn());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

pid_t plain_fork() { return ::fork(); }
pid_t raw_fork() { return static_cast<pid_t>(::syscall(SYS_fork)); }
pid_t underscore_fork() { return ::_Fork(); }

struct ForkKind {
  const char* name;
  pid_t (*make)();
};
const ForkKind kForks[] = {{"fork", plain_fork}, {"raw fork system call", raw_fork}, {"_Fork", underscore_fork}};

// Exit code: 0 if op throws InvalidArgument.
int refused(const std::function<void()>& op) {
  try {
    op();
  } catch (const Error& e) {
    return e.code() == Errc::InvalidArgument ? 0 : 1;
  }
  return 2;
}

TEST(Fork, a_child_cannot_seal_its_parents_writer) {
  for (const ForkKind& k : kForks) {
    SCOPED_TRACE(k.name);
    SegmentGuard g;
    Store s = Store::create(g.name(), small_options());
    Writer w = s.create_writer(64);
    std::memset(w.bytes().data(), 'p', 32);
    int code = in_child(k.make, [&] { return refused([&] { std::move(w).seal(); }); });
    EXPECT_EQ(code, 0) << "the child sealed (or failed to refuse) the parent's writer";
    EXPECT_EQ(s.objects().at(0).state, ObjectState::Writing) << "the parent's object is still being written";
    std::memset(w.bytes().data() + 32, 'p', 32);  // the parent finishes its object
    RemoteRef r = std::move(w).seal();
    View v = s.fetch(r);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.bytes().data()), 64), std::string(64, 'p'));
  }
}

TEST(Fork, a_view_dropped_in_a_child_leaves_the_parents_pin) {
  for (const ForkKind& k : kForks) {
    SCOPED_TRACE(k.name);
    SegmentGuard g;
    Store s = Store::create(g.name(), small_options());
    RemoteRef r = s.put(std::vector<int>(1000, 4));
    View v = s.fetch(r);
    int code = in_child(k.make, [&] {
      v.reset();
      return 0;
    });
    ASSERT_EQ(code, 0);
    EXPECT_EQ(s.processes().at(0).pinned_objects, 1U) << "the child's reset cleared the parent's pin";
    s.erase(r);
    ASSERT_EQ(s.objects().size(), 1U);
    EXPECT_EQ(s.objects().at(0).state, ObjectState::ErasePending) << "the erase did not wait for the parent's view";
    RemoteRef other = s.put(std::vector<int>(1000, 9));  // would take the space if it were freed
    EXPECT_EQ(v.as_span<int>()[999], 4);
    v.reset();
    EXPECT_EQ(s.info().objects, 1U);
    s.erase(other);
  }
}

TEST(Fork, a_store_used_in_a_child_refuses_with_a_clear_error) {
  for (const ForkKind& k : kForks) {
    SCOPED_TRACE(k.name);
    SegmentGuard g;
    Store s = Store::create(g.name(), small_options());
    RemoteRef r = s.put(5);
    int code = in_child(k.make, [&] {
      try {
        s.fetch(r);
      } catch (const Error& e) {
        bool clear = e.code() == Errc::InvalidArgument && std::strstr(e.what(), "attach again") != nullptr;
        return clear ? 0 : 1;
      }
      return 2;
    });
    EXPECT_EQ(code, 0);
    EXPECT_EQ(s.fetch(r).as<int>(), 5);
  }
}

}  // namespace
}  // namespace sealstore
