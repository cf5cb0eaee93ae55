// sealstore-memstat against real processes attached to real segments: it
// is run as a program, its JSON parsed strictly, its exit codes checked.
// Segments live in a private directory on /dev/shm, so --list and --gc see
// only this test's segments.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "sealstore/sealstore.hpp"
#include "segment/layout.hpp"
#include "support/test_support.hpp"

#ifndef SEALSTORE_MEMSTAT

TEST(Memstat, built_without_the_tool) { GTEST_SKIP() << "sealstore-memstat is not built (SEALSTORE_BUILD_TOOLS=OFF)"; }

#else

namespace sealstore {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::Pipe;

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20U;

// ThreadSanitizer's shadow memory is private memory that grows with every
// byte a process reads, so "reading costs no private memory" cannot hold
// under it; the other figures still do.
#if defined(__SANITIZE_THREAD__)
constexpr bool kReadsGrowShadowMemory = true;
#else
constexpr bool kReadsGrowShadowMemory = false;
#endif

// ---- a strict JSON parser (RFC 8259), enough to read memstat's output

struct Json {
  using Array = std::vector<Json>;
  struct Member;  // a vector may hold an incomplete type; a pair may not
  using Object = std::vector<Member>;
  struct Number {
    std::string text;
  };
  std::variant<std::nullptr_t, bool, Number, std::string, Array, Object> v;

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
  bool is_bool() const { return std::holds_alternative<bool>(v); }
  bool is_number() const { return std::holds_alternative<Number>(v); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_array() const { return std::holds_alternative<Array>(v); }
  bool is_object() const { return std::holds_alternative<Object>(v); }
  bool is_integer() const { return is_number() && std::get<Number>(v).text.find_first_of(".eE") == std::string::npos; }

  const Json& operator[](std::string_view key) const;  // after Member, below
  bool has(std::string_view key) const;
  const Object& object() const { return std::get<Object>(v); }
  const Array& array() const { return std::get<Array>(v); }
  const std::string& str() const { return std::get<std::string>(v); }
  bool boolean() const { return std::get<bool>(v); }
  std::int64_t integer() const {
    const std::string& t = std::get<Number>(v).text;
    std::int64_t out = 0;
    auto r = std::from_chars(t.data(), t.data() + t.size(), out);
    if (r.ec != std::errc() || r.ptr != t.data() + t.size()) throw std::runtime_error("not an integer: " + t);
    return out;
  }
  double number() const { return std::stod(std::get<Number>(v).text); }
};

struct Json::Member {
  std::string first;
  Json second;
};

const Json& Json::operator[](std::string_view key) const {
  for (const auto& [k, val] : object()) {
    if (k == key) return val;
  }
  throw std::out_of_range("no member '" + std::string(key) + "'");
}

bool Json::has(std::string_view key) const {
  return std::any_of(object().begin(), object().end(), [&](const auto& m) { return m.first == key; });
}

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : s_(text) {}
  Json parse_document() {
    Json j = value();
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters");
    return j;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("invalid JSON at offset " + std::to_string(i_) + ": " + what);
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  void literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) fail("bad literal");
    i_ += word.size();
  }
  Json value() {
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end");
    char c = s_[i_];
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return Json{string()};
    if (c == 't') {
      literal("true");
      return Json{true};
    }
    if (c == 'f') {
      literal("false");
      return Json{false};
    }
    if (c == 'n') {
      literal("null");
      return Json{nullptr};
    }
    return number();
  }
  Json object() {
    ++i_;
    Json::Object o;
    if (eat('}')) return Json{o};
    do {
      skip_ws();
      if (i_ >= s_.size() || s_[i_] != '"') fail("expected a member name");
      std::string k = string();
      for (const auto& m : o) {
        if (m.first == k) fail("duplicate member '" + k + "'");
      }
      expect(':');
      o.push_back(Json::Member{std::move(k), value()});
    } while (eat(','));
    expect('}');
    return Json{o};
  }
  Json array() {
    ++i_;
    Json::Array a;
    if (eat(']')) return Json{a};
    do {
      a.push_back(value());
    } while (eat(','));
    expect(']');
    return Json{a};
  }
  std::string string() {
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return out;
      if (c < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("short \\u escape");
          unsigned cp = 0;
          auto r = std::from_chars(s_.data() + i_, s_.data() + i_ + 4, cp, 16);
          if (r.ptr != s_.data() + i_ + 4) fail("bad \\u escape");
          i_ += 4;
          out += cp < 0x80 ? std::string(1, static_cast<char>(cp)) : std::string("?");
          break;
        }
        default: fail("bad escape");
      }
    }
  }
  Json number() {
    std::size_t start = i_;
    if (s_[i_] == '-') ++i_;
    auto digits = [&] {
      std::size_t b = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ - b;
    };
    std::size_t first = i_;
    std::size_t n = digits();
    if (n == 0) fail("expected a value");
    if (n > 1 && s_[first] == '0') fail("leading zero");
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (digits() == 0) fail("no digits after '.'");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (digits() == 0) fail("no digits in the exponent");
    }
    return Json{Json::Number{std::string(s_.substr(start, i_ - start))}};
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

Json parse_json(std::string_view text) { return JsonParser(text).parse_document(); }

// ---- running the tool

// A private directory on /dev/shm (a tmpfs, as segments need), removed with
// everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& extra = "") {
    std::string t = "/dev/shm/sealstore-memstat-test-" + extra + "XXXXXX";
    if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& segment) const { return path_ + "/sealstore." + segment; }
  bool has(const std::string& segment) const { return ::access(file(segment).c_str(), F_OK) == 0; }
  CreateOptions options(std::uint64_t capacity = 4 * kMiB) const {
    CreateOptions o = test::small_options(capacity);
    o.directory = path_;
    return o;
  }
  AttachOptions attach_options() const {
    AttachOptions o;
    o.directory = path_;
    return o;
  }

 private:
  std::string path_;
};

struct RunOptions {
  std::vector<std::string> env{};  // "NAME=value" added to the environment
  std::string input{};             // written to stdin, then closed
  bool as_nobody = false;          // drop root's privileges first
};

