// The DLPack exchange structures (the unversioned ABI, DLPack 0.x), declared
// here field for field so the module needs no extra package. A consumer
// takes a DLManagedTensor out of a "dltensor" capsule and calls its deleter
// when done, from any thread, with or without the GIL.
#pragma once

#include <cstdint>

namespace sealstore::python::dlpack {

enum DeviceType : std::int32_t { kCPU = 1 };
enum TypeCode : std::uint8_t { kInt = 0, kUInt = 1, kFloat = 2, kBool = 6 };

struct Device {
  std::int32_t device_type;
  std::int32_t device_id;
};

struct DataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  std::int32_t ndim;
  DataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; never null here
  std::uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

inline constexpr const char* kCapsuleName = "dltensor";
inline constexpr const char* kUsedCapsuleName = "used_dltensor";

}  // namespace sealstore::python::dlpack
