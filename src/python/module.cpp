// sealstore._sealstore: the Python binding of sealstore::Store. Views export
// the sealed bytes where they lie (buffer protocol, numpy, DLPack) and hold
// the pin for as long as anything made from them lives. Blocking calls wait
// without the GIL, in slices, so Ctrl-C interrupts them.
#include <pthread.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dlpack_abi.hpp"
#include "errors.hpp"
#include "sealstore/sealstore.hpp"
#include "values.hpp"

namespace py = pybind11;

namespace sealstore::python {

namespace {

using clock = std::chrono::steady_clock;
using Deadline = std::optional<clock::time_point>;

// How long a blocking call waits without the GIL before it looks for
// signals (Ctrl-C): the longest delay before KeyboardInterrupt.
constexpr auto kWaitSlice = std::chrono::milliseconds(100);
// Copies at least this large run without the GIL.
constexpr std::size_t kReleaseGilBytes = std::size_t{64} << 10U;

// Bumped in every child of fork(): objects made before it refuse to be used
// in the child, as the C++ library's own handles do.
std::atomic<std::uint64_t> g_fork_epoch{0};
std::uint64_t fork_epoch() noexcept { return g_fork_epoch.load(std::memory_order_relaxed); }

[[noreturn]] void invalid(const std::string& what) { throw Error(Errc::InvalidArgument, what); }

// numpy dtypes by ElemType, made once.
std::array<PyObject*, 16> g_dtypes{};
py::dtype dtype_of(const ElemSpec& e) {
  return py::reinterpret_borrow<py::dtype>(g_dtypes.at(static_cast<std::size_t>(e.elem)));
}

Deadline deadline_after(std::optional<double> seconds) {
  if (!seconds) return std::nullopt;
  if (std::isnan(*seconds) || *seconds < 0) invalid("timeout must be None or a number of seconds >= 0");
  if (*seconds > 1e9) return std::nullopt;  // longer than any process lives
  return clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(*seconds));
}

// Runs attempt(slice) without the GIL until it succeeds, throws something
// other than Timeout, or the deadline passes; between slices, with the GIL,
// lets Python handle signals (a KeyboardInterrupt propagates).
template <class Attempt>
auto wait_in_slices(Deadline deadline, Attempt attempt) {
  for (;;) {
    std::chrono::nanoseconds slice = kWaitSlice;
    if (deadline) {
      auto left = *deadline - clock::now();
      if (left < slice) slice = std::max(std::chrono::nanoseconds(0), std::chrono::nanoseconds(left));
    }
    {
      py::gil_scoped_release nogil;
      try {
        return attempt(slice);
      } catch (const Error& e) {
        if (e.code() != Errc::Timeout || (deadline && clock::now() >= *deadline)) throw;
      }
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

// ---- the Store handle

// A Subscription and the Store it came from (kept while it lives).
struct PySubscription {
  std::shared_ptr<Store> keep;
  Subscription sub;
};

// A Store shared by its Python object and calls in flight without the GIL,
// so close() from another thread cannot pull the segment from under them.
struct PyStore {
  std::shared_ptr<Store> store;
  std::shared_ptr<Store> get() const {
    if (!store) invalid("this Store was closed; attach again");
    return store;
  }
};

// ---- views

// A pinned object and its export layout, shared by the View object and
// every DLPack capsule made from it: the pin goes with the last of them.
struct Pin {
  View view;
  Layout layout;
};

struct PyView {
  std::shared_ptr<const Pin> pin;
  std::uint64_t epoch = fork_epoch();
  Py_ssize_t exports = 0;  // buffers exported and not yet released (under the GIL)

  const Pin& get() const {
    if (!pin) invalid("operation on a released view");
    if (epoch != fork_epoch()) {
      invalid("this view of " + pin->view.ref().to_string() +
              " was inherited across fork(); attach again in the child and fetch it there");
    }
    return *pin;
  }
};

PyView make_view(View v) {
  Layout layout = layout_of(v.type(), v.size());
  return PyView{std::make_shared<const Pin>(Pin{std::move(v), layout})};
}

// ---- writers

struct PyWriter {
  Writer writer;
  Layout layout;
  std::uint64_t epoch = fork_epoch();
  Py_ssize_t exports = 0;

  Writer& get() {
    if (writer.empty()) invalid("this writer was sealed or aborted already");
    if (epoch != fork_epoch()) {
      invalid("this writer of " + writer.ref().to_string() +
              " was inherited across fork(); only the process that made it can fill and seal it");
    }
    return writer;
  }
  void check_unexported(const char* verb) const {
    if (exports != 0) {
      throw py::buffer_error(std::string("cannot ") + verb + " this writer while " + std::to_string(exports) +
                             " array(s) or memoryview(s) of its buffer exist: delete them first (a sealed "
                             "object must never change, and an aborted one's space is reused)");
    }
  }
};

// ---- buffer protocol (custom slots: no allocation per export)

template <class F>
int guarded(F f) noexcept {
  try {
    return f();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const Error& e) {
    set_python_error(e);
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return -1;
}

void fill_buffer(Py_buffer* b, PyObject* owner, void* data, std::size_t len, const Layout& l, bool readonly,
                 int flags) {
  b->buf = data;
  b->obj = owner;
  Py_INCREF(owner);
  b->len = static_cast<Py_ssize_t>(len);
  b->readonly = readonly ? 1 : 0;
  b->itemsize = l.itemsize;
  // const_cast: CPython's field is char*, never written through.
  b->format = (flags & PyBUF_FORMAT) != 0 ? const_cast<char*>(l.format) : nullptr;  // NOLINT
  b->ndim = l.ndim;
  b->shape = (flags & PyBUF_ND) == PyBUF_ND ? const_cast<Py_ssize_t*>(l.shape.data()) : nullptr;  // NOLINT
  b->strides =
      (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? const_cast<Py_ssize_t*>(l.strides.data()) : nullptr;  // NOLINT
  b->suboffsets = nullptr;
  b->internal = nullptr;
  if (b->shape == nullptr) {  // a plain run of bytes was asked for
    b->ndim = 1;
    b->itemsize = 1;
  }
}

int view_getbuffer(PyObject* self, Py_buffer* b, int flags) {
  return guarded([&] {
    auto& v = py::handle(self).cast<PyView&>();
    if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
      throw py::buffer_error("a sealed object is read-only: materialize() makes a writable copy");
    }
    const Pin& p = v.get();
    auto bytes = p.view.bytes();
    // const_cast: the buffer is exported read-only, and the mapping is.
    fill_buffer(b, self, const_cast<std::byte*>(bytes.data()), bytes.size(), p.layout, true, flags);  // NOLINT
    ++v.exports;
    return 0;
  });
}

void view_releasebuffer(PyObject* self, Py_buffer* /*b*/) {
  auto* v = py::handle(self).cast<PyView*>();
  --v->exports;
}

int writer_getbuffer(PyObject* self, Py_buffer* b, int flags) {
  return guarded([&] {
    auto& w = py::handle(self).cast<PyWriter&>();
    auto bytes = w.get().bytes();
    fill_buffer(b, self, bytes.data(), bytes.size(), w.layout, false, flags);
    ++w.exports;
    return 0;
  });
}

void writer_releasebuffer(PyObject* self, Py_buffer* /*b*/) {
  auto* w = py::handle(self).cast<PyWriter*>();
  --w->exports;
}

// Installs custom buffer slots on a class made with py::buffer_protocol().
void set_buffer_procs(py::handle cls, getbufferproc get, releasebufferproc release) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());  // NOLINT: a class object is a type object
  type->tp_as_buffer->bf_getbuffer = get;
  type->tp_as_buffer->bf_releasebuffer = release;
  PyType_Modified(type);
}

// __array__: reached only when the buffer export failed (numpy then tries
// the other protocols); re-exporting raises the real error.
py::object array_of(py::handle self, const py::object& dtype) {
  py::module_ np = py::module_::import("numpy");
  py::object arr = np.attr("asarray")(py::memoryview(py::reinterpret_borrow<py::object>(self)));
  if (!dtype.is_none()) arr = np.attr("asarray")(arr, dtype);
  return arr;
}

// ---- DLPack

struct DlpackHold {
  std::shared_ptr<const Pin> pin;
  std::array<std::int64_t, kMaxRank> shape{};
  std::array<std::int64_t, kMaxRank> strides{};
  dlpack::ManagedTensor tensor{};
};

// Any thread, with or without the GIL: drops a shared_ptr, nothing Python.
void dlpack_deleter(dlpack::ManagedTensor* t) { delete static_cast<DlpackHold*>(t->manager_ctx); }

// A capsule nobody consumed still owns its tensor; a consumer renames it.
void dlpack_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, dlpack::kCapsuleName) == 0) return;
  auto* t = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule, dlpack::kCapsuleName));
  if (t != nullptr) t->deleter(t);
}

