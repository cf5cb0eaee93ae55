# The Python module: built when pybind11 and numpy are found for the chosen
# interpreter, quietly skipped otherwise. The interpreter is Debian's
# /usr/bin/python3 unless Python_EXECUTABLE says otherwise: another python3
# earlier on PATH (pyenv, a venv) would lack the Debian packages.
if(SEALSTORE_SANITIZE)
  message(STATUS "sealstore: Python module skipped in a sanitizer build (the interpreter is not instrumented)")
  return()
endif()
if(NOT DEFINED Python_EXECUTABLE AND EXISTS /usr/bin/python3)
  set(Python_EXECUTABLE /usr/bin/python3 CACHE FILEPATH
      "The Python interpreter the module is built for (Debian's, with python3-numpy and python3-pybind11)")
endif()
find_package(Python 3.9 QUIET COMPONENTS Interpreter Development.Module NumPy)
if(Python_FOUND)
  find_package(pybind11 2.6 CONFIG QUIET)
endif()
if(NOT Python_FOUND OR NOT pybind11_FOUND)
  message(STATUS "sealstore: Python module skipped (needs pybind11 and numpy for ${Python_EXECUTABLE}; "
                 "tools/deps.sh installs them)")
  return()
endif()
message(STATUS "sealstore: Python module for ${Python_EXECUTABLE} (${Python_VERSION}), pybind11 ${pybind11_VERSION}")

# The importable package in the build tree: PYTHONPATH=${SEALSTORE_PYTHON_BUILD_DIR}.
set(SEALSTORE_PYTHON_BUILD_DIR ${PROJECT_BINARY_DIR}/python)
# Where `cmake --install` puts the package, under the prefix.
set(SEALSTORE_PYTHON_INSTALL_DIR "lib/python${Python_VERSION_MAJOR}.${Python_VERSION_MINOR}/site-packages"
    CACHE STRING "Directory under the install prefix for the sealstore Python package")
add_subdirectory(src/python)
