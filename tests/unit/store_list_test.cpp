// Store::list: the segments in a directory, by their backing files.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <algorithm>
#include <filesystem>
#include <string>

#include "sealstore/sealstore.hpp"
#include "support/test_support.hpp"

namespace sealstore {
namespace {

// A private directory on /dev/shm (tmpfs), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string t = "/dev/shm/sealstore-list-test-XXXXXX";
    if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(StoreList, lists_segments_sorted_and_skips_other_files) {
  TempDir dir;
  CreateOptions o = test::small_options(1 << 20);
  o.directory = dir.path();
  Store b = Store::create("beta", o);
  Store a = Store::create("alpha", o);
  // Not segments: another prefix, an invalid name, a directory, a symlink.
  ::close(::open((dir.path() + "/other.file").c_str(), O_CREAT | O_WRONLY, 0600));
  ::close(::open((dir.path() + "/sealstore..hidden").c_str(), O_CREAT | O_WRONLY, 0600));
  ::mkdir((dir.path() + "/sealstore.adir").c_str(), 0700);
  ASSERT_EQ(::symlink((dir.path() + "/sealstore.alpha").c_str(), (dir.path() + "/sealstore.link").c_str()), 0);
  EXPECT_EQ(Store::list(dir.path()), (std::vector<std::string>{"alpha", "beta"}));
  EXPECT_EQ(Store::list(dir.path() + "/"), (std::vector<std::string>{"alpha", "beta"}));
}

TEST(StoreList, an_empty_directory_has_no_segments) {
  TempDir dir;
  EXPECT_TRUE(Store::list(dir.path()).empty());
}

TEST(StoreList, a_missing_directory_is_invalid_argument_naming_it) {
  TempDir dir;
  std::string missing = dir.path() + "/nope";
  try {
    Store::list(missing);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

TEST(StoreList, an_unreadable_directory_is_permission_denied) {
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0), 0);
  test::Child c([&] {
    // Root reads any directory: run as nobody to meet the mode bits.
    if (::geteuid() == 0 && (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)) {
      return 2;
    }
    try {
      Store::list(dir.path());
    } catch (const Error& e) {
      return e.code() == Errc::PermissionDenied ? 0 : 1;
    }
    return 3;
  });
  auto st = c.wait();
  ::chmod(dir.path().c_str(), 0700);
  EXPECT_TRUE(st.exited && st.code == 0) << "code " << st.code << " signal " << st.signal;
}

TEST(StoreList, the_default_directory_lists_a_new_segment) {
  test::SegmentGuard g;
  Store s = Store::create(g.name(), test::small_options(1 << 20));
  auto names = Store::list();
  EXPECT_NE(std::find(names.begin(), names.end(), g.name()), names.end());
}

}  // namespace
}  // namespace sealstore
