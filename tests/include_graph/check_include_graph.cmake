# Lists every file a translation unit including CLEAN_HEADER reaches (the
# compiler's -M) and fails if one of them is a standard header named in
# FORBIDDEN. The same is done for CONTROL_HEADER, which must reach every
# FORBIDDEN header: that proves the listing and the matching find them, so
# the check cannot pass because it looks at nothing.
#   cmake -DCOMPILER=... -DSTANDARD=-std=c++17 -DINCLUDES="a;b"
#         -DCLEAN_HEADER=adamx/core.hpp -DCONTROL_HEADER=adamx/adamx.hpp
#         -DFORBIDDEN="filesystem;fstream" -DWORK_DIR=... -P check_include_graph.cmake
set(_flags ${STANDARD} -M)
foreach(_dir IN LISTS INCLUDES)
  list(APPEND _flags -I${_dir})
endforeach()
file(MAKE_DIRECTORY "${WORK_DIR}")

# Sets <out> to the FORBIDDEN headers that a TU including <header> reaches.
function(forbidden_headers_reached header out)
  string(MAKE_C_IDENTIFIER "${header}" _stem)
  set(_source "${WORK_DIR}/${_stem}.cpp")
  file(WRITE "${_source}" "#include <${header}>\n")
  execute_process(COMMAND ${COMPILER} ${_flags} "${_source}"
                  RESULT_VARIABLE _result OUTPUT_VARIABLE _deps ERROR_VARIABLE _errors)
  if(NOT _result EQUAL 0)
    message(FATAL_ERROR "listing the includes of <${header}> failed:\n${_errors}")
  endif()
  # -M writes "target: dep dep \" lines; a path ends at a blank or a line end.
  string(REPLACE "\\\n" " " _deps "${_deps}")
  set(_found "")
  foreach(_name IN LISTS FORBIDDEN)
    if(_deps MATCHES "/${_name}([ \t\n]|$)")
      list(APPEND _found "${_name}")
    endif()
  endforeach()
  set(${out} "${_found}" PARENT_SCOPE)
endfunction()

forbidden_headers_reached("${CONTROL_HEADER}" _control)
if(NOT _control STREQUAL FORBIDDEN)
  message(FATAL_ERROR "<${CONTROL_HEADER}> was expected to reach every one of <${FORBIDDEN}> "
                      "but the listing found only <${_control}>: the check itself is broken")
endif()
forbidden_headers_reached("${CLEAN_HEADER}" _clean)
if(_clean)
  message(FATAL_ERROR "<${CLEAN_HEADER}> must not reach <${_clean}>; find the adamx header that "
                      "includes it (${COMPILER} -H) and move the I/O out of it")
endif()
message(STATUS "<${CLEAN_HEADER}> reaches none of <${FORBIDDEN}>; <${CONTROL_HEADER}> reaches them all")
