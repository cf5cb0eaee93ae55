#include "support/test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sealstore::test {

namespace {
std::atomic<int> g_counter{0};

std::string test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string n = info != nullptr ? std::string(info->test_suite_name()) + "." + info->name() : "t";
  for (char& c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) c = '_';
  }
  if (n.size() > 120) n.resize(120);
  return n;
}
}  // namespace

SegmentGuard::SegmentGuard() : SegmentGuard(std::string()) {}

SegmentGuard::SegmentGuard(const std::string& suffix)
    : name_("test-" + test_name() + "-" + std::to_string(::getpid()) + "-" + std::to_string(g_counter++) + suffix) {
  Store::remove(name_);
}

SegmentGuard::~SegmentGuard() {
  try {
    Store::remove(name_);
  } catch (...) {  // NOLINT(bugprone-empty-catch): best effort in a destructor
  }
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/sealstore-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern + " failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::size_t TempDir::files() const {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(path_, ec)) n += e.is_regular_file() ? 1U : 0U;
  return n;
}

CreateOptions small_options(std::uint64_t capacity) {
  CreateOptions o;
  o.capacity = capacity;
  o.max_objects = 1024;
  o.max_names = 64;
  return o;
}

Pipe::Pipe() {
  if (::pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
}
Pipe::~Pipe() {
  ::close(fds_[0]);
  ::close(fds_[1]);
}
void Pipe::send(char c) const {
  if (::write(fds_[1], &c, 1) != 1) std::perror("pipe write");
}
char Pipe::receive(std::chrono::milliseconds timeout) const {
  pollfd p{fds_[0], POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return '\0';
  char c = '\0';
  if (::read(fds_[0], &c, 1) != 1) return '\0';
  return c;
}

Child::Child(const std::function<int()>& fn) {
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int code = 99;
    try {
      code = fn();
      if (::testing::Test::HasFailure()) code = 99;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: uncaught exception: %s\n", ::getpid(), e.what());
    } catch (...) {
      std::fprintf(stderr, "child %d: uncaught exception\n", ::getpid());
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd_ < 0) throw std::runtime_error("pidfd_open failed");
}

Child::~Child() {
  if (!reaped_) {
    kill(SIGKILL);
    siginfo_t info{};
    ::waitid(P_PIDFD, static_cast<id_t>(pidfd_), &info, WEXITED);
  }
  ::close(pidfd_);
}

void Child::kill(int sig) const {
  if (!reaped_) ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
}

Child::Status Child::wait(std::chrono::milliseconds timeout) {
  Status s;
  if (reaped_) return s;
  pollfd p{pidfd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    s.timed_out = true;
    kill(SIGKILL);
  }
  siginfo_t info{};
  ::waitid(P_PIDFD, static_cast<id_t>(pidfd_), &info, WEXITED);
  reaped_ = true;
  if (info.si_code == CLD_EXITED) {
    s.exited = true;
    s.code = info.si_status;
  } else {
    s.signal = info.si_status;
  }
  return s;
}

std::uint64_t smaps_rollup_field(const char* field) {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      std::istringstream ss(line.substr(key.size()));
      std::uint64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

std::uint64_t private_bytes() { return smaps_rollup_field("Private_Clean") + smaps_rollup_field("Private_Dirty"); }

std::uint64_t pmd_mapped_bytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path);
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool ours = false;
  std::uint64_t total = 0;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string first;
    ss >> first;
    if (first.find('-') != std::string::npos && first.back() != ':') {
      // A mapping's header: range, perms, offset, dev, inode, path.
      std::string perms;
      std::string offset;
      std::string dev;
      std::uint64_t inode = 0;
      ss >> perms >> offset >> dev >> inode;
      ours = inode == st.st_ino;
    } else if (ours && (first == "ShmemPmdMapped:" || first == "FilePmdMapped:")) {
      std::uint64_t kb = 0;
      ss >> kb;
      total += kb * 1024;
    }
  }
  return total;
}

bool tmpfs_collapses(const std::string& directory) {
  constexpr std::size_t kHuge = std::size_t{2} << 20U;
  constexpr int kCollapse = 25;  // MADV_COLLAPSE, which glibc 2.36 does not name
  int fd = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = false;
  void* reserve = ::mmap(nullptr, 2 * kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (::ftruncate(fd, kHuge) == 0 && reserve != MAP_FAILED) {
    auto at = (reinterpret_cast<std::uintptr_t>(reserve) + kHuge - 1) / kHuge * kHuge;
    void* want = reinterpret_cast<void*>(at);  // NOLINT(performance-no-int-to-ptr)
    void* p = ::mmap(want, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    ok = p != MAP_FAILED && ::madvise(p, kHuge, MADV_POPULATE_WRITE) == 0 && ::madvise(p, kHuge, kCollapse) == 0;
  }
  if (reserve != MAP_FAILED) ::munmap(reserve, 2 * kHuge);
  ::close(fd);
  return ok;
}

}  // namespace sealstore::test
