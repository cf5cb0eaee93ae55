# Installs the build tree into a temporary prefix, then builds and runs a
# consumer against it twice: with find_package(sealstore) and with
# pkg-config. Every C++ example in the README is built too, with
# -Wall -Wextra -Werror, exactly as written there.
# Run as: cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DREADME=... -P package_test.cmake
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

# The README's ```cpp blocks: one with a main() is a program as it stands;
# one without is the body of main().
set(snippets ${WORK_DIR}/snippets)
file(MAKE_DIRECTORY ${snippets})
file(READ ${README} text)
string(REPLACE ";" "@SEMICOLON@" text "${text}")  # not a CMake list separator
string(REGEX MATCHALL "```cpp\n[^`]*```" blocks "${text}")
list(LENGTH blocks count)
if(count EQUAL 0)
  message(FATAL_ERROR "no C++ examples found in ${README}")
endif()
set(n 0)
foreach(block IN LISTS blocks)
  string(REGEX REPLACE "^```cpp\n" "" code "${block}")
  string(REGEX REPLACE "```$" "" code "${code}")
  string(REPLACE "@SEMICOLON@" ";" code "${code}")
  if(NOT code MATCHES "int main\\(")
    string(REGEX MATCHALL "#include [^\n]*\n" includes "${code}")
    string(REGEX REPLACE "#include [^\n]*\n" "" body "${code}")
    string(CONCAT code ${includes} "int main() {\n" "${body}" "}\n")
  endif()
  file(WRITE ${snippets}/readme_example_${n}.cpp "${code}")
  math(EXPR n "${n} + 1")
endforeach()
message(STATUS "${n} examples from ${README}")

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/consumer -B ${WORK_DIR}/cmake-build -DCMAKE_PREFIX_PATH=${prefix}
    -DSNIPPET_DIR=${snippets})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
run(${WORK_DIR}/cmake-build/consumer)
# The cluster layer, installed and used from another project: two ranks.
if(EXISTS ${WORK_DIR}/cmake-build/cluster_consumer AND MPIEXEC)
  run(${MPIEXEC} -n 2 ${MPIEXEC_FLAGS} ${WORK_DIR}/cmake-build/cluster_consumer)
endif()

# Without CMake: pkg-config (--static, since libsealstore.a carries its
# private dependencies to the final link).
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
execute_process(COMMAND pkg-config --cflags --libs --static sealstore OUTPUT_VARIABLE flags RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know sealstore")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(c++ -std=c++20 -Wall -Wextra -Werror ${SOURCE_DIR}/consumer/main.cpp -o ${WORK_DIR}/consumer-pc ${flags})
run(${WORK_DIR}/consumer-pc)
