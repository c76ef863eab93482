# Run the README's Python install command exactly as a user would, then check
# that the package it installed imports. Run by ctest as `cmake -D... -P
# AdamxPythonInstallTest.cmake` (test python.readme_install, see
# tests/CMakeLists.txt):
#
#   -DADAMX_SOURCE_DIR=<this source tree>  (its README.md and its files)
#   -DWORK_DIR=<scratch directory>         (emptied first)
#
# The recipe is the ```sh block of README.md that contains a `pip install`
# line. Its lines are taken from README.md itself, not repeated here, and run
# one by one with `sh -c`, in order and unchanged, in a fresh copy of the
# source tree (WORK_DIR/src), which then holds the virtual environment
# (WORK_DIR/src/.venv) the pytest suite runs in. The build is made with
# ADAMX_WERROR=1: the extension's own warnings are errors here, as they are
# for every other target of the project.
cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS ADAMX_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "AdamxPythonInstallTest: -D${_var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

file(READ "${ADAMX_SOURCE_DIR}/README.md" _readme)
string(REPLACE ";" "@SEMICOLON@" _readme "${_readme}")
string(REPLACE "[" "@LBRACKET@" _readme "${_readme}")
string(REPLACE "]" "@RBRACKET@" _readme "${_readme}")
string(REGEX MATCHALL "\n```sh\n[^`]*\n```" _blocks "${_readme}")
set(_recipe "")
foreach(_block IN LISTS _blocks)
  if(_block MATCHES "pip install ")
    if(NOT _recipe STREQUAL "")
      message(FATAL_ERROR "README.md: more than one ```sh block has a `pip install` line")
    endif()
    string(REGEX REPLACE "^\n```sh\n" "" _recipe "${_block}")
    string(REGEX REPLACE "\n```$" "" _recipe "${_recipe}")
  endif()
endforeach()
if(_recipe STREQUAL "")
  message(FATAL_ERROR "README.md: no ```sh block with a `pip install` line")
endif()

include("${CMAKE_CURRENT_LIST_DIR}/AdamxCopySource.cmake")
set(_src "${WORK_DIR}/src")
adamx_copy_source_tree("${ADAMX_SOURCE_DIR}" "${_src}")
# What an in-place build of the package may have left in this source tree.
file(GLOB _leftovers "${_src}/.venv" "${_src}/python/build" "${_src}/python/*.egg-info" "${_src}/python/adamx/*.so")
if(_leftovers)
  file(REMOVE_RECURSE ${_leftovers})
endif()

set(ENV{ADAMX_WERROR} 1)
string(REPLACE "\n" ";" _lines "${_recipe}")
foreach(_line IN LISTS _lines)
  string(REPLACE "@SEMICOLON@" ";" _line "${_line}")
  string(REPLACE "@LBRACKET@" "[" _line "${_line}")
  string(REPLACE "@RBRACKET@" "]" _line "${_line}")
  if(_line MATCHES "^[ \t]*(#.*)?$")
    continue()
  endif()
  message(STATUS "README: ${_line}")
  execute_process(COMMAND sh -c "${_line}" WORKING_DIRECTORY "${_src}" RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "README.md's Python install line failed (${_rc}): ${_line}")
  endif()
endforeach()

execute_process(
  COMMAND "${_src}/.venv/bin/python" -c
          "import adamx, adamx.torch, adamx.numpy, adamx.checkpoint; print('adamx', adamx.__version__, adamx.instruction_set())"
  WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "the installed package does not import")
endif()
