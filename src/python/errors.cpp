#include "errors.hpp"

#include <array>
#include <string>
#include <string_view>

namespace sealstore::python {

namespace {

struct ErrorSpec {
  Errc code;
  // A built-in exception the class also derives from, so that code catching
  // the usual Python family catches it too (or nullptr).
  PyObject* (*mixin)();
};

constexpr std::array<ErrorSpec, 13> kErrors{{
    {Errc::NotFound, [] { return PyExc_LookupError; }},
    {Errc::AlreadySealed, nullptr},
    {Errc::NotSealed, nullptr},
    {Errc::Timeout, [] { return PyExc_TimeoutError; }},
    {Errc::OutOfMemory, nullptr},
    {Errc::TypeMismatch, [] { return PyExc_TypeError; }},
    {Errc::InvalidArgument, [] { return PyExc_ValueError; }},
    {Errc::SegmentMissing, [] { return PyExc_FileNotFoundError; }},
    {Errc::IncompatibleSegment, nullptr},
    {Errc::Corrupt, nullptr},
    {Errc::PermissionDenied, [] { return PyExc_PermissionError; }},
    {Errc::WorkerFailed, nullptr},
    {Errc::AlreadyExists, [] { return PyExc_FileExistsError; }},
}};

// Owned for the life of the process: the module is never unloaded.
PyObject* g_base = nullptr;
std::array<PyObject*, kErrors.size() + 1> g_classes{};  // by code value

}  // namespace

bool add_error_classes(PyObject* m) {
  g_base = PyErr_NewExceptionWithDoc("sealstore.Error",
                                     "Base of every error sealstore raises. str(e) is the message naming the ref, "
                                     "segment or sizes involved; e.code names the class.",
                                     PyExc_Exception, nullptr);
  if (g_base == nullptr || PyObject_SetAttrString(g_base, "code", Py_None) != 0) return false;
  Py_INCREF(g_base);
  if (PyModule_AddObject(m, "Error", g_base) != 0) return false;
  for (const ErrorSpec& spec : kErrors) {
    std::string name(to_string(spec.code));
    std::string qualified = "sealstore." + name;
    PyObject* bases = spec.mixin != nullptr ? PyTuple_Pack(2, g_base, spec.mixin()) : PyTuple_Pack(1, g_base);
    if (bases == nullptr) return false;
    PyObject* cls = PyErr_NewException(qualified.c_str(), bases, nullptr);
    Py_DECREF(bases);
    if (cls == nullptr) return false;
    PyObject* code_name = PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
    if (code_name == nullptr || PyObject_SetAttrString(cls, "code", code_name) != 0) return false;
    Py_DECREF(code_name);
    g_classes.at(static_cast<std::size_t>(spec.code)) = cls;
    Py_INCREF(cls);
    if (PyModule_AddObject(m, name.c_str(), cls) != 0) return false;
  }
  return true;
}

PyObject* error_class(Errc code) noexcept {
  auto i = static_cast<std::size_t>(code);
  if (i < g_classes.size() && g_classes[i] != nullptr) return g_classes[i];
  return g_base;
}

void set_python_error(const Error& e) noexcept {
  std::string_view text = e.what();
  std::string_view prefix = to_string(e.code());
  if (text.starts_with(prefix) && text.substr(prefix.size()).starts_with(": ")) {
    text.remove_prefix(prefix.size() + 2);
  }
  PyObject* message = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  if (message == nullptr) return;  // the decode's own error stands
  PyErr_SetObject(error_class(e.code()), message);
  Py_DECREF(message);
}

}  // namespace sealstore::python
