# Runs the C++ compiler on SOURCE, syntax only, with -DADAMX_CASE=${CASE}:
# case 0 must compile; any other case must fail with a diagnostic matching
# every regular expression in EXPECT.
#   cmake -DCOMPILER=... -DSTANDARD=-std=c++17 -DINCLUDES="a;b" -DSOURCE=...
#         -DCASE=n -DEXPECT="re1;re2" -P expect_compile_error.cmake
set(_flags ${STANDARD} -fsyntax-only)
foreach(_dir IN LISTS INCLUDES)
  list(APPEND _flags -I${_dir})
endforeach()

execute_process(COMMAND ${COMPILER} ${_flags} -DADAMX_CASE=${CASE} ${SOURCE}
                RESULT_VARIABLE _result OUTPUT_VARIABLE _output ERROR_VARIABLE _output)
if(CASE EQUAL 0)
  if(NOT _result EQUAL 0)
    message(FATAL_ERROR "the snippet does not compile with the right types:\n${_output}")
  endif()
  return()
endif()
if(_result EQUAL 0)
  message(FATAL_ERROR "case ${CASE} compiled, but its wrong scalar type must not")
endif()
foreach(_expected IN LISTS EXPECT)
  if(NOT _output MATCHES "${_expected}")
    message(FATAL_ERROR "case ${CASE}: the diagnostic does not match '${_expected}':\n${_output}")
  endif()
endforeach()
