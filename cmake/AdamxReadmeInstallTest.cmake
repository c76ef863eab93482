# Run the README's install recipes exactly as a user would, so that they
# cannot silently break. Run by ctest as `cmake -D... -P
# AdamxReadmeInstallTest.cmake` (test consumer.readme_install, see
# tests/CMakeLists.txt):
#
#   -DADAMX_SOURCE_DIR=<this source tree>  (its README.md and its files)
#   -DWORK_DIR=<scratch directory>         (emptied first)
#
# Every ```sh block of README.md that contains a `cmake --install` line is a
# recipe. Its lines are taken from README.md itself, not repeated here, and run
# one by one with `sh -c`, in order, in a fresh copy of the source tree
# (WORK_DIR/src: the recipes create build/<dir> inside the tree they are run
# in, and must not touch this build). The one change made to them: the install
# prefix /usr/local becomes WORK_DIR/prefix<n>, a new one for each recipe; a
# recipe that installs anywhere else is refused rather than run.
#
# After each recipe the prefix must hold the headers, the CMake package and
# adamx.pc. A recipe without a `cmake --build` line runs on a configured but
# never built tree, and must not install adamx_reshard; a recipe that builds
# first must install it, and the installed tool must run.
cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS ADAMX_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "AdamxReadmeInstallTest: -D${_var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# --- The recipes, from README.md --------------------------------------------
# CMake lists split on ';' and treat '[' ']' specially, so those characters
# are swapped for placeholders while the text is cut into blocks and lines,
# and put back just before a line is run.
file(READ "${ADAMX_SOURCE_DIR}/README.md" _readme)
string(REPLACE ";" "@SEMICOLON@" _readme "${_readme}")
string(REPLACE "[" "@LBRACKET@" _readme "${_readme}")
string(REPLACE "]" "@RBRACKET@" _readme "${_readme}")
string(REGEX MATCHALL "\n```sh\n[^`]*\n```" _blocks "${_readme}")

set(_recipes "")
foreach(_block IN LISTS _blocks)
  if(_block MATCHES "cmake --install ")
    string(REGEX REPLACE "^\n```sh\n" "" _block "${_block}")
    string(REGEX REPLACE "\n```$" "" _block "${_block}")
    # One recipe per list element; its lines are joined by a marker.
    string(REPLACE "\n" "@NEWLINE@" _block "${_block}")
    list(APPEND _recipes "${_block}")
  endif()
endforeach()
list(LENGTH _recipes _n_recipes)
if(_n_recipes EQUAL 0)
  message(FATAL_ERROR "README.md: no ```sh block with a `cmake --install` line")
endif()
message(STATUS "README.md has ${_n_recipes} install recipes")

# --- A fresh copy of the source tree ----------------------------------------
include("${CMAKE_CURRENT_LIST_DIR}/AdamxCopySource.cmake")
set(_src "${WORK_DIR}/src")
adamx_copy_source_tree("${ADAMX_SOURCE_DIR}" "${_src}")

# --- Run each recipe and check what it installed ----------------------------
include(GNUInstallDirs)  # the same default directories the install rules use
set(_n 0)
foreach(_recipe IN LISTS _recipes)
  math(EXPR _n "${_n} + 1")
  set(_prefix "${WORK_DIR}/prefix${_n}")
  string(REPLACE "@NEWLINE@" ";" _lines "${_recipe}")
  set(_builds FALSE)
  foreach(_line IN LISTS _lines)
    string(REPLACE "@SEMICOLON@" ";" _line "${_line}")
    string(REPLACE "@LBRACKET@" "[" _line "${_line}")
    string(REPLACE "@RBRACKET@" "]" _line "${_line}")
    if(_line MATCHES "^[ \t]*(#|$)")
      continue()
    endif()
    if(_line MATCHES "cmake --install " AND NOT _line MATCHES " --prefix /usr/local( |$)")
      message(FATAL_ERROR "README.md recipe ${_n}: '${_line}' does not install to --prefix /usr/local; "
                          "the test only runs recipes whose prefix it can redirect")
    endif()
    if(_line MATCHES "cmake --build ")
      set(_builds TRUE)
    endif()
    string(REPLACE " --prefix /usr/local" " --prefix ${_prefix}" _command "${_line}")
    message(STATUS "recipe ${_n}: ${_line}")
    execute_process(COMMAND sh -c "${_command}" WORKING_DIRECTORY "${_src}" RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "README.md recipe ${_n}: '${_line}' failed (exit ${_rc}), "
                          "run as '${_command}' in ${_src}")
    endif()
  endforeach()

  foreach(_file IN ITEMS
      "${CMAKE_INSTALL_INCLUDEDIR}/adamx/adamx.hpp"
      "${CMAKE_INSTALL_INCLUDEDIR}/adamx/version.hpp"
      "${CMAKE_INSTALL_DATADIR}/cmake/adamx/adamxConfig.cmake"
      "${CMAKE_INSTALL_DATADIR}/cmake/adamx/adamxConfigVersion.cmake"
      "${CMAKE_INSTALL_DATADIR}/cmake/adamx/adamxTargets.cmake"
      "${CMAKE_INSTALL_DATADIR}/pkgconfig/adamx.pc")
    if(NOT EXISTS "${_prefix}/${_file}")
      message(FATAL_ERROR "README.md recipe ${_n} installed no ${_file} under ${_prefix}")
    endif()
  endforeach()

  set(_tool "${_prefix}/${CMAKE_INSTALL_BINDIR}/adamx_reshard")
  if(_builds)
    if(NOT EXISTS "${_tool}")
      message(FATAL_ERROR "README.md recipe ${_n} builds before installing, but installed no ${_tool}")
    endif()
    execute_process(COMMAND "${_tool}" --help RESULT_VARIABLE _rc OUTPUT_QUIET)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "the installed ${_tool} --help exited with ${_rc}")
    endif()
    message(STATUS "recipe ${_n}: headers, package, adamx.pc and a working adamx_reshard installed")
  else()
    if(EXISTS "${_tool}")
      message(FATAL_ERROR "README.md recipe ${_n} builds nothing, yet ${_tool} was installed")
    endif()
    message(STATUS "recipe ${_n}: headers, package and adamx.pc installed from an unbuilt tree")
  endif()
endforeach()
