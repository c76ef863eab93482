# cmake -DBUILD_DIR=<configured build dir> [-DEXCLUDE=<regex>] [-DJOBS=<n>] -P AdamxSyntaxCheck.cmake
#
# Runs every compile command of a configured build (its compile_commands.json,
# the presets export it) with -fsyntax-only appended: each translation unit is
# parsed and its templates instantiated with the build's own flags, so every
# warning the compiler's front end gives (with -Werror, an error) is reported,
# but no object code is generated and nothing is linked. CI checks clang's
# warnings this way (scripts/test, the clang-check preset): the back end adds
# no warning under the project's flags, and code generation was about half of
# each clang -O0 compile. Files whose path matches EXCLUDE (the fuzz targets,
# which CI builds for real) are left out. Every unit runs, in parallel, each
# time: the commands go into a small Ninja file under BUILD_DIR/syntax_check
# whose outputs are never written.
cmake_minimum_required(VERSION 3.21)

if(NOT BUILD_DIR)
  message(FATAL_ERROR "AdamxSyntaxCheck: BUILD_DIR is required")
endif()
get_filename_component(BUILD_DIR "${BUILD_DIR}" ABSOLUTE)
set(_commands_file "${BUILD_DIR}/compile_commands.json")
if(NOT EXISTS "${_commands_file}")
  message(FATAL_ERROR "AdamxSyntaxCheck: ${_commands_file} not found; configure with CMAKE_EXPORT_COMPILE_COMMANDS=ON")
endif()
find_program(_adamx_ninja NAMES ninja ninja-build)
if(NOT _adamx_ninja)
  message(FATAL_ERROR "AdamxSyntaxCheck: ninja not found")
endif()

file(READ "${_commands_file}" _json)
string(JSON _count LENGTH "${_json}")
set(_work "${BUILD_DIR}/syntax_check")
file(MAKE_DIRECTORY "${_work}")
set(_ninja "rule check\n  command = cd \"$dir\" && $cmd -fsyntax-only\n  description = syntax $file\n\n")
set(_checked 0)
if(_count GREATER 0)
  math(EXPR _last "${_count} - 1")
  foreach(_i RANGE ${_last})
    string(JSON _file GET "${_json}" ${_i} file)
    if(DEFINED EXCLUDE AND _file MATCHES "${EXCLUDE}")
      continue()
    endif()
    string(JSON _dir GET "${_json}" ${_i} directory)
    string(JSON _cmd GET "${_json}" ${_i} command)
    # Ninja's own escape for '$'; the command is already quoted for the shell.
    foreach(_var IN ITEMS _file _dir _cmd)
      string(REPLACE "$" "$$" ${_var} "${${_var}}")
    endforeach()
    string(APPEND _ninja "build unit_${_i}: check\n  dir = ${_dir}\n  cmd = ${_cmd}\n  file = ${_file}\n")
    math(EXPR _checked "${_checked} + 1")
  endforeach()
endif()
if(_checked EQUAL 0)
  message(FATAL_ERROR "AdamxSyntaxCheck: no translation unit to check in ${_commands_file}")
endif()
file(WRITE "${_work}/build.ninja" "${_ninja}")

set(_jobs)
if(JOBS)
  set(_jobs -j "${JOBS}")
endif()
# -k 0: report every unit with a warning, not only the first.
execute_process(COMMAND "${_adamx_ninja}" -C "${_work}" -k 0 ${_jobs}
                RESULT_VARIABLE _result)
if(NOT _result EQUAL 0)
  message(FATAL_ERROR "AdamxSyntaxCheck: warnings or errors in the units above (ninja exit ${_result})")
endif()
message(STATUS "AdamxSyntaxCheck: ${_checked} translation units of ${BUILD_DIR} compile cleanly")
