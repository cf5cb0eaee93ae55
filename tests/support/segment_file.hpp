// Raw access to a segment's backing file, as another process that can
// write it (a bug, a crash of another program or a hostile user) would
// have: pread and pwrite at offsets of the on-memory layout.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "sealstore/store.hpp"

namespace sealstore::test {

class SegmentFile {
 public:
  explicit SegmentFile(const std::string& name) : fd_(::open(Store::path_of(name).c_str(), O_RDWR | O_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error("cannot open the segment file");
  }
  ~SegmentFile() { ::close(fd_); }
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;

  template <class T>
  void write(std::uint64_t offset, const T& v) const {
    if (::pwrite(fd_, &v, sizeof v, static_cast<off_t>(offset)) != static_cast<ssize_t>(sizeof v)) {
      throw std::runtime_error("pwrite failed");
    }
  }
  template <class T>
  T read(std::uint64_t offset) const {
    T v{};
    if (::pread(fd_, &v, sizeof v, static_cast<off_t>(offset)) != static_cast<ssize_t>(sizeof v)) {
      throw std::runtime_error("pread failed");
    }
    return v;
  }
  void write_bytes(std::uint64_t offset, const std::vector<unsigned char>& bytes) const {
    if (::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset)) != static_cast<ssize_t>(bytes.size())) {
      throw std::runtime_error("pwrite failed");
    }
  }
  void fill(std::uint64_t offset, std::uint64_t bytes, unsigned char c) const {
    write_bytes(offset, std::vector<unsigned char>(bytes, c));
  }
  void resize(std::uint64_t bytes) const {
    if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) throw std::runtime_error("ftruncate failed");
  }

 private:
  int fd_;
};

}  // namespace sealstore::test
