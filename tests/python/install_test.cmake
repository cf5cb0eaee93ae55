# Installs the Python component of BUILD_DIR under a fresh PREFIX and
# imports sealstore from there with PYTHON: cmake --install is enough.
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} --component python
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
set(site ${PREFIX}/${SITE_DIR})
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${site} PYTHONDONTWRITEBYTECODE=1
          ${PYTHON} -c "import sealstore, numpy; assert sealstore.__file__.startswith('${site}/'), sealstore.__file__; print(sealstore.Store, numpy.asarray(memoryview(b'ok')).tolist())"
  WORKING_DIRECTORY ${PREFIX}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "importing the installed package from ${site} failed: ${rc}")
endif()
file(REMOVE_RECURSE ${PREFIX})
