#include "registry/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string_view>

namespace sealstore::detail {

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::array<char, 64> path{};
  std::snprintf(path.data(), path.size(), "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path.data(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::array<char, 1024> buf{};
  ssize_t n = ::read(fd, buf.data(), buf.size() - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  std::string_view text(buf.data(), static_cast<std::size_t>(n));
  // The command name (field 2) is in parentheses and may contain spaces or
  // parentheses: the fields after it start after the last ')'.
  auto close_paren = text.rfind(')');
  if (close_paren == std::string_view::npos || close_paren + 2 >= text.size()) return std::nullopt;
  text.remove_prefix(close_paren + 2);
  ProcStat st;
  int field = 3;
  while (!text.empty()) {
    auto sp = text.find(' ');
    std::string_view tok = text.substr(0, sp);
    std::uint64_t v = 0;
    if (field == 3) {
      st.state = tok.empty() ? '?' : tok[0];
    } else if (field == 14 || field == 15 || field == 22) {
      std::from_chars(tok.data(), tok.data() + tok.size(), v);
      if (field == 14) st.utime = v;
      if (field == 15) st.stime = v;
      if (field == 22) {
        st.start_time = v;
        break;
      }
    }
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
    ++field;
  }
  return st;
}

namespace {

// Without a pidfd: a zombie leader still lists its live threads (and
// itself) under /proc/PID/task; a process whose threads are all gone lists
// at most the leader.
bool zombie_has_threads(pid_t pid) {
  std::array<char, 64> path{};
  std::snprintf(path.data(), path.size(), "/proc/%d/task", static_cast<int>(pid));
  DIR* d = ::opendir(path.data());
  if (d == nullptr) return errno != ENOENT;  // cannot tell: alive
  int tasks = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++tasks;
  }
  ::closedir(d);
  return tasks > 1;
}

}  // namespace

bool process_alive(pid_t pid, std::uint64_t start_time) {
  if (pid <= 0) return false;
  // A pidfd taken first pins down which process the number means now; the
  // start time read after it says whether that is ours.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0 && errno == ESRCH) return false;
  auto st = read_proc_stat(pid);
  if (!st) {
    if (pidfd >= 0) ::close(pidfd);
    // Dead only if no process has that pid: /proc can fail us for other
    // reasons (out of file descriptors, mounted with hidepid).
    return ::kill(pid, 0) == 0 || errno == EPERM;
  }
  if (st->start_time != start_time) {
    if (pidfd >= 0) ::close(pidfd);
    return false;
  }
  if (pidfd >= 0) {
    // Readable once the whole thread group has exited: a main thread that
    // called pthread_exit() while others run does not make it readable.
    pollfd p{pidfd, POLLIN, 0};
    int n = ::poll(&p, 1, 0);
    ::close(pidfd);
    return !(n == 1 && (p.revents & POLLIN) != 0);
  }
  if (st->state == 'Z' || st->state == 'X' || st->state == 'x') return zombie_has_threads(pid);
  return true;
}

std::uint64_t own_pid_namespace() {
  struct stat st {};
  if (::stat("/proc/self/ns/pid", &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}

namespace {

struct flock byte_range(short type, std::uint64_t byte) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(byte);
  fl.l_len = 1;
  return fl;
}

}  // namespace

bool lock_byte(int fd, std::uint64_t byte) {
  struct flock fl = byte_range(F_WRLCK, byte);
  if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return true;
  return !(errno == EAGAIN || errno == EACCES);
}

void unlock_byte(int fd, std::uint64_t byte) noexcept {
  struct flock fl = byte_range(F_UNLCK, byte);
  ::fcntl(fd, F_OFD_SETLK, &fl);
}

ByteLock byte_lock_state(int fd, std::uint64_t byte) {
  struct flock fl = byte_range(F_WRLCK, byte);
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return ByteLock::Unknown;
  return fl.l_type == F_UNLCK ? ByteLock::Free : ByteLock::Held;
}

std::uint64_t unix_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace sealstore::detail
