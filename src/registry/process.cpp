#include "registry/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <array>
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

bool process_alive(pid_t pid, std::uint64_t start_time) {
  if (pid <= 0) return false;
  auto st = read_proc_stat(pid);
  if (!st) {
    // Dead only if no process has that pid: /proc can fail us for other
    // reasons (out of file descriptors, mounted with hidepid), and reaping a
    // live process would free memory it is still using.
    return ::kill(pid, 0) == 0 || errno == EPERM;
  }
  if (st->state == 'Z' || st->state == 'X' || st->state == 'x') return false;
  return st->start_time == start_time;
}

std::uint64_t unix_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace sealstore::detail
