#include "proc_memory.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <string_view>
#include <system_error>

namespace sealstore::memstat {

namespace {

// The whole of a /proc file. nullopt when the process (or file) is gone;
// throws on other errors so that "no access" is not mistaken for "dead".
std::optional<std::string> read_proc_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ESRCH) return std::nullopt;
    throw std::system_error(errno, std::generic_category(), path);
  }
  std::string out;
  std::array<char, 65536> buf{};
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      if (err == ESRCH) return std::nullopt;
      throw std::system_error(err, std::generic_category(), path);
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

template <class T>
bool parse_number(std::string_view s, T& out, int base = 10) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::string_view next_token(std::string_view& s) {
  std::size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) {
    s = {};
    return {};
  }
  s.remove_prefix(b);
  std::size_t e = s.find_first_of(" \t");
  std::string_view tok = s.substr(0, e);
  s.remove_prefix(e == std::string_view::npos ? s.size() : e);
  return tok;
}

// "fe:00" -> (0xfe, 0x00)
bool parse_dev(std::string_view s, std::uint32_t& major_out, std::uint32_t& minor_out) {
  auto colon = s.find(':');
  return colon != std::string_view::npos && parse_number(s.substr(0, colon), major_out, 16) &&
         parse_number(s.substr(colon + 1), minor_out, 16);
}

struct SegmentMapping {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint64_t file_offset = 0;
  std::uint64_t rss = 0;
};

// Marks the pages of the mapping that pagemap says are present. False if
// pagemap cannot be read.
bool mark_present(int pagemap_fd, const SegmentMapping& m, std::uint64_t psize, ResidentPages& pages) {
  constexpr std::uint64_t kPresent = std::uint64_t{1} << 63U;
  constexpr std::size_t kChunk = 8192;  // entries per read
  std::vector<std::uint64_t> entries(kChunk);
  std::uint64_t first = m.start / psize;
  std::uint64_t count = (m.end - m.start) / psize;
  std::uint64_t file_page = m.file_offset / psize;
  for (std::uint64_t done = 0; done < count;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, count - done));
    auto offset = static_cast<off_t>((first + done) * sizeof(std::uint64_t));
    ssize_t got = ::pread(pagemap_fd, entries.data(), n * sizeof(std::uint64_t), offset);
    if (got <= 0 || static_cast<std::size_t>(got) % sizeof(std::uint64_t) != 0) return false;
    std::size_t k = static_cast<std::size_t>(got) / sizeof(std::uint64_t);
    for (std::size_t i = 0; i < k; ++i) {
      if ((entries[i] & kPresent) != 0) pages.set(file_page + done + i);
    }
    done += k;
  }
  return true;
}

}  // namespace

