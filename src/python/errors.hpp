// sealstore.Error and one subclass per sealstore::Errc, made once when the
// module is imported. Callers hold the GIL.
#pragma once

#include <Python.h>

#include "sealstore/error.hpp"

namespace sealstore::python {

// Creates the classes and adds them to module m. Returns false with a
// Python error set on failure.
bool add_error_classes(PyObject* m);
// The class for code (sealstore.Error for a code it does not know).
PyObject* error_class(Errc code) noexcept;
// Sets the Python error for e: its code's class, with e's message (without
// the leading "Code: " the C++ text carries, since the class names it).
void set_python_error(const Error& e) noexcept;

}  // namespace sealstore::python