// sealstore-memstat as a child process, stdout and stderr piped back.
class Memstat {
 public:
  Memstat(const std::vector<std::string>& args, const RunOptions& ro = {}) {
    int out[2];
    int err[2];
    int in[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 || ::pipe2(in, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2 failed");
    }
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).starts_with("SEALSTORE_SEGMENT=")) continue;  // the caller's own setting
      env.emplace_back(*e);
    }
    env.insert(env.end(), ro.env.begin(), ro.env.end());
    std::vector<char*> argv{const_cast<char*>(SEALSTORE_MEMSTAT)};            // NOLINT
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));  // NOLINT
    argv.push_back(nullptr);
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      if (ro.as_nobody && ::geteuid() == 0) {
        // Executed by descriptor, opened before the privileges go: the
        // build tree may sit where nobody cannot reach (a 0700 home).
        int exe = ::open(argv[0], O_RDONLY | O_CLOEXEC);
        if (exe < 0 || ::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
          ::_exit(126);
        }
        ::fexecve(exe, argv.data(), envp.data());
        ::_exit(127);
      }
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
    if (!ro.input.empty()) {
      if (::write(in[1], ro.input.data(), ro.input.size()) < 0) std::perror("write to memstat");
    }
    ::close(in[1]);
  }
  ~Memstat() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
    ::close(err_);
  }
  Memstat(const Memstat&) = delete;
  Memstat& operator=(const Memstat&) = delete;

  // The next line of stdout (without '\n'); nullopt at EOF or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = 30s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (auto nl = out_text_.find('\n', consumed_); nl != std::string::npos) {
        std::string line = out_text_.substr(consumed_, nl - consumed_);
        consumed_ = nl + 1;
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !pump(left)) return std::nullopt;
    }
  }
  void signal(int sig) const { ::kill(pid_, sig); }

  struct Result {
    int code = -1;  // exit code, or -signal
    std::string out;
    std::string err;
  };
  // Reads everything and reaps the tool; a hang becomes a failure.
  Result finish(std::chrono::milliseconds timeout = 60s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out_ >= 0 || err_ >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        ADD_FAILURE() << "sealstore-memstat did not finish in time; stdout so far:\n" << out_text_;
        ::kill(pid_, SIGKILL);
        break;
      }
      pump(left);
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    r.out = out_text_.substr(consumed_);
    r.err = err_text_;
    return r;
  }

 private:
  // Reads what is available; false at the end of stdout or on timeout.
  bool pump(std::chrono::milliseconds timeout) {
    std::vector<pollfd> fds;
    if (out_ >= 0) fds.push_back({out_, POLLIN, 0});
    if (err_ >= 0) fds.push_back({err_, POLLIN, 0});
    if (fds.empty()) return false;
    if (::poll(fds.data(), fds.size(), static_cast<int>(timeout.count())) <= 0) return false;
    bool out_open = out_ >= 0;
    for (const auto& p : fds) {
      if (p.revents == 0) continue;
      char buf[65536];
      ssize_t n = ::read(p.fd, buf, sizeof buf);
      bool is_out = p.fd == out_;
      if (n <= 0) {
        ::close(p.fd);
        (is_out ? out_ : err_) = -1;
        if (is_out) out_open = false;
      } else {
        (is_out ? out_text_ : err_text_).append(buf, static_cast<std::size_t>(n));
      }
    }
    return out_open;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::string out_text_;
  std::size_t consumed_ = 0;
  std::string err_text_;
};

Memstat::Result memstat(const std::vector<std::string>& args, const RunOptions& ro = {}) {
  Memstat m(args, ro);
  return m.finish();
}

// Runs memstat with --json and parses stdout; the run must succeed.
Json memstat_json(std::vector<std::string> args) {
  args.emplace_back("--json");
  auto r = memstat(args);
  EXPECT_EQ(r.code, 0) << r.err;
  return parse_json(r.out);
}

const Json& process_by_pid(const Json& doc, pid_t pid) {
  for (const auto& p : doc["processes"].array()) {
    if (p["pid"].integer() == pid) return p;
  }
  throw std::runtime_error("pid " + std::to_string(pid) + " is not listed");
}

const Json& object_by_ref(const Json& doc, const RemoteRef& ref) {
  for (const auto& o : doc["objects"].array()) {
    if (o["ref"].str() == ref.to_string()) return o;
  }
  throw std::runtime_error(ref.to_string() + " is not listed");
}

std::uint64_t touch_all(std::span<const std::byte> b) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < b.size(); i += 512) sum += static_cast<std::uint8_t>(b[i]);
  return sum;
}

void expect_exit(const Memstat::Result& r, int code, std::string_view in_stderr) {
  EXPECT_EQ(r.code, code) << "stderr: " << r.err << "\nstdout: " << r.out;
  EXPECT_NE(r.err.find(in_stderr), std::string::npos) << "stderr lacks '" << in_stderr << "': " << r.err;
}

// ---- memory, as the issue asks: fetch costs no private memory, materialize does

TEST(Memstat, fetch_grows_segment_resident_not_private_and_materialize_grows_private) {
  TempDir dir;
  Store s = Store::create("mem", dir.options(80 * kMiB));
  Writer w = s.create_writer(64 * kMiB);
  std::memset(w.bytes().data(), 0x5a, w.bytes().size());
  RemoteRef ref = std::move(w).seal();

  Pipe to_child;
  Pipe from_child;
  Child c([&] {
    Store t = Store::attach("mem", dir.attach_options());
    from_child.send('a');
    if (to_child.receive() != 'f') return 2;
    View v = t.fetch(ref, 10s);
    std::uint64_t sum = touch_all(v.bytes());  // read every page
    from_child.send(sum != 0 ? 'f' : 'e');
    if (to_child.receive() != 'm') return 3;
    auto copy = t.materialize<std::vector<std::byte> >(ref, 10s);
    from_child.send(copy.size() == 64 * kMiB ? 'm' : 'e');
    return to_child.receive() == 'q' ? 0 : 4;
  });
  ASSERT_EQ(from_child.receive(), 'a');
  std::vector<std::string> args = {"--dir", dir.path(), "--segment", "mem"};
  Json before = memstat_json(args);
  const Json& b = process_by_pid(before, c.pid());
  ASSERT_TRUE(b["alive"].boolean());
  ASSERT_FALSE(b["memory"].is_null()) << b["memory_error"].str();

  to_child.send('f');
  ASSERT_EQ(from_child.receive(), 'f');
  Json fetched = memstat_json(args);
  const Json& f = process_by_pid(fetched, c.pid());
  std::int64_t private_growth = f["memory"]["private"].integer() - b["memory"]["private"].integer();
  std::int64_t resident_growth = f["memory"]["segment_resident"].integer() - b["memory"]["segment_resident"].integer();
  if (!kReadsGrowShadowMemory) {
    EXPECT_LT(private_growth, static_cast<std::int64_t>(4 * kMiB)) << "fetch must not copy";
  }
  EXPECT_GE(resident_growth, static_cast<std::int64_t>(64 * kMiB)) << "the child now maps the object's pages";
  EXPECT_TRUE(f["memory"]["segment_resident_exact"].boolean());
  EXPECT_EQ(f["pins"]["objects"].integer(), 1);
  EXPECT_EQ(f["pins"]["bytes"].integer(), static_cast<std::int64_t>(64 * kMiB));

  to_child.send('m');
  ASSERT_EQ(from_child.receive(), 'm');
  Json materialized = memstat_json(args);
  const Json& m = process_by_pid(materialized, c.pid());
  std::int64_t private_after = m["memory"]["private"].integer() - b["memory"]["private"].integer();
  EXPECT_GE(private_after, static_cast<std::int64_t>(64 * kMiB)) << "materialize copies into private memory";

  // The human table says the same, in its columns.
  auto text = memstat(args);
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("SEG_RES"), std::string::npos);
  EXPECT_NE(text.out.find("TOTAL"), std::string::npos);

  to_child.send('q');
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0) << "code " << st.code << " signal " << st.signal;
}

