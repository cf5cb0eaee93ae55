// A small JSON writer for memstat's --json output: strings are escaped
// (control characters, quotes, backslashes; invalid UTF-8 becomes U+FFFD),
// numbers are written exactly, and the text is pretty-printed or on one
// line. Not thread-safe; one document per writer.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sealstore::memstat {

// s as a JSON string literal, quotes included.
std::string json_quote(std::string_view s);

class JsonWriter {
 public:
  explicit JsonWriter(bool pretty) : pretty_(pretty) {}

  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // The next member's name (inside an object).
  JsonWriter& key(std::string_view k);

  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(bool b);
  template <std::integral T>
  requires(!std::same_as<T, bool>) JsonWriter& value(T v) { return raw(std::to_string(v)); }
  // Finite numbers with `decimals` digits after the point; NaN and
  // infinities (which JSON lacks) become null.
  JsonWriter& value(double v, int decimals = 3);
  JsonWriter& null();

  // key(k).value(v)
  template <class V>
  JsonWriter& member(std::string_view k, const V& v) {
    key(k);
    return value(v);
  }

  // The document so far (complete once every begin has its end).
  const std::string& str() const { return out_; }

 private:
  JsonWriter& raw(std::string_view text);
  void before_value();
  void newline();

  struct Level {
    bool object;
    std::size_t count;
  };
  bool pretty_;
  bool after_key_ = false;
  std::vector<Level> stack_;
  std::string out_;
};

}  // namespace sealstore::memstat