py::capsule dlpack_of(const PyView& v) {
  const Pin& p = v.get();
  const Layout& l = p.layout;
  auto hold = std::make_unique<DlpackHold>();
  hold->pin = v.pin;
  std::uint8_t code = l.elem ? l.elem->dlpack_code : std::uint8_t{dlpack::kUInt};
  auto bits = static_cast<std::uint8_t>(l.itemsize * 8);
  for (int d = 0; d < l.ndim; ++d) {
    auto i = static_cast<std::size_t>(d);
    hold->shape.at(i) = l.shape.at(i);
    hold->strides.at(i) = l.strides.at(i) / l.itemsize;
  }
  dlpack::Tensor& t = hold->tensor.dl_tensor;
  t.data = const_cast<std::byte*>(p.view.bytes().data());  // NOLINT: read-only mapping; the consumer may not write
  t.device = {dlpack::kCPU, 0};
  t.ndim = l.ndim;
  t.dtype = {code, bits, 1};
  t.shape = hold->shape.data();
  t.strides = hold->strides.data();
  t.byte_offset = 0;
  hold->tensor.manager_ctx = hold.get();
  hold->tensor.deleter = &dlpack_deleter;
  PyObject* cap = PyCapsule_New(&hold->tensor, dlpack::kCapsuleName, &dlpack_capsule_destructor);
  if (cap == nullptr) throw py::error_already_set();
  (void)hold.release();  // owned by the capsule, then by its consumer
  return py::reinterpret_steal<py::capsule>(cap);
}

