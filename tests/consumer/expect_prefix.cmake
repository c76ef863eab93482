# The package must come from the prefix under test (ADAMX_EXPECTED_PREFIX),
# not from some other adamx that happens to be installed on the machine.
if(ADAMX_EXPECTED_PREFIX)
  file(REAL_PATH "${ADAMX_EXPECTED_PREFIX}" _expected)
  file(REAL_PATH "${adamx_DIR}" _found)
  string(FIND "${_found}/" "${_expected}/" _pos)
  if(NOT _pos EQUAL 0)
    message(FATAL_ERROR "found adamx in ${_found}, expected it under ${_expected}")
  endif()
endif()