std::uint64_t page_size() {
  static const auto size = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::optional<FileId> file_id(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{major(st.st_dev), minor(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

ResidentPages::ResidentPages(std::uint64_t file_size)
    : page_size_(page_size()),
      npages_((file_size + page_size_ - 1) / page_size_),
      bits_(static_cast<std::size_t>((npages_ + 63) / 64), 0) {}

void ResidentPages::set(std::uint64_t page) noexcept {
  if (page < npages_) bits_[static_cast<std::size_t>(page / 64)] |= std::uint64_t{1} << (page % 64);
}

void ResidentPages::merge(const ResidentPages& other) noexcept {
  if (bits_.size() < other.bits_.size()) {
    bits_.resize(other.bits_.size(), 0);
    npages_ = other.npages_;
  }
  for (std::size_t i = 0; i < other.bits_.size(); ++i) bits_[i] |= other.bits_[i];
}

std::uint64_t ResidentPages::pages() const noexcept {
  std::uint64_t n = 0;
  for (auto w : bits_) n += static_cast<std::uint64_t>(std::popcount(w));
  return n;
}

std::uint64_t ResidentPages::bytes() const noexcept { return pages() * page_size_; }

std::optional<ProcessMemory> read_process_memory(pid_t pid, const FileId& file, std::uint64_t file_size) {
  std::string base = "/proc/" + std::to_string(pid);
  auto text = read_proc_file(base + "/smaps");
  if (!text) return std::nullopt;

  ProcessMemory pm;
  std::vector<SegmentMapping> mappings;
  MemoryUse* current = nullptr;
  std::string_view rest(*text);
  while (!rest.empty()) {
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    std::string_view cursor = line;
    std::string_view first = next_token(cursor);
    if (first.empty()) continue;
    if (first.back() != ':') {
      // A mapping's header: "start-end perms offset dev inode [path]".
      std::string_view perms = next_token(cursor);
      std::string_view offset = next_token(cursor);
      std::string_view dev = next_token(cursor);
      std::string_view inode = next_token(cursor);
      static_cast<void>(perms);
      FileId id;
      std::uint64_t off = 0;
      std::uint64_t start = 0;
      std::uint64_t end = 0;
      auto dash = first.find('-');
      bool ok = dash != std::string_view::npos && parse_number(first.substr(0, dash), start, 16) &&
                parse_number(first.substr(dash + 1), end, 16) && parse_number(offset, off, 16) &&
                parse_dev(dev, id.dev_major, id.dev_minor) && parse_number(inode, id.inode);
      if (ok && id == file) {
        current = &pm.segment;
        pm.segment_mappings += 1;
        mappings.push_back({start, end, off, 0});
      } else {
        current = &pm.other;
      }
      continue;
    }
    if (current == nullptr) continue;
    std::string_view key = first.substr(0, first.size() - 1);
    std::uint64_t kb = 0;
    if (!parse_number(next_token(cursor), kb)) continue;
    std::uint64_t bytes = kb * 1024;
    if (key == "Rss") {
      current->rss += bytes;
      if (current == &pm.segment) mappings.back().rss = bytes;
    } else if (key == "Pss") {
      current->pss += bytes;
    } else if (key == "Private_Clean" || key == "Private_Dirty") {
      current->private_bytes += bytes;
    } else if (key == "Shared_Clean" || key == "Shared_Dirty") {
      current->shared_bytes += bytes;
    } else if (key == "Swap") {
      current->swap += bytes;
    }
  }

  // Distinct resident pages of the file: a page reached through two
  // mappings is one page of memory.
  pm.segment_pages = ResidentPages(file_size);
  pm.segment_resident_exact = true;
  bool any = std::any_of(mappings.begin(), mappings.end(), [](const SegmentMapping& m) { return m.rss > 0; });
  if (any) {
    int fd = ::open((base + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0;
    for (const auto& m : mappings) {
      if (ok && m.rss > 0) ok = mark_present(fd, m, page_size(), pm.segment_pages);
    }
    if (fd >= 0) ::close(fd);
    pm.segment_resident_exact = ok;
  }
  if (pm.segment_resident_exact) {
    pm.segment_resident = pm.segment_pages.bytes();
  } else {
    pm.segment_pages = ResidentPages(file_size);
    pm.segment_resident = std::min(pm.segment.rss, file_size);
  }
  return pm;
}

bool process_maps_file(pid_t pid, const FileId& file) {
  std::optional<std::string> text;
  try {
    text = read_proc_file("/proc/" + std::to_string(pid) + "/maps");
  } catch (const std::system_error&) {
    return false;
  }
  if (!text) return false;
  std::string_view rest(*text);
  while (!rest.empty()) {
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    next_token(line);  // range
    next_token(line);  // perms
    next_token(line);  // offset
    FileId id;
    if (parse_dev(next_token(line), id.dev_major, id.dev_minor) && parse_number(next_token(line), id.inode) &&
        id == file) {
      return true;
    }
  }
  return false;
}

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::optional<std::string> text;
  try {
    text = read_proc_file("/proc/" + std::to_string(pid) + "/stat");
  } catch (const std::system_error&) {
    return std::nullopt;
  }
  if (!text) return std::nullopt;
  // The command (field 2) is in parentheses and may hold spaces and ')':
  // the other fields start after the last ')'.
  std::string_view s(*text);
  auto paren = s.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  s.remove_prefix(paren + 1);
  ProcStat st;
  for (int field = 3; field <= 22; ++field) {
    std::string_view tok = next_token(s);
    if (tok.empty()) return std::nullopt;
    if (field == 3) st.state = tok[0];
    if (field == 14 && !parse_number(tok, st.utime)) return std::nullopt;
    if (field == 15 && !parse_number(tok, st.stime)) return std::nullopt;
    if (field == 22 && !parse_number(tok, st.start_time)) return std::nullopt;
  }
  return st;
}

double uptime_seconds() {
  std::optional<std::string> text;
  try {
    text = read_proc_file("/proc/uptime");
  } catch (const std::system_error&) {
    return 0;
  }
  if (!text) return 0;
  // "12345.67 2345.67": parse the first number without locale.
  std::string_view s(*text);
  std::string_view tok = next_token(s);
  auto dot = tok.find('.');
  std::uint64_t whole = 0;
  std::uint64_t frac = 0;
  if (!parse_number(tok.substr(0, dot), whole)) return 0;
  double value = static_cast<double>(whole);
  if (dot != std::string_view::npos) {
    std::string_view f = tok.substr(dot + 1);
    if (parse_number(f, frac)) {
      double scale = 1;
      for (std::size_t i = 0; i < f.size(); ++i) scale *= 10;
      value += static_cast<double>(frac) / scale;
    }
  }
  return value;
}

double clock_ticks_per_second() {
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return ticks;
}

double cpu_percent_since_start(const ProcStat& st) {
  double hz = clock_ticks_per_second();
  double elapsed = uptime_seconds() - static_cast<double>(st.start_time) / hz;
  if (elapsed <= 0) return 0;
  return 100.0 * static_cast<double>(st.utime + st.stime) / hz / elapsed;
}

std::vector<FlockHolder> flock_holders(const FileId& file) {
  std::vector<FlockHolder> out;
  std::optional<std::string> text;
  try {
    text = read_proc_file("/proc/locks");
  } catch (const std::system_error&) {
    return out;
  }
  if (!text) return out;
  // "1: FLOCK  ADVISORY  READ 12510 00:1b:589 0 EOF"; waiters have "->".
  std::string_view rest(*text);
  while (!rest.empty()) {
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    next_token(line);  // "1:"
    std::string_view kind = next_token(line);
    if (kind != "FLOCK") continue;
    next_token(line);  // ADVISORY
    std::string_view mode = next_token(line);
    std::string_view pid = next_token(line);
    std::string_view where = next_token(line);
    auto c2 = where.rfind(':');
    FileId id;
    int p = 0;
    if (c2 == std::string_view::npos || !parse_dev(where.substr(0, c2), id.dev_major, id.dev_minor) ||
        !parse_number(where.substr(c2 + 1), id.inode) || !parse_number(pid, p)) {
      continue;
    }
    if (id == file) out.push_back({static_cast<pid_t>(p), mode == "WRITE"});
  }
  return out;
}

}  // namespace sealstore::memstat