// The kernel counts a shared page as Private while one process alone maps
// it; memstat attributes by mapping, so a sole reader's segment pages are
// still segment pages, not private memory.
TEST(Memstat, a_sole_reader_of_an_object_is_not_charged_private_memory_for_it) {
  TempDir dir;
  Store s = Store::create("sole", dir.options(24 * kMiB));
  Child writer([&] {
    Store t = Store::attach("sole", dir.attach_options());
    Writer w = t.create_writer(16 * kMiB);
    std::memset(w.bytes().data(), 7, w.bytes().size());
    RemoteRef r = std::move(w).seal();
    t.bind("sole/object", r);
    return 0;  // detaches: nobody maps the object's pages now
  });
  ASSERT_EQ(writer.wait().code, 0);
  RemoteRef ref = *s.lookup("sole/object");
  Pipe ready;
  Pipe go;
  Pipe done;
  Child reader([&] {
    Store t = Store::attach("sole", dir.attach_options());
    ready.send();
    if (go.receive() != 'x') return 2;
    View v = t.fetch(ref, 10s);
    ready.send(touch_all(v.bytes()) != 0 ? 'x' : 'e');
    return done.receive() == 'x' ? 0 : 3;
  });
  ASSERT_EQ(ready.receive(), 'x');
  std::vector<std::string> args = {"--dir", dir.path(), "--segment", "sole"};
  Json before = memstat_json(args);
  go.send();
  ASSERT_EQ(ready.receive(), 'x');
  Json after = memstat_json(args);
  const Json& b = process_by_pid(before, reader.pid())["memory"];
  const Json& a = process_by_pid(after, reader.pid())["memory"];
  EXPECT_GE(a["segment_private"].integer() - b["segment_private"].integer(), static_cast<std::int64_t>(16 * kMiB))
      << "the kernel calls the sole reader's pages Private";
  if (!kReadsGrowShadowMemory) {
    EXPECT_LT(a["private"].integer() - b["private"].integer(), static_cast<std::int64_t>(4 * kMiB))
        << "memstat does not";
  }
  EXPECT_GE(a["segment_resident"].integer() - b["segment_resident"].integer(), static_cast<std::int64_t>(16 * kMiB));
  done.send();
  EXPECT_EQ(reader.wait().code, 0);
}

TEST(Memstat, the_owner_writing_and_fetching_counts_each_segment_page_once) {
  TempDir dir;
  Store s = Store::create("once", dir.options(16 * kMiB));
  Writer w = s.create_writer(8 * kMiB);
  std::memset(w.bytes().data(), 1, w.bytes().size());  // resident through the read-write mapping
  RemoteRef ref = std::move(w).seal();
  View v = s.fetch(ref);
  ASSERT_NE(touch_all(v.bytes()), 0U);  // and again through the read-only one
  Json doc = memstat_json({"--dir", dir.path(), "--segment", "once"});
  const Json& me = process_by_pid(doc, ::getpid());
  std::int64_t resident = me["memory"]["segment_resident"].integer();
  std::int64_t rss = me["memory"]["segment_rss"].integer();
  EXPECT_GE(rss, static_cast<std::int64_t>(16 * kMiB)) << "both mappings hold the object's pages";
  EXPECT_GE(resident, static_cast<std::int64_t>(8 * kMiB));
  EXPECT_LT(resident, static_cast<std::int64_t>(10 * kMiB)) << "a page mapped twice is one page";
  EXPECT_EQ(me["memory"]["segment_mappings"].integer(), 2);
  EXPECT_EQ(me["role"].str(), "owner");
  EXPECT_EQ(doc["totals"]["segment_resident"].integer(), resident);
}

// ---- dead processes and deferred frees

TEST(Memstat, a_killed_process_shows_as_dead_with_its_pins) {
  TempDir dir;
  Store s = Store::create("dead", dir.options());
  RemoteRef ref = s.put(std::vector<double>(1000, 2.5));
  Pipe ready;
  Child c([&] {
    Store t = Store::attach("dead", dir.attach_options());
    View v = t.fetch(ref, 10s);
    ready.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(ready.receive(), 'x');
  c.kill(SIGKILL);
  auto st = c.wait();
  ASSERT_EQ(st.signal, SIGKILL);

  std::vector<std::string> args = {"--dir", dir.path(), "--segment", "dead"};
  for (int run = 0; run < 2; ++run) {  // memstat itself never reaps it
    Json doc = memstat_json(args);
    const Json& p = process_by_pid(doc, c.pid());
    EXPECT_FALSE(p["alive"].boolean());
    EXPECT_TRUE(p["memory"].is_null());
    EXPECT_TRUE(p["cpu_percent"].is_null());
    EXPECT_EQ(p["pins"]["objects"].integer(), 1);
    EXPECT_EQ(p["pins"]["bytes"].integer(), 8000);
    EXPECT_EQ(doc["totals"]["dead"].integer(), 1);
  }
  auto text = memstat(args);
  ASSERT_EQ(text.code, 0) << text.err;
  auto line_start = text.out.find(std::to_string(c.pid()) + "  ");
  ASSERT_NE(line_start, std::string::npos) << text.out;
  std::string line = text.out.substr(line_start, text.out.find('\n', line_start) - line_start);
  EXPECT_NE(line.find("dead"), std::string::npos) << line;
  EXPECT_NE(line.find("7.8 KiB"), std::string::npos) << "pinned bytes: " << line;
  EXPECT_EQ(s.info().processes, 2U) << "the dead slot is still there: memstat reaped nothing";
}

TEST(Memstat, an_erase_waiting_on_pins_names_the_processes_that_pin_it) {
  TempDir dir;
  Store s = Store::create("defer", dir.options());
  RemoteRef ref = s.put(std::string(4096, 'q'));
  s.bind("big/one", ref);
  Pipe pinned;
  Pipe release;
  Child c([&] {
    Store t = Store::attach("defer", dir.attach_options());
    View v = t.fetch(ref, 10s);
    pinned.send();
    return release.receive() == 'x' ? 0 : 1;
  });
  ASSERT_EQ(pinned.receive(), 'x');
  s.erase(ref);
  std::vector<std::string> args = {"--dir", dir.path(), "--segment", "defer", "objects"};
  Json doc = memstat_json(args);
  const Json& o = object_by_ref(doc, ref);
  EXPECT_EQ(o["state"].str(), "erase-pending");
  ASSERT_EQ(o["pinned_by"].array().size(), 1U);
  EXPECT_EQ(o["pinned_by"].array()[0]["pid"].integer(), c.pid());
  EXPECT_TRUE(o["pinned_by"].array()[0]["alive"].boolean());
  ASSERT_EQ(doc["deferred_frees"].array().size(), 1U);
  EXPECT_EQ(doc["deferred_frees"].array()[0]["ref"].str(), ref.to_string());

  auto text = memstat(args);
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("Deferred frees"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(fmt::format("pinned by worker 2 (pid {}, alive)", c.pid())), std::string::npos) << text.out;

  release.send();
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0);
  Json after = memstat_json(args);
  EXPECT_TRUE(after["objects"].array().empty()) << "freed with the last pin";
  EXPECT_TRUE(after["deferred_frees"].array().empty());
}

// ---- objects and segment views

TEST(Memstat, objects_sort_by_size_or_age_and_filter_by_name_and_state) {
  TempDir dir;
  Store s = Store::create("objs", dir.options());
  RemoteRef small = s.put(std::vector<std::uint8_t>(100));
  RemoteRef large = s.put(std::vector<std::uint8_t>(10000));
  RemoteRef medium = s.put(std::vector<std::uint8_t>(1000));
  RemoteRef unfilled = s.make_ref();
  s.bind("model/weights", large);
  s.bind("model/bias", medium);
  s.bind("data", small);
  std::vector<std::string> base = {"--dir", dir.path(), "-s", "objs", "objects"};
  auto refs = [](const Json& doc) {
    std::vector<std::string> out;
    for (const auto& o : doc["objects"].array()) out.push_back(o["ref"].str());
    return out;
  };
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return memstat_json(a);
  };
  EXPECT_EQ(refs(with({"--sort", "size"})),
            (std::vector<std::string>{large.to_string(), medium.to_string(), small.to_string(), unfilled.to_string()}));
  EXPECT_EQ(refs(with({"--sort=age"})),
            (std::vector<std::string>{small.to_string(), large.to_string(), medium.to_string(), unfilled.to_string()}));
  Json named = with({"--name", "model/*", "--sort", "size"});
  EXPECT_EQ(refs(named), (std::vector<std::string>{large.to_string(), medium.to_string()}));
  EXPECT_EQ(named["totals"]["objects"].integer(), 2);
  EXPECT_EQ(named["totals"]["all_objects"].integer(), 4);
  EXPECT_EQ(named["totals"]["bytes"].integer(), 11000);
  EXPECT_EQ(refs(with({"--state", "unfilled"})), (std::vector<std::string>{unfilled.to_string()}));
  Json all = with({});
  const Json& l = object_by_ref(all, large);
  EXPECT_EQ(l["names"].array().at(0).str(), "model/weights");
  EXPECT_EQ(l["type"].str(), "u8[]");
  EXPECT_EQ(l["creator"]["worker_id"].integer(), 1);
  EXPECT_EQ(l["creator"]["pid"].integer(), ::getpid());

  std::vector<std::string> text_args = base;
  text_args.insert(text_args.end(), {"--state", "sealed", "--sort", "size"});
  auto text = memstat(text_args);
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("Showing 3 of 4 objects: state sealed"), std::string::npos) << text.out;
  EXPECT_LT(text.out.find("model/weights"), text.out.find("model/bias")) << text.out;
  EXPECT_NE(text.out.find("TOTAL (3 objects)"), std::string::npos) << text.out;
}