// ---- values into the store

std::optional<ElemSpec> elem_of(const py::dtype& dt) {
  if (dt.has_fields()) return std::nullopt;
  return elem_spec_of_numpy(dt.kind(), static_cast<std::size_t>(dt.itemsize()));
}

enum class PutKind { Auto, Array, Bytes };

PutKind put_kind(const std::optional<std::string>& kind) {
  if (!kind) return PutKind::Auto;
  if (*kind == "array") return PutKind::Array;
  if (*kind == "bytes") return PutKind::Bytes;
  invalid("kind must be None, 'array' or 'bytes'; got '" + *kind + "'");
}

// Puts bytes under a new ref (target null) or into *target.
RemoteRef put_raw(Store& s, const RemoteRef* target, const ValueType& t, std::span<const std::byte> bytes) {
  auto run = [&] {
    if (target == nullptr) return s.put_bytes(t, bytes);
    s.put_bytes(*target, t, bytes);
    return *target;
  };
  if (bytes.size() < kReleaseGilBytes) return run();
  py::gil_scoped_release nogil;
  return run();
}

// A C-contiguous buffer of any Python object (bytes, bytearray, memoryview,
// array.array, an ndarray asked to store as bytes), as a Bytes object.
RemoteRef put_buffer(Store& s, const RemoteRef* target, py::handle value) {
  Py_buffer b;
  if (PyObject_GetBuffer(value.ptr(), &b, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> release(&b, &PyBuffer_Release);
  return put_raw(s, target, ValueType{}, {static_cast<const std::byte*>(b.buf), static_cast<std::size_t>(b.len)});
}

RemoteRef put_ndarray(Store& s, const RemoteRef* target, const py::array& a, PutKind kind) {
  py::dtype dt = a.dtype();
  std::optional<ElemSpec> e = elem_of(dt);
  if (!e) {
    throw py::type_error(
        "sealstore stores arrays of bool, int8..int64, uint8..uint64, float32, float64 (and S1); "
        "not dtype " +
        py::str(dt).cast<std::string>());
  }
  std::vector<Py_ssize_t> shape(a.shape(), a.shape() + a.ndim());
  ValueType t = value_type_of(*e, shape.data(), static_cast<int>(a.ndim()), kind == PutKind::Array);
  auto nbytes = static_cast<std::size_t>(a.nbytes());
  char order = dt.byteorder();
  bool native = order == '=' || order == '|' || (order == '<') == (std::endian::native == std::endian::little);
  if (native && (a.flags() & py::array::c_style) != 0) {
    return put_raw(s, target, t, {static_cast<const std::byte*>(a.data()), nbytes});
  }
  // Strided or byte-swapped: numpy copies it straight into the object's space.
  Writer w = target == nullptr ? s.create_writer(nbytes, t) : s.create_writer(*target, nbytes, t);
  py::capsule no_owner(w.bytes().data(), [](void*) {});
  py::array dst(dtype_of(*e), shape, w.bytes().data(), no_owner);
  py::module_::import("numpy").attr("copyto")(dst, a);
  return std::move(w).seal();
}

template <class T>
RemoteRef put_scalar(Store& s, const RemoteRef* target, ElemType elem, T value) {
  ValueType t{ValueKind::Scalar, elem, sizeof(T), 0, 0, {}};
  return put_raw(s, target, t, std::as_bytes(std::span<const T, 1>(&value, 1)));
}

RemoteRef put_value(const PyStore& ps, const RemoteRef* target, py::handle value,
                    const std::optional<std::string>& kind_name) {
  PutKind kind = put_kind(kind_name);
  std::shared_ptr<Store> keep = ps.get();
  Store& s = *keep;
  if (kind == PutKind::Bytes) return put_buffer(s, target, value);
  if (py::isinstance<py::array>(value)) return put_ndarray(s, target, py::reinterpret_borrow<py::array>(value), kind);
  if (kind == PutKind::Array) {
    throw py::type_error("kind='array' takes a one-dimensional numpy array");
  }
  if (PyBool_Check(value.ptr())) return put_scalar<bool>(s, target, ElemType::Bool, value.ptr() == Py_True);
  if (PyLong_Check(value.ptr())) {
    long long v = PyLong_AsLongLong(value.ptr());
    if (v == -1 && PyErr_Occurred() != nullptr) throw py::error_already_set();
    return put_scalar<std::int64_t>(s, target, ElemType::Int64, v);
  }
  if (PyFloat_Check(value.ptr()))
    return put_scalar<double>(s, target, ElemType::Float64, PyFloat_AsDouble(value.ptr()));
  if (PyUnicode_Check(value.ptr())) {
    Py_ssize_t n = 0;
    const char* text = PyUnicode_AsUTF8AndSize(value.ptr(), &n);
    if (text == nullptr) throw py::error_already_set();
    ValueType t{ValueKind::String, ElemType::None, 1, 0, 0, {}};
    return put_raw(s, target, t, {reinterpret_cast<const std::byte*>(text), static_cast<std::size_t>(n)});  // NOLINT
  }
  py::module_ np = py::module_::import("numpy");
  if (py::isinstance(value, np.attr("generic"))) {
    return put_ndarray(s, target, np.attr("asarray")(value).cast<py::array>(), kind);
  }
  if (PyObject_CheckBuffer(value.ptr()) != 0) return put_buffer(s, target, value);
  throw py::type_error("sealstore stores numpy arrays and scalars, bytes-like objects, str, int and float; not " +
                       py::str(py::type::of(value)).cast<std::string>());
}

// ---- values out of the store

py::object materialize_view(const Pin& p) {
  const Layout& l = p.layout;
  auto bytes = p.view.bytes();
  ValueType t = p.view.type();
  if (l.elem && l.ndim == 0) {
    const std::byte* b = bytes.data();
    auto load = [b]<class T>(T) {
      T v;
      std::memcpy(&v, b, sizeof(T));
      return v;
    };
    switch (l.elem->elem) {
      case ElemType::Bool: return py::bool_(load(bool{}));
      case ElemType::Int8: return py::int_(load(std::int8_t{}));
      case ElemType::Int16: return py::int_(load(std::int16_t{}));
      case ElemType::Int32: return py::int_(load(std::int32_t{}));
      case ElemType::Int64: return py::int_(load(std::int64_t{}));
      case ElemType::UInt8: return py::int_(load(std::uint8_t{}));
      case ElemType::UInt16: return py::int_(load(std::uint16_t{}));
      case ElemType::UInt32: return py::int_(load(std::uint32_t{}));
      case ElemType::UInt64: return py::int_(load(std::uint64_t{}));
      case ElemType::Float32: return py::float_(load(float{}));
      case ElemType::Float64: return py::float_(load(double{}));
      default: break;  // Char: one byte, below
    }
  }
  if (l.elem) {
    std::vector<Py_ssize_t> shape(l.shape.begin(), l.shape.begin() + l.ndim);
    py::array out(dtype_of(*l.elem), shape);
    auto* dst = static_cast<std::byte*>(out.mutable_data());
    if (bytes.size() >= kReleaseGilBytes) {
      py::gil_scoped_release nogil;
      std::memcpy(dst, bytes.data(), bytes.size());
    } else if (!bytes.empty()) {
      std::memcpy(dst, bytes.data(), bytes.size());
    }
    return out;
  }
  const char* chars = reinterpret_cast<const char*>(bytes.data());  // NOLINT: bytes of chars
  if (t.kind == ValueKind::String) {
    PyObject* s = PyUnicode_DecodeUTF8(chars, static_cast<Py_ssize_t>(bytes.size()), "surrogateescape");
    if (s == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(s);
  }
  return py::bytes(chars, bytes.size());
}

std::string kind_name(const ValueType& t) {
  switch (t.kind) {
    case ValueKind::Bytes: return "bytes";
    case ValueKind::Scalar: return "scalar";
    case ValueKind::Array: return "array";
    case ValueKind::String: return "string";
    case ValueKind::NdArray: return "ndarray";
  }
  return "unknown";
}

py::tuple shape_tuple(const Layout& l) {
  py::tuple out(static_cast<std::size_t>(l.ndim));
  for (int d = 0; d < l.ndim; ++d) {
    auto i = static_cast<std::size_t>(d);
    out[i] = py::int_(l.shape.at(i));
  }
  return out;
}

py::object dtype_or_bytes(const Layout& l) {
  if (l.elem) return dtype_of(*l.elem);
  return py::dtype("uint8");
}

// ---- fetching

PyView fetch_view(const PyStore& ps, const RemoteRef& ref, std::optional<double> timeout) {
  std::shared_ptr<Store> keep = ps.get();
  Deadline deadline = deadline_after(timeout);
  if (std::optional<View> v = keep->try_fetch(ref)) return make_view(std::move(*v));
  View v = wait_in_slices(deadline, [&](std::chrono::nanoseconds slice) { return keep->fetch(ref, slice); });
  return make_view(std::move(v));
}

std::vector<PyView> fetch_many_views(const PyStore& ps, const std::vector<RemoteRef>& refs,
                                     std::optional<double> timeout) {
  std::shared_ptr<Store> keep = ps.get();
  Deadline deadline = deadline_after(timeout);
  std::vector<View> views;
  try {
    views = keep->fetch_many(refs, FetchOptions{.timeout = std::chrono::nanoseconds(0)});
  } catch (const Error& e) {
    if (e.code() != Errc::Timeout) throw;
    views = wait_in_slices(deadline, [&](std::chrono::nanoseconds slice) {
      return keep->fetch_many(refs, FetchOptions{.timeout = slice});
    });
  }
  std::vector<PyView> out;
  out.reserve(views.size());
  for (View& v : views) out.push_back(make_view(std::move(v)));
  return out;
}

std::string repr_of(const Pin& p) {
  return "<sealstore.View " + p.view.ref().to_string() + " " + p.view.type().describe() + ", " +
         std::to_string(p.view.size()) + " B>";
}

}  // namespace

}  // namespace sealstore::python

using namespace sealstore;          // NOLINT(google-build-using-namespace): the module's one scope
using namespace sealstore::python;  // NOLINT(google-build-using-namespace)

PYBIND11_MODULE(_sealstore, m) {
  m.doc() = "sealstore: share large immutable values between processes through one shared-memory segment";
  pthread_atfork(nullptr, nullptr, [] { g_fork_epoch.fetch_add(1, std::memory_order_relaxed); });

  if (!add_error_classes(m.ptr())) throw py::error_already_set();
  py::register_exception_translator(
      [](std::exception_ptr p) {  // NOLINT(performance-unnecessary-value-param): pybind11 takes it by value
        try {
          if (p) std::rethrow_exception(p);
        } catch (const Error& e) {
          set_python_error(e);
        }
      });

  py::module_ np = py::module_::import("numpy");
  for (ElemType e :
       {ElemType::Int8, ElemType::Int16, ElemType::Int32, ElemType::Int64, ElemType::UInt8, ElemType::UInt16,
        ElemType::UInt32, ElemType::UInt64, ElemType::Float32, ElemType::Float64, ElemType::Bool, ElemType::Char}) {
    char format[2] = {elem_spec(e)->format, '\0'};
    g_dtypes.at(static_cast<std::size_t>(e)) = py::dtype(format).release().ptr();
  }

  // ---- RemoteRef
  py::class_<RemoteRef> ref_cls(m, "RemoteRef", "The name of one object in one segment: prints, parses, pickles.");
  ref_cls.def(py::init<>(), "The null ref: names nothing.")
      .def_property_readonly("id", &RemoteRef::id)
      .def_property_readonly("where", &RemoteRef::where, "The worker meant to fill the ref (or that filled it).")
      .def_property_readonly("whence", &RemoteRef::whence, "The worker that made the ref.")
      .def_property_readonly("segment_tag", &RemoteRef::segment_tag)
      .def_property_readonly("is_null", &RemoteRef::is_null)
      .def_static("parse", &RemoteRef::parse, py::arg("text"),
                  "The ref str(ref) printed. Raises InvalidArgument for any other text.")
      .def("__str__", &RemoteRef::to_string)
      .def("__repr__", &RemoteRef::to_string)
      .def(
          "__eq__", [](const RemoteRef& a, const RemoteRef& b) { return a == b; }, py::is_operator())
      .def(
          "__ne__", [](const RemoteRef& a, const RemoteRef& b) { return !(a == b); }, py::is_operator())
      .def("__hash__", [](const RemoteRef& r) { return std::hash<RemoteRef>{}(r); })
      .def(py::pickle([](const RemoteRef& r) { return py::make_tuple(r.to_string()); },
                      [](const py::tuple& t) {
                        if (t.size() != 1) invalid("a pickled RemoteRef is one string");
                        return RemoteRef::parse(t[0].cast<std::string>());
                      }));

  // ---- introspection values
  py::class_<SegmentInfo>(m, "SegmentInfo")
      .def_readonly("name", &SegmentInfo::name)
      .def_readonly("path", &SegmentInfo::path)
      .def_readonly("capacity", &SegmentInfo::capacity)
      .def_readonly("used", &SegmentInfo::used)
      .def_readonly("cached", &SegmentInfo::cached)
      .def_readonly("largest_free", &SegmentInfo::largest_free)
      .def_readonly("objects", &SegmentInfo::objects)
      .def_readonly("max_objects", &SegmentInfo::max_objects)
      .def_readonly("processes", &SegmentInfo::processes)
      .def_readonly("mode", &SegmentInfo::mode)
      .def_readonly("file_size", &SegmentInfo::file_size)
      .def_readonly("spill_directory", &SegmentInfo::spill_directory)
      .def_readonly("spilled_objects", &SegmentInfo::spilled_objects)
      .def_readonly("spilled_bytes", &SegmentInfo::spilled_bytes)
      .def_readonly("spills", &SegmentInfo::spills)
      .def_readonly("restores", &SegmentInfo::restores)
      .def_readonly("seal_events", &SegmentInfo::seal_events)
      .def_readonly("subscribers", &SegmentInfo::subscribers);
  py::class_<ObjectInfo>(m, "ObjectInfo")
      .def_readonly("ref", &ObjectInfo::ref)
      .def_property_readonly("state", [](const ObjectInfo& o) { return std::string(to_string(o.state)); })
      .def_readonly("size", &ObjectInfo::size)
      .def_property_readonly("type", [](const ObjectInfo& o) { return o.type.describe(); })
      .def_readonly("creator", &ObjectInfo::creator)
      .def_readonly("sealed_by", &ObjectInfo::sealed_by)
      .def_readonly("pinned_by", &ObjectInfo::pinned_by)
      .def_readonly("waiters", &ObjectInfo::waiters)
      .def_readonly("names", &ObjectInfo::names)
      .def_property_readonly(
          "place", [](const ObjectInfo& o) { return std::string(to_string(o.place)); },
          "'segment', 'spill' (only in its spill file) or 'restoring'.")
      .def_readonly("spill_file", &ObjectInfo::spill_file);
  py::class_<SealEvent>(m, "SealEvent")
      .def_readonly("sequence", &SealEvent::sequence)
      .def_readonly("missed", &SealEvent::missed, "Events lost just before this one.")
      .def_readonly("ref", &SealEvent::ref)
      .def_property_readonly("type", [](const SealEvent& e) { return e.type.describe(); })
      .def_readonly("size", &SealEvent::size)
      .def_readonly("sealed_by", &SealEvent::sealed_by)
      .def_readonly("sealed_by_pid", &SealEvent::sealed_by_pid)
      .def("__repr__", [](const SealEvent& e) {
        return "<sealstore.SealEvent " + std::to_string(e.sequence) + " " + e.ref.to_string() + " " +
               e.type.describe() + ">";
      });
  py::class_<PySubscription>(m, "Subscription", "Seal events of a store, in seal order, from subscribe() on.")
      .def(
          "next",
          [](PySubscription& s, std::optional<double> timeout) -> std::optional<SealEvent> {
            if (!s.keep) invalid("this Subscription is closed");
            Deadline deadline = deadline_after(timeout);
            for (;;) {
              std::chrono::nanoseconds slice = kWaitSlice;
              if (deadline) {
                auto left = *deadline - clock::now();
                if (left < slice) slice = std::max(std::chrono::nanoseconds(0), std::chrono::nanoseconds(left));
              }
              std::optional<SealEvent> ev;
              {
                py::gil_scoped_release nogil;
                ev = s.sub.next(slice);
              }
              if (ev || (deadline && clock::now() >= *deadline)) return ev;
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            }
          },
          py::arg("timeout") = py::none(),
          "The next seal event, waiting (without the GIL) up to timeout seconds; None if none came.")
      .def_property_readonly("position", [](const PySubscription& s) { return s.sub.position(); })
      .def_property_readonly("missed", [](const PySubscription& s) { return s.sub.missed(); })
      .def("close",
           [](PySubscription& s) {
             s.sub = Subscription();
             s.keep.reset();
           })
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", [](PySubscription& s) {
        if (!s.keep) throw py::stop_iteration();
        std::optional<SealEvent> ev;
        for (;;) {
          {
            py::gil_scoped_release nogil;
            ev = s.sub.next(kWaitSlice);
          }
          if (ev) return *ev;
          if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        }
      });
  py::class_<ProcessInfo>(m, "ProcessInfo")
      .def_readonly("pid", &ProcessInfo::pid)
      .def_readonly("id", &ProcessInfo::id)
      .def_property_readonly("role", [](const ProcessInfo& p) { return std::string(to_string(p.role)); })
      .def_readonly("alive", &ProcessInfo::alive)
      .def_readonly("pinned_objects", &ProcessInfo::pinned_objects)
      .def_readonly("pinned_bytes", &ProcessInfo::pinned_bytes)
      .def_readonly("objects_created", &ProcessInfo::objects_created);

  // ---- View
  py::class_<PyView> view_cls(m, "View", py::buffer_protocol(),
                              "A pinned, read-only window onto one sealed object. np.asarray(view), "
                              "memoryview(view) and np.from_dlpack(view) read its bytes where they lie; "
                              "each keeps the pin until it is gone.");
  set_buffer_procs(view_cls, &view_getbuffer, &view_releasebuffer);
  view_cls.def_property_readonly("ref", [](const PyView& v) { return v.get().view.ref(); })
      .def_property_readonly("nbytes", [](const PyView& v) { return v.get().view.size(); })
      .def_property_readonly(
          "type", [](const PyView& v) { return v.get().view.type().describe(); },
          "The stored type, as C++ describes it: 'f64[1000x1000]', 'i32[]', 'string', ...")
      .def_property_readonly(
          "kind", [](const PyView& v) { return kind_name(v.get().view.type()); },
          "'ndarray', 'array', 'scalar', 'string' or 'bytes'.")
      .def_property_readonly(
          "dtype", [](const PyView& v) { return dtype_or_bytes(v.get().layout); },
          "The element dtype (uint8 for bytes, strings and other C++ types).")
      .def_property_readonly("shape", [](const PyView& v) { return shape_tuple(v.get().layout); })
      .def_property_readonly("released", [](const PyView& v) { return !v.pin; })
      .def(
          "release",
          [](PyView& v) {
            if (v.exports != 0) {
              throw py::buffer_error("cannot release a view while " + std::to_string(v.exports) +
                                     " array(s) or memoryview(s) of it exist");
            }
            v.pin.reset();
          },
          "Drops this object's pin now (DLPack capsules made from it keep their own).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyView& v, const py::args&) {
             if (v.exports == 0) v.pin.reset();
           })
      .def(
          "__array__", [](const py::object& self, const py::object& dtype) { return array_of(self, dtype); },
          py::arg("dtype") = py::none())
      .def(
          "__dlpack__", [](const PyView& v, const py::args&, const py::kwargs&) { return dlpack_of(v); },
          "A DLPack capsule over the bytes (CPU; stream and version arguments are accepted and need nothing).")
      .def("__dlpack_device__", [](const PyView&) { return py::make_tuple(static_cast<int>(dlpack::kCPU), 0); })
      .def("__repr__",
           [](const PyView& v) { return v.pin ? repr_of(*v.pin) : std::string("<sealstore.View released>"); });

  // ---- Writer
  py::class_<PyWriter> writer_cls(m, "Writer", py::buffer_protocol(),
                                  "Space in the segment to fill in place through np.asarray(writer), then "
                                  "publish with seal(). Dropped unsealed, it gives its space back.");
  set_buffer_procs(writer_cls, &writer_getbuffer, &writer_releasebuffer);
  writer_cls.def_property_readonly("ref", [](PyWriter& w) { return w.get().ref(); })
      .def_property_readonly("nbytes", [](PyWriter& w) { return w.get().bytes().size(); })
      .def_property_readonly("dtype", [](const PyWriter& w) { return dtype_or_bytes(w.layout); })
      .def_property_readonly("shape", [](const PyWriter& w) { return shape_tuple(w.layout); })
      .def(
          "seal",
          [](PyWriter& w) {
            Writer& x = w.get();
            w.check_unexported("seal");
            return std::move(x).seal();
          },
          "Publishes the bytes under the writer's ref and returns it; they never change again.")
      .def(
          "abort",
          [](PyWriter& w) {
            Writer& x = w.get();
            w.check_unexported("abort");
            std::move(x).abort();
          },
          "Gives the space back (a ref made with make_ref() returns to unfilled).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyWriter& w, const py::args&) {
             if (!w.writer.empty() && w.exports == 0 && w.epoch == fork_epoch()) std::move(w.writer).abort();
           })
      .def(
          "__array__", [](const py::object& self, const py::object& dtype) { return array_of(self, dtype); },
          py::arg("dtype") = py::none());

  // ---- Store
  py::class_<PyStore> store_cls(m, "Store", "A handle on one shared-memory segment of sealed objects.");
  store_cls
      .def_static(
          "create",
          [](const std::string& name, std::uint64_t capacity, std::uint32_t max_objects, std::uint32_t max_names,
             std::uint32_t mode, bool prefault, bool huge_pages, const std::string& directory,
             const std::string& spill_directory, double spill_high_water, double spill_low_water) {
            CreateOptions o{capacity,  max_objects,     max_names,        mode,           prefault, huge_pages,
                            directory, spill_directory, spill_high_water, spill_low_water};
            return PyStore{std::make_shared<Store>(Store::create(name, o))};
          },
          py::arg("name"), py::arg("capacity") = std::uint64_t{64} << 20U, py::kw_only(), py::arg("max_objects") = 0,
          py::arg("max_names") = 1024, py::arg("mode") = 0600, py::arg("prefault") = false,
          py::arg("huge_pages") = false, py::arg("directory") = "", py::arg("spill_directory") = "",
          py::arg("spill_high_water") = 1.0, py::arg("spill_low_water") = 1.0,
          "Creates segment NAME with CAPACITY bytes for objects and attaches as its owner. With spill_directory, "
          "a full segment spills sealed objects there and a fetch reads them back.")
      .def_static(
          "attach",
          [](const std::string& name, bool prefault, bool huge_pages, const std::string& directory, bool observer,
             std::vector<std::uint32_t> trusted_owners) {
            AttachOptions o;
            o.prefault = prefault;
            o.huge_pages = huge_pages;
            o.directory = directory;
            o.observer = observer;
            o.trusted_owners = std::move(trusted_owners);
            return PyStore{std::make_shared<Store>(Store::attach(name, o))};
          },
          py::arg("name"), py::kw_only(), py::arg("prefault") = false, py::arg("huge_pages") = false,
          py::arg("directory") = "", py::arg("observer") = false,
          py::arg("trusted_owners") = std::vector<std::uint32_t>{},
          "Attaches to the existing segment NAME (in this process, or a child: multiprocessing).")
      .def_static("remove", &Store::remove, py::arg("name"), py::arg("directory") = "",
                  "Unlinks segment NAME; attached processes keep using it. False if there was none.")
      .def_static("exists", &Store::exists, py::arg("name"), py::arg("directory") = "")
      .def_static("list", &Store::list, py::arg("directory") = "")
      .def_property_readonly("name", [](const PyStore& s) { return s.get()->name(); })
      .def_property_readonly("myid", [](const PyStore& s) { return s.get()->myid(); })
      .def_property_readonly("closed", [](const PyStore& s) { return !s.store; })
      .def(
          "close", [](PyStore& s) { s.store.reset(); },
          "Drops this handle; the attachment ends when views and writers made through it are gone too.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyStore& s, const py::args&) { s.store.reset(); })
      .def(
          "make_ref",
          [](const PyStore& s, std::optional<WorkerId> where) {
            auto st = s.get();
            return where ? st->make_ref(*where) : st->make_ref();
          },
          py::arg("where") = py::none(), "An unfilled ref that any attached process may fill once.")
      .def(
          "put",
          [](const PyStore& s, const RemoteRef& ref, py::handle value, const std::optional<std::string>& kind) {
            put_value(s, &ref, value, kind);
          },
          py::arg("ref"), py::arg("value"), py::kw_only(), py::arg("kind") = py::none())
      .def(
          "put",
          [](const PyStore& s, py::handle value, const std::optional<std::string>& kind) {
            return put_value(s, nullptr, value, kind);
          },
          py::arg("value"), py::kw_only(), py::arg("kind") = py::none(),
          "Copies value into the segment and seals it: put(value) -> new ref, put(ref, value) fills ref.")
      .def(
          "create_writer",
          [](const PyStore& s, std::optional<RemoteRef> ref, const py::object& shape, const py::object& dtype,
             std::optional<std::uint64_t> nbytes, const std::optional<std::string>& kind) {
            auto st = s.get();
            ValueType t;
            std::uint64_t size = 0;
            if (!shape.is_none() || !dtype.is_none()) {
              if (nbytes) invalid("create_writer takes shape and dtype, or nbytes, not both");
              if (shape.is_none() || dtype.is_none()) invalid("create_writer needs both shape and dtype");
              py::dtype dt = py::dtype::from_args(dtype);
              std::optional<ElemSpec> e = elem_of(dt);
              if (!e) throw py::type_error("no sealstore element type for dtype " + py::str(dt).cast<std::string>());
              std::vector<Py_ssize_t> dims;
              if (py::isinstance<py::int_>(shape)) {
                dims.push_back(shape.cast<Py_ssize_t>());
              } else {
                dims = shape.cast<std::vector<Py_ssize_t>>();
              }
              bool as_array = kind && *kind == "array";
              if (kind && !as_array) invalid("kind must be None or 'array' for a typed writer");
              t = value_type_of(*e, dims.data(), static_cast<int>(dims.size()), as_array);
              size = e->size;
              for (Py_ssize_t d : dims) size *= static_cast<std::uint64_t>(d);
            } else if (nbytes) {
              if (kind && *kind != "bytes") invalid("kind must be None or 'bytes' for an untyped writer");
              size = *nbytes;
            } else {
              invalid("create_writer needs shape and dtype, or nbytes");
            }
            Writer w = ref ? st->create_writer(*ref, size, t) : st->create_writer(size, t);
            Layout layout = layout_of(t, w.bytes().size());
            return PyWriter{std::move(w), layout};
          },
          py::arg("ref") = py::none(), py::kw_only(), py::arg("shape") = py::none(), py::arg("dtype") = py::none(),
          py::arg("nbytes") = py::none(), py::arg("kind") = py::none(),
          "Space to fill in place: shape and dtype for an n-d array, or nbytes for bytes.")
      .def("fetch", &fetch_view, py::arg("ref"), py::arg("timeout") = py::none(),
           "Waits (without the GIL; Ctrl-C interrupts) until ref is sealed, then pins it. timeout in seconds.")
      .def(
          "try_fetch",
          [](const PyStore& s, const RemoteRef& ref) -> std::optional<PyView> {
            std::optional<View> v = s.get()->try_fetch(ref);
            if (!v) return std::nullopt;
            return make_view(std::move(*v));
          },
          py::arg("ref"), "The view if ref is sealed now, else None. Never waits.")
      .def("fetch_many", &fetch_many_views, py::arg("refs"), py::arg("timeout") = py::none(),
           "fetch() of every ref, in order; faster than one by one for many objects.")
      .def(
          "materialize",
          [](const PyStore& s, const RemoteRef& ref, std::optional<double> timeout) {
            PyView v = fetch_view(s, ref, timeout);
            return materialize_view(*v.pin);
          },
          py::arg("ref"), py::arg("timeout") = py::none(),
          "One private copy: a writable ndarray, or bytes, str, int, float, bool.")
      .def(
          "fail", [](const PyStore& s, const RemoteRef& ref, const std::string& reason) { s.get()->fail(ref, reason); },
          py::arg("ref"), py::arg("reason"))
      .def(
          "erase", [](const PyStore& s, const RemoteRef& ref) { s.get()->erase(ref); }, py::arg("ref"))
      .def(
          "contains", [](const PyStore& s, const RemoteRef& ref) { return s.get()->contains(ref); }, py::arg("ref"))
      .def("__contains__", [](const PyStore& s, const RemoteRef& ref) { return s.get()->contains(ref); })
      .def(
          "bind", [](const PyStore& s, const std::string& name, const RemoteRef& ref) { s.get()->bind(name, ref); },
          py::arg("name"), py::arg("ref"))
      .def(
          "lookup", [](const PyStore& s, const std::string& name) { return s.get()->lookup(name); }, py::arg("name"))
      .def(
          "unbind", [](const PyStore& s, const std::string& name) { return s.get()->unbind(name); }, py::arg("name"))
      .def(
          "spill",
          [](const PyStore& s, const RemoteRef& ref) {
            std::shared_ptr<Store> keep = s.get();
            py::gil_scoped_release nogil;
            return keep->spill(ref);
          },
          py::arg("ref"), "Spills ref to its file now and frees its space; False if pinned or not sealed.")
      .def(
          "subscribe",
          [](const PyStore& s) {
            std::shared_ptr<Store> keep = s.get();
            Subscription sub = keep->subscribe();
            return PySubscription{std::move(keep), std::move(sub)};
          },
          "Seal events from now on: sub.next(timeout), or iterate.")
      .def("info", [](const PyStore& s) { return s.get()->info(); })
      .def("processes", [](const PyStore& s) { return s.get()->processes(); })
      .def("objects", [](const PyStore& s) { return s.get()->objects(); })
      .def("recover", [](const PyStore& s) { return s.get()->recover(); })
      .def("__repr__", [](const PyStore& s) {
        return s.store ? "<sealstore.Store '" + s.store->name() + "'>" : std::string("<sealstore.Store closed>");
      });
}