TEST(Memstat, segment_view_reports_capacity_usage_and_the_backing_file) {
  TempDir dir;
  CreateOptions o = dir.options(8 * kMiB);
  o.mode = 0640;
  Store s = Store::create("seg", o);
  s.put(std::vector<std::uint8_t>(1 << 20));
  Json doc = memstat_json({"--dir", dir.path(), "--segment", "seg", "segment"});
  const Json& g = doc["segment"];
  SegmentInfo info = s.info();
  EXPECT_EQ(g["capacity"].integer(), static_cast<std::int64_t>(info.capacity));
  EXPECT_EQ(g["used"].integer(), static_cast<std::int64_t>(info.used));
  EXPECT_EQ(g["free"].integer(), static_cast<std::int64_t>(info.capacity - info.used));
  EXPECT_EQ(g["largest_free"].integer(), static_cast<std::int64_t>(info.largest_free));
  EXPECT_EQ(g["objects"].integer(), 1);
  EXPECT_EQ(g["path"].str(), dir.file("seg"));
  EXPECT_EQ(g["file"]["mode"].str(), "0640");
  EXPECT_EQ(g["file"]["size"].integer(), static_cast<std::int64_t>(info.file_size));
  EXPECT_EQ(g["layout_version"].integer(), static_cast<std::int64_t>(info.layout_version));
  auto text = memstat({"--dir", dir.path(), "--segment", "seg", "segment"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("rw-r-----"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("capacity      8.0 MiB"), std::string::npos) << text.out;
}

TEST(Memstat, a_spilling_segment_shows_its_spill_folder_counts_and_each_objects_place) {
  TempDir dir;
  TempDir spill("spill-");
  CreateOptions o = dir.options(4 * kMiB);
  o.spill_directory = spill.path();
  Store s = Store::create("seg", o);
  RemoteRef a = s.put(std::vector<std::uint8_t>(1 << 20, 1));
  RemoteRef b = s.put(std::vector<std::uint8_t>(1 << 20, 2));
  ASSERT_TRUE(s.spill(a));
  ASSERT_TRUE(s.spill(b));
  s.fetch(b);  // restored, its file kept
  Subscription sub = s.subscribe();
  Json doc = memstat_json({"--dir", dir.path(), "--segment", "seg", "segment"});
  const Json& g = doc["segment"]["spill"];
  EXPECT_TRUE(g["enabled"].boolean());
  EXPECT_EQ(g["folder"].str(), s.info().spill_directory);
  EXPECT_EQ(g["spilled_objects"].integer(), 1);
  EXPECT_EQ(g["spilled_bytes"].integer(), 1 << 20);
  EXPECT_EQ(g["spills"].integer(), 2);
  EXPECT_EQ(g["restores"].integer(), 1);
  EXPECT_EQ(doc["segment"]["subscribers"].integer(), 1);
  Json objects = memstat_json({"--dir", dir.path(), "--segment", "seg", "objects"});
  std::map<std::string, std::string> place;
  for (const auto& obj : objects["objects"].array()) place[obj["ref"].str()] = obj["place"].str();
  EXPECT_EQ(place[a.to_string()], "spill");
  EXPECT_EQ(place[b.to_string()], "segment");
  auto text = memstat({"--dir", dir.path(), "--segment", "seg", "objects"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("segment+file"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" spill "), std::string::npos) << text.out;
  auto seg = memstat({"--dir", dir.path(), "--segment", "seg", "segment"});
  EXPECT_NE(seg.out.find("spilled           1 object, 1.0 MiB"), std::string::npos) << seg.out;
  EXPECT_NE(seg.out.find("2 spilled, 1 restored"), std::string::npos) << seg.out;
}

TEST(Memstat, gc_removes_a_spilling_segments_spill_folder_with_it) {
  TempDir dir;
  TempDir spill("spill-");
  std::string folder;
  {
    CreateOptions o = dir.options();
    o.spill_directory = spill.path();
    Store s = Store::create("spilled", o);
    ASSERT_TRUE(s.spill(s.put(std::vector<int>(1000, 3))));
    folder = s.info().spill_directory;
  }
  ASSERT_TRUE(std::filesystem::exists(folder));
  auto r = memstat({"--dir", dir.path(), "--gc", "--yes", "--min-age", "0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(dir.has("spilled"));
  EXPECT_FALSE(std::filesystem::exists(folder));
}

TEST(Memstat, gc_with_spill_dir_removes_the_folders_of_segments_that_are_gone_and_keeps_the_rest) {
  TempDir dir;
  TempDir spill("spill-");
  CreateOptions o = dir.options();
  o.spill_directory = spill.path();
  Store live = Store::create("live", o);
  ASSERT_TRUE(live.spill(live.put(std::vector<int>(1000, 1))));
  std::string live_folder = live.info().spill_directory;
  // A segment removed while its only process used it, which then died:
  // nothing is left to take its spill folder along.
  Pipe removed;
  std::string orphan;
  Child owner([&] {
    Store t = Store::create("gone", o);
    t.spill(t.put(std::vector<int>(1000, 2)));
    Store::remove("gone", dir.path());
    removed.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(removed.receive(), 'x');
  owner.kill(SIGKILL);
  owner.wait();
  for (const auto& e : std::filesystem::directory_iterator(spill.path())) {
    if (e.path().string() != live_folder) orphan = e.path();
  }
  ASSERT_FALSE(orphan.empty());
  auto r = memstat({"--dir", dir.path(), "--gc", "--yes", "--min-age", "0", "--spill-dir", spill.path(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  Json doc = parse_json(r.out);
  ASSERT_EQ(doc["spill_folders_removed"].array().size(), 1U) << r.out;
  EXPECT_EQ(doc["spill_folders_removed"].array()[0].str(), orphan);
  EXPECT_FALSE(std::filesystem::exists(orphan));
  EXPECT_TRUE(std::filesystem::exists(live_folder));
  EXPECT_EQ(live.materialize<std::vector<int> >(live.objects().at(0).ref).at(999), 1);
  auto bad = memstat({"--dir", dir.path(), "--spill-dir", spill.path()});
  expect_exit(bad, 2, "--spill-dir applies to --gc only");
}

// ---- JSON schema

void expect_type(const Json& obj, std::string_view key, bool (Json::*is)() const, bool nullable = false) {
  ASSERT_TRUE(obj.has(key)) << "missing member '" << key << "'";
  const Json& v = obj[key];
  EXPECT_TRUE((v.*is)() || (nullable && v.is_null())) << "member '" << key << "' has the wrong type";
}

void expect_envelope(const Json& doc, std::string_view view) {
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["schema"].str(), "sealstore-memstat");
  EXPECT_EQ(doc["schema_version"].integer(), 1);
  EXPECT_EQ(doc["view"].str(), view);
  expect_type(doc, "time_unix_ns", &Json::is_integer);
}

void expect_segment_schema(const Json& g) {
  for (auto k : {"name", "path", "segment_tag"}) expect_type(g, k, &Json::is_string);
  expect_type(g, "removed", &Json::is_bool);
  for (auto k : {"layout_version", "capacity", "used", "free", "largest_free", "free_extents", "objects", "max_objects",
                 "processes", "processes_alive", "recoveries", "created_unix_ns"}) {
    expect_type(g, k, &Json::is_integer);
  }
  expect_type(g, "fragmentation", &Json::is_number);
  const Json& f = g["file"];
  for (auto k : {"size", "allocated", "uid", "gid"}) expect_type(f, k, &Json::is_integer);
  for (auto k : {"mode", "mode_text", "owner", "group"}) expect_type(f, k, &Json::is_string);
}

// python3's json module agrees the text is JSON (a second, independent parser).
void expect_python_parses(const std::string& text) {
  if (::access("/usr/bin/python3", X_OK) != 0) return;
  std::string path = testing::TempDir() + "memstat-" + std::to_string(::getpid()) + ".json";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  std::string cmd = "/usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]))' " + path;
  int rc = std::system(cmd.c_str());
  std::remove(path.c_str());
  EXPECT_EQ(rc, 0) << "python3 rejects:\n" << text;
}

TEST(Memstat, json_of_every_view_parses_and_matches_schema_version_1) {
  TempDir dir("q\"uo\\te\ttab-\xc3\xa9-");  // the path must be escaped in JSON
  Store s = Store::create("json", dir.options());
  RemoteRef r = s.put(std::vector<float>(64, 1.f));
  s.bind("weights", r);
  s.make_ref();
  Pipe attached;
  Pipe done;
  Child c([&] {
    Store t = Store::attach("json", dir.attach_options());
    View v = t.fetch(r, 10s);
    attached.send();
    return done.receive() == 'x' ? 0 : 1;
  });
  ASSERT_EQ(attached.receive(), 'x');
  std::vector<std::string> base = {"--dir", dir.path(), "--segment", "json", "--json"};

  for (std::string view : {"processes", "objects", "segment"}) {
    std::vector<std::string> args = base;
    args.push_back(view);
    auto run = memstat(args);
    ASSERT_EQ(run.code, 0) << run.err;
    expect_python_parses(run.out);
    Json doc = parse_json(run.out);
    expect_envelope(doc, view);
    EXPECT_TRUE(doc["watch"].is_null());
    expect_segment_schema(doc["segment"]);
    EXPECT_EQ(doc["segment"]["path"].str(), dir.file("json"));
    expect_type(doc, "deferred_frees", &Json::is_array);
    if (view == "processes") {
      ASSERT_EQ(doc["processes"].array().size(), 2U);
      for (const auto& p : doc["processes"].array()) {
        for (auto k : {"pid", "start_time", "slot", "worker_id", "attached_unix_ns", "objects_created"}) {
          expect_type(p, k, &Json::is_integer);
        }
        EXPECT_TRUE(p["role"].str() == "owner" || p["role"].str() == "client") << p["role"].str();
        expect_type(p, "alive", &Json::is_bool);
        expect_type(p, "memory", &Json::is_object);
        const Json& m = p["memory"];
        for (auto k : {"segment_resident", "segment_rss", "segment_pss", "segment_private", "segment_shared",
                       "segment_mappings", "private", "shared", "pss", "rss", "swap"}) {
          expect_type(m, k, &Json::is_integer);
        }
        expect_type(m, "segment_resident_exact", &Json::is_bool);
        expect_type(p, "memory_error", &Json::is_string, true);
        expect_type(p, "cpu_percent", &Json::is_number);
        EXPECT_EQ(p["cpu_basis"].str(), "since_start");
        expect_type(p["pins"], "objects", &Json::is_integer);
        expect_type(p["pins"], "bytes", &Json::is_integer);
        EXPECT_FALSE(p.has("delta")) << "deltas only under --watch";
      }
      const Json& t = doc["totals"];
      for (auto k : {"processes", "alive", "dead", "segment_resident", "segment_pss", "private", "pss", "rss",
                     "objects_created"}) {
        expect_type(t, k, &Json::is_integer);
      }
      expect_type(t, "cpu_percent", &Json::is_number);
      EXPECT_EQ(t["pins"]["objects"].integer(), 1);
      EXPECT_EQ(t["pins"]["bytes"].integer(), 256);
    }
    if (view == "objects") {
      EXPECT_TRUE(doc["filter"]["name"].is_null());
      EXPECT_TRUE(doc["filter"]["state"].is_null());
      EXPECT_EQ(doc["sort"].str(), "age");
      ASSERT_EQ(doc["objects"].array().size(), 2U);
      for (const auto& o : doc["objects"].array()) {
        for (auto k : {"ref", "type", "state"}) expect_type(o, k, &Json::is_string);
        for (auto k : {"id", "where", "whence", "size", "created_unix_ns", "waiters"}) {
          expect_type(o, k, &Json::is_integer);
        }
        expect_type(o, "age_seconds", &Json::is_number);
        expect_type(o, "names", &Json::is_array);
        expect_type(o["creator"], "worker_id", &Json::is_integer);
        expect_type(o["creator"], "pid", &Json::is_integer);
        expect_type(o["sealed_by"], "worker_id", &Json::is_integer);
        expect_type(o["sealed_by"], "pid", &Json::is_integer);
        for (const auto& p : o["pinned_by"].array()) {
          expect_type(p, "worker_id", &Json::is_integer);
          expect_type(p, "pid", &Json::is_integer);
          expect_type(p, "alive", &Json::is_bool);
        }
      }
      const Json& o = object_by_ref(doc, r);
      EXPECT_EQ(o["type"].str(), "f32[]");
      EXPECT_EQ(o["pinned_by"].array().at(0)["pid"].integer(), c.pid());
      for (auto k : {"objects", "bytes", "all_objects"}) expect_type(doc["totals"], k, &Json::is_integer);
    }
  }

  auto list = memstat({"--dir", dir.path(), "--list", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  expect_python_parses(list.out);
  Json l = parse_json(list.out);
  expect_envelope(l, "list");
  EXPECT_EQ(l["directory"].str(), dir.path());
  ASSERT_EQ(l["segments"].array().size(), 1U);
  const Json& e = l["segments"].array()[0];
  for (auto k : {"name", "path", "status"}) expect_type(e, k, &Json::is_string);
  expect_type(e, "error", &Json::is_string, true);
  for (auto k :
       {"attached_alive", "attached_dead", "capacity", "used", "objects", "layout_version", "created_unix_ns"}) {
    expect_type(e, k, &Json::is_integer);
  }
  for (auto k : {"size", "allocated", "uid"}) expect_type(e["file"], k, &Json::is_integer);
  for (const auto& h : e["lock_holders"].array()) {
    expect_type(h, "pid", &Json::is_integer);
    expect_type(h, "exclusive", &Json::is_bool);
  }

  auto gc = memstat({"--dir", dir.path(), "--gc", "--yes", "--min-age", "0", "--json"});
  ASSERT_EQ(gc.code, 0) << gc.err;
  expect_python_parses(gc.out);
  Json g = parse_json(gc.out);
  expect_envelope(g, "gc");
  EXPECT_EQ(g["directory"].str(), dir.path());
  EXPECT_FALSE(g["asked"].boolean());
  EXPECT_TRUE(g["confirmed"].boolean());
  EXPECT_EQ(g["removed"].integer(), 0);
  ASSERT_EQ(g["segments"].array().size(), 1U);
  EXPECT_EQ(g["segments"].array()[0]["action"].str(), "kept");
  expect_type(g["segments"].array()[0], "reason", &Json::is_string);

  done.send();
  auto st = c.wait();
  EXPECT_TRUE(st.exited && st.code == 0);
}

// ---- choosing the segment, and every error path with its exit code

TEST(Memstat, the_only_segment_is_the_default_and_the_environment_can_name_one) {
  TempDir dir;
  Store a = Store::create("only", dir.options());
  Json doc = memstat_json({"--dir", dir.path()});
  EXPECT_EQ(doc["segment"]["name"].str(), "only");
  EXPECT_EQ(doc["view"].str(), "processes");

  Store b = Store::create("second", dir.options());
  auto several = memstat({"--dir", dir.path()});
  expect_exit(several, 2, "2 segments in " + dir.path());
  EXPECT_NE(several.err.find("only, second"), std::string::npos) << several.err;

  auto env = memstat({"--dir", dir.path(), "--json"}, {.env = {"SEALSTORE_SEGMENT=second"}});
  ASSERT_EQ(env.code, 0) << env.err;
  EXPECT_EQ(parse_json(env.out)["segment"]["name"].str(), "second");
  auto flag_wins = memstat({"--dir", dir.path(), "--json", "-s", "only"}, {.env = {"SEALSTORE_SEGMENT=second"}});
  ASSERT_EQ(flag_wins.code, 0) << flag_wins.err;
  EXPECT_EQ(parse_json(flag_wins.out)["segment"]["name"].str(), "only");
}

TEST(Memstat, a_missing_segment_exits_3_naming_it_and_listing_those_that_exist) {
  TempDir dir;
  auto none = memstat({"--dir", dir.path()});
  expect_exit(none, 3, "there are no sealstore segments in " + dir.path());

  auto none_named = memstat({"--dir", dir.path(), "--segment", "ghost"});
  expect_exit(none_named, 3, "segment 'ghost' does not exist");
  EXPECT_NE(none_named.err.find("There are no sealstore segments in " + dir.path()), std::string::npos);

  Store a = Store::create("here", dir.options());
  Store b = Store::create("there", dir.options());
  auto missing = memstat({"--dir", dir.path(), "--segment", "ghost", "objects"});
  expect_exit(missing, 3, "segment 'ghost' does not exist");
  EXPECT_NE(missing.err.find("Segments in " + dir.path() + ": here, there"), std::string::npos) << missing.err;

  auto env_missing = memstat({"--dir", dir.path()}, {.env = {"SEALSTORE_SEGMENT=ghost"}});
  expect_exit(env_missing, 3, "segment 'ghost' does not exist");

  auto gc_missing = memstat({"--dir", dir.path(), "--gc", "--segment", "ghost"});
  expect_exit(gc_missing, 3, "segment 'ghost' does not exist");
}

TEST(Memstat, a_segment_of_another_layout_version_exits_4) {
  TempDir dir;
  { Store s = Store::create("old", dir.options()); }
  int fd = ::open(dir.file("old").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::uint32_t version = 99;
  ASSERT_EQ(::pwrite(fd, &version, sizeof version, offsetof(detail::Header, layout_version)),
            static_cast<ssize_t>(sizeof version));
  ::close(fd);
  auto r = memstat({"--dir", dir.path(), "--segment", "old"});
  expect_exit(r, 4, "layout version 99");
  auto list = memstat({"--dir", dir.path(), "--list"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find("incompatible"), std::string::npos) << list.out;
}

TEST(Memstat, permission_denied_exits_5) {
  TempDir dir;
  Store s = Store::create("private", dir.options());  // mode 0600
  ASSERT_EQ(::chmod(dir.path().c_str(), 0711), 0);    // others may reach the file, not read it
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(dir.file("private").c_str(), 0), 0);
  }
  auto r = memstat({"--dir", dir.path(), "--segment", "private"}, {.as_nobody = true});
  expect_exit(r, 5, "Permission denied");
  EXPECT_NE(r.err.find(dir.file("private")), std::string::npos) << r.err;
}

TEST(Memstat, a_segment_whose_creator_died_while_creating_it_exits_6_as_corrupt) {
  TempDir dir;
  int fd = ::open(dir.file("half").c_str(), O_CREAT | O_RDWR, 0600);  // no magic: never initialised
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
  ::close(fd);
  auto r = memstat({"--dir", dir.path(), "--segment", "half"});
  expect_exit(r, 6, "never initialised");
}

TEST(Memstat, bad_flags_and_values_exit_2_saying_what_is_wrong) {
  TempDir dir;
  Store s = Store::create("flags", dir.options());
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"--frobnicate"}, "unknown flag '--frobnicate'"},
      {{"-x"}, "unknown flag '-x'"},
      {{"heap"}, "unknown view 'heap'"},
      {{"objects", "segment"}, "one view at a time"},
      {{"--watch"}, "--watch needs a value"},
      {{"--watch", "soon"}, "--watch takes a number of seconds"},
      {{"--watch", "0"}, "--watch takes a number of seconds"},
      {{"--watch=-1"}, "--watch takes a number of seconds"},
      {{"objects", "--sort", "name"}, "--sort takes 'size' or 'age'"},
      {{"objects", "--state", "gone"}, "--state takes unfilled, writing"},
      {{"--sort", "size"}, "--sort applies to the objects view only"},
      {{"--name", "x"}, "--name applies to the objects view only"},
      {{"--yes"}, "--yes applies to --gc only"},
      {{"--min-age", "5"}, "--min-age applies to --gc only"},
      {{"--list", "objects"}, "--list shows no view"},
      {{"--list", "--gc"}, "--list and --gc do not go together"},
      {{"--list", "--watch", "1"}, "--watch refreshes a view"},
      {{"--list", "--segment", "flags"}, "--list shows every segment"},
      {{"--json=yes"}, "--json takes no value"},
      {{"--segment", ""}, "--segment needs a non-empty name"},
      {{"--segment", "../etc"}, "invalid segment name '../etc'"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--dir", dir.path()};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = memstat(args);
    SCOPED_TRACE(c.args.front());
    expect_exit(r, 2, c.message);
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  auto bad_dir = memstat({"--dir", dir.path() + "/nope", "--list"});
  expect_exit(bad_dir, 2, "cannot list segments in directory " + dir.path() + "/nope");
}

TEST(Memstat, help_describes_every_flag_with_an_example) {
  auto r = memstat({"--help"});
  ASSERT_EQ(r.code, 0) << r.err;
  // Each option's line ("  -s, --segment NAME  ...") is followed by its
  // description and an example line that uses it.
  std::vector<std::string> lines;
  for (std::size_t at = 0; at < r.out.size();) {
    auto nl = r.out.find('\n', at);
    lines.push_back(r.out.substr(at, nl - at));
    at = nl == std::string::npos ? r.out.size() : nl + 1;
  }
  auto trimmed = [](const std::string& l) { return l.substr(std::min(l.find_first_not_of(' '), l.size())); };
  for (std::string flag : {"--segment", "--dir", "--json", "--watch", "--sort", "--name", "--state", "--list", "--gc",
                           "--yes", "--min-age", "--help", "--version"}) {
    SCOPED_TRACE(flag);
    std::size_t def = 0;
    while (def < lines.size() && !(trimmed(lines[def]).starts_with("-") &&
                                   (trimmed(lines[def]).starts_with(flag + " ") || trimmed(lines[def]) == flag ||
                                    trimmed(lines[def]).find(", " + flag) == 2))) {
      ++def;
    }
    ASSERT_LT(def, lines.size()) << "no line defines " << flag;
    std::size_t ex = def + 1;
    while (ex < lines.size() && !trimmed(lines[ex]).starts_with("sealstore-memstat ")) ++ex;
    ASSERT_LT(ex, lines.size()) << "no example for " << flag;
    EXPECT_NE(lines[ex].find(flag), std::string::npos) << "the example does not use it: " << lines[ex];
  }
  for (const char* code : {"  3  the segment does not exist", "  4  the segment is of another", "  5  permission",
                           "  7  --gc --segment NAME"}) {
    EXPECT_NE(r.out.find(code), std::string::npos) << code;
  }
  auto v = memstat({"--version"});
  EXPECT_EQ(v.code, 0);
  EXPECT_TRUE(v.out.starts_with("sealstore-memstat ")) << v.out;
}

// ---- --list

TEST(Memstat, list_shows_each_segment_with_attached_dead_and_lock_holders) {
  TempDir dir;
  Store used = Store::create("used", dir.options());
  { Store idle = Store::create("idle", dir.options()); }
  Pipe attached;
  Pipe done;
  Child worker([&] {
    Store t = Store::attach("used", dir.attach_options());
    attached.send();
    return done.receive() == 'x' ? 0 : 1;
  });
  Child killed([&] {
    Store t = Store::attach("used", dir.attach_options());
    attached.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(attached.receive(), 'x');
  ASSERT_EQ(attached.receive(), 'x');
  killed.kill(SIGKILL);
  ASSERT_EQ(killed.wait().signal, SIGKILL);

  Json doc = memstat_json({"--dir", dir.path(), "--list"});
  ASSERT_EQ(doc["segments"].array().size(), 2U);
  const Json& idle = doc["segments"].array()[0];
  const Json& u = doc["segments"].array()[1];
  EXPECT_EQ(idle["name"].str(), "idle");
  EXPECT_EQ(idle["status"].str(), "ok");
  EXPECT_EQ(idle["attached_alive"].integer(), 0);
  EXPECT_TRUE(idle["lock_holders"].array().empty());
  EXPECT_EQ(u["name"].str(), "used");
  EXPECT_EQ(u["attached_alive"].integer(), 2);  // this process and the worker
  EXPECT_EQ(u["attached_dead"].integer(), 1);
  std::vector<std::int64_t> holders;
  for (const auto& h : u["lock_holders"].array()) holders.push_back(h["pid"].integer());
  std::sort(holders.begin(), holders.end());
  std::vector<std::int64_t> want = {::getpid(), worker.pid()};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(holders, want) << "every attached process holds the file lock; the killed one no more";

  auto text = memstat({"--dir", dir.path(), "--list"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("TOTAL (2 segments)"), std::string::npos) << text.out;
  done.send();
  EXPECT_EQ(worker.wait().code, 0);
}

TEST(Memstat, list_reports_a_segment_whose_creator_holds_the_exclusive_lock) {
  TempDir dir;
  { Store s = Store::create("making", dir.options()); }
  // What a creator does while it initialises: hold LOCK_EX on the file.
  int fd = ::open(dir.file("making").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  Json doc = memstat_json({"--dir", dir.path(), "--list"});
  ::close(fd);
  const Json& e = doc["segments"].array().at(0);
  EXPECT_EQ(e["status"].str(), "being-created");
  EXPECT_TRUE(e["lock_holders"].array().at(0)["exclusive"].boolean());
  EXPECT_TRUE(e["attached_alive"].is_null());
}

// ---- --gc

TEST(Memstat, gc_removes_unused_segments_and_keeps_those_in_use) {
  TempDir dir;
  Store used = Store::create("used", dir.options());
  { Store idle = Store::create("idle", dir.options()); }
  Pipe attached;
  Child owner([&] {
    Store t = Store::create("crashed", dir.options());
    t.put(std::vector<int>(100, 1));
    attached.send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(attached.receive(), 'x');
  owner.kill(SIGKILL);
  ASSERT_EQ(owner.wait().signal, SIGKILL);

  auto r = memstat({"--dir", dir.path(), "--gc", "--yes", "--min-age", "0", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  Json doc = parse_json(r.out);
  std::map<std::string, std::string> action;
  for (const auto& d : doc["segments"].array()) action[d["name"].str()] = d["action"].str();
  EXPECT_EQ(action["idle"], "removed");
  EXPECT_EQ(action["crashed"], "removed");
  EXPECT_EQ(action["used"], "kept");
  EXPECT_EQ(doc["removed"].integer(), 2);
  EXPECT_FALSE(dir.has("idle"));
  EXPECT_FALSE(dir.has("crashed"));
  ASSERT_TRUE(dir.has("used"));
  used.put(std::uint64_t{7});  // still works

  // Named and in use: kept, with its own exit code.
  auto named = memstat({"--dir", dir.path(), "--gc", "--yes", "--min-age", "0", "--segment", "used"});
  expect_exit(named, 7, "");
  EXPECT_NE(named.out.find("in use: attached processes hold its lock (pid " + std::to_string(::getpid())),
            std::string::npos)
      << named.out;
  EXPECT_TRUE(dir.has("used"));
}

TEST(Memstat, gc_keeps_a_segment_whose_lock_is_held_even_with_no_process_in_its_table) {
  TempDir dir;
  { Store s = Store::create("locked", dir.options()); }
  int fd = ::open(dir.file("locked").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_SH), 0);  // as every attached process does
  auto r = memstat({"--dir", dir.path(), "--gc", "--yes", "--min-age", "0", "--segment", "locked"});
  ::close(fd);
  expect_exit(r, 7, "");
  EXPECT_TRUE(dir.has("locked"));
  auto after = memstat({"--dir", dir.path(), "--gc", "--yes", "--min-age", "0", "--segment", "locked"});
  EXPECT_EQ(after.code, 0) << after.err;
  EXPECT_FALSE(dir.has("locked"));
}

TEST(Memstat, gc_asks_first_and_removes_only_on_yes) {
  TempDir dir;
  { Store s = Store::create("idle", dir.options()); }
  std::vector<std::string> args = {"--dir", dir.path(), "--gc", "--min-age", "0"};
  auto no = memstat(args, {.input = "n\n"});
  ASSERT_EQ(no.code, 0) << no.err;
  EXPECT_NE(no.err.find("Remove 1 unused segment? [y/N]"), std::string::npos) << no.err;
  EXPECT_NE(no.out.find("Nothing removed."), std::string::npos) << no.out;
  EXPECT_TRUE(dir.has("idle"));
  auto eof = memstat(args);  // no answer at all: no
  ASSERT_EQ(eof.code, 0) << eof.err;
  EXPECT_TRUE(dir.has("idle"));
  auto yes = memstat(args, {.input = "y\n"});
  ASSERT_EQ(yes.code, 0) << yes.err;
  EXPECT_NE(yes.out.find("Removed 1 segment"), std::string::npos) << yes.out;
  EXPECT_FALSE(dir.has("idle"));
}

TEST(Memstat, gc_spares_a_segment_younger_than_min_age) {
  TempDir dir;
  { Store s = Store::create("fresh", dir.options()); }
  auto r = memstat({"--dir", dir.path(), "--gc", "--yes", "--segment", "fresh"});  // default: 10 s
  expect_exit(r, 7, "");
  EXPECT_NE(r.out.find("under --min-age 10s"), std::string::npos) << r.out;
  EXPECT_TRUE(dir.has("fresh"));
}

// ---- --watch

TEST(Memstat, watch_refreshes_with_deltas_until_interrupted) {
  TempDir dir;
  Store s = Store::create("watch", dir.options(8 * kMiB));
  Memstat m({"--dir", dir.path(), "--segment", "watch", "--watch", "0.05", "--json"});
  auto first = m.read_line();
  ASSERT_TRUE(first.has_value());
  Json f = parse_json(*first);
  EXPECT_EQ(f["watch"]["sequence"].integer(), 0);
  EXPECT_TRUE(f["watch"]["since_previous_seconds"].is_null());
  EXPECT_FALSE(process_by_pid(f, ::getpid()).has("delta"));

  // Pin 1 MiB; the refreshes after it must account for exactly that.
  RemoteRef r = s.put(std::vector<std::uint8_t>(kMiB, 3));
  View v = s.fetch(r);
  std::int64_t pinned_delta_sum = 0;
  std::int64_t last_seq = 0;
  for (int i = 0; i < 400; ++i) {
    auto line = m.read_line();
    ASSERT_TRUE(line.has_value()) << "no refresh";
    Json doc = parse_json(*line);
    EXPECT_EQ(doc["watch"]["sequence"].integer(), last_seq + 1);
    last_seq = doc["watch"]["sequence"].integer();
    EXPECT_TRUE(doc["watch"]["since_previous_seconds"].is_number());
    const Json& me = process_by_pid(doc, ::getpid());
    EXPECT_EQ(me["cpu_basis"].str(), "interval");
    pinned_delta_sum += me["delta"]["pinned_bytes"].integer();
    if (me["pins"]["bytes"].integer() == static_cast<std::int64_t>(kMiB)) break;
  }
  EXPECT_EQ(pinned_delta_sum, static_cast<std::int64_t>(kMiB));
  m.signal(SIGINT);
  auto done = m.finish();
  EXPECT_EQ(done.code, 0) << "Ctrl-C ends --watch normally: " << done.err;
}

TEST(Memstat, watch_as_text_shows_changes_in_parentheses) {
  TempDir dir;
  Store s = Store::create("wtext", dir.options(8 * kMiB));
  Memstat m({"--dir", dir.path(), "--segment", "wtext", "--watch", "0.05", "segment"});
  // Wait for the first refresh, then change the store.
  for (auto line = m.read_line(); line && line->find("created") == std::string::npos; line = m.read_line()) {
  }
  s.put(std::vector<std::uint8_t>(kMiB, 3));
  bool seen = false;
  for (int i = 0; i < 4000 && !seen; ++i) {
    auto line = m.read_line();
    ASSERT_TRUE(line.has_value());
    seen = line->find("objects") != std::string::npos && line->find("1 of 1024 (+1)") != std::string::npos;
  }
  EXPECT_TRUE(seen);
  m.signal(SIGTERM);
  EXPECT_EQ(m.finish().code, 0);
}

}  // namespace
}  // namespace sealstore

#endif
