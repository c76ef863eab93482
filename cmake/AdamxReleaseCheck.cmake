# What a release must agree on (docs/releasing.md). Run by ctest as
# `cmake -D... -P AdamxReleaseCheck.cmake` (test release.consistency, see
# tests/CMakeLists.txt):
#
#   -DADAMX_SOURCE_DIR=<source tree>   -DADAMX_BINARY_DIR=<its configured build>
#   -DADAMX_VERSION=<PROJECT_VERSION>  -DWORK_DIR=<scratch directory, emptied first>
#   -DBUILD_TYPE=<config to install>
#
# The version is written in one place, include/adamx/version.hpp. This checks
# that every other place that states it says the same: the CMake project
# version, the installed package's adamxConfigVersion.cmake and adamx.pc, the
# latest release in CHANGELOG.md, CITATION.cff (version and release date) and
# the tag in the README's FetchContent example. It also checks that every
# option() of the project's CMakeLists.txt files is in the README's options
# table.
cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS ADAMX_SOURCE_DIR ADAMX_BINARY_DIR ADAMX_VERSION WORK_DIR BUILD_TYPE)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "AdamxReleaseCheck: -D${_var}=... is required")
  endif()
endforeach()

set(_problems "")
# Record a disagreement; all of them are reported together at the end.
macro(_adamx_expect what found)
  if(NOT "${found}" STREQUAL "${_version}")
    list(APPEND _problems "${what} says '${found}', include/adamx/version.hpp says '${_version}'")
  else()
    message(STATUS "${what}: ${found}")
  endif()
endmacro()

# --- The one place: include/adamx/version.hpp, read here on its own ---------
file(READ "${ADAMX_SOURCE_DIR}/include/adamx/version.hpp" _header)
set(_parts "")
foreach(_part IN ITEMS MAJOR MINOR PATCH)
  if(NOT _header MATCHES "\n#define ADAMX_VERSION_${_part} ([0-9]+)\n")
    message(FATAL_ERROR "include/adamx/version.hpp: no '#define ADAMX_VERSION_${_part} <number>' line")
  endif()
  list(APPEND _parts "${CMAKE_MATCH_1}")
endforeach()
list(JOIN _parts "." _version)
message(STATUS "include/adamx/version.hpp: ${_version}")

_adamx_expect("the CMake project version" "${ADAMX_VERSION}")

# --- The installed package ---------------------------------------------------
file(REMOVE_RECURSE "${WORK_DIR}")
set(_prefix "${WORK_DIR}/prefix")
execute_process(
  COMMAND "${CMAKE_COMMAND}" --install "${ADAMX_BINARY_DIR}" --prefix "${_prefix}" --config "${BUILD_TYPE}"
  RESULT_VARIABLE _rc OUTPUT_QUIET)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cmake --install ${ADAMX_BINARY_DIR} failed (${_rc})")
endif()

file(GLOB_RECURSE _config_version "${_prefix}/*/adamxConfigVersion.cmake")
list(LENGTH _config_version _n)
if(NOT _n EQUAL 1)
  message(FATAL_ERROR "expected one installed adamxConfigVersion.cmake, found: ${_config_version}")
endif()
# Ask it the way find_package(adamx <version>) does.
set(PACKAGE_FIND_VERSION "${_version}")
list(GET _parts 0 PACKAGE_FIND_VERSION_MAJOR)
list(GET _parts 1 PACKAGE_FIND_VERSION_MINOR)
list(GET _parts 2 PACKAGE_FIND_VERSION_PATCH)
include("${_config_version}")
_adamx_expect("the installed adamxConfigVersion.cmake" "${PACKAGE_VERSION}")
if(NOT PACKAGE_VERSION_EXACT)
  list(APPEND _problems "adamxConfigVersion.cmake does not call itself an exact match for ${_version}")
endif()

file(GLOB_RECURSE _pc "${_prefix}/*/adamx.pc")
file(STRINGS "${_pc}" _pc_version REGEX "^Version: ")
string(REGEX REPLACE "^Version: *" "" _pc_version "${_pc_version}")
_adamx_expect("the installed adamx.pc" "${_pc_version}")

# --- CHANGELOG.md: [Unreleased], then the latest release --------------------
file(READ "${ADAMX_SOURCE_DIR}/CHANGELOG.md" _changelog)
string(REGEX MATCHALL "\n## \\[[^]\n]*\\][^\n]*" _headings "${_changelog}")
list(LENGTH _headings _n)
if(_n LESS 2)
  message(FATAL_ERROR "CHANGELOG.md: expected '## [Unreleased]' and at least one release heading")
endif()
list(GET _headings 0 _first)
list(GET _headings 1 _latest)
if(NOT _first STREQUAL "\n## [Unreleased]")
  list(APPEND _problems "CHANGELOG.md: the first heading is '${_first}', not '## [Unreleased]'")
endif()
if(_latest MATCHES "^\n## \\[([^]]*)\\] - ([0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9])$")
  set(_changelog_date "${CMAKE_MATCH_2}")
  _adamx_expect("CHANGELOG.md's latest release" "${CMAKE_MATCH_1}")
else()
  list(APPEND _problems "CHANGELOG.md: '${_latest}' is not '## [X.Y.Z] - YYYY-MM-DD'")
  set(_changelog_date "")
endif()

# --- CITATION.cff -------------------------------------------------------------
file(STRINGS "${ADAMX_SOURCE_DIR}/CITATION.cff" _cff_version REGEX "^version: ")
string(REGEX REPLACE "^version: *\"?([^\"]*)\"? *$" "\\1" _cff_version "${_cff_version}")
_adamx_expect("CITATION.cff" "${_cff_version}")
file(STRINGS "${ADAMX_SOURCE_DIR}/CITATION.cff" _cff_date REGEX "^date-released: ")
string(REGEX REPLACE "^date-released: *\"?([^\"]*)\"? *$" "\\1" _cff_date "${_cff_date}")
if(NOT _cff_date STREQUAL _changelog_date)
  list(APPEND _problems "CITATION.cff's date-released is '${_cff_date}', CHANGELOG.md's latest release "
                        "is dated '${_changelog_date}'")
endif()

# --- README.md: the FetchContent tag and the options table -------------------
file(READ "${ADAMX_SOURCE_DIR}/README.md" _readme)
if(_readme MATCHES "\n  GIT_TAG +v([0-9.]+)")
  _adamx_expect("README.md's FetchContent GIT_TAG" "${CMAKE_MATCH_1}")
else()
  list(APPEND _problems "README.md: the FetchContent example has no 'GIT_TAG vX.Y.Z' line")
endif()

file(GLOB_RECURSE _lists RELATIVE "${ADAMX_SOURCE_DIR}" "${ADAMX_SOURCE_DIR}/CMakeLists.txt"
     "${ADAMX_SOURCE_DIR}/*/CMakeLists.txt")
set(_n_options 0)
foreach(_list IN LISTS _lists)
  # The project's own lists: not build trees, not the outside projects the
  # consumer tests build.
  string(REGEX MATCH "^[^/]*" _top "${_list}")
  if(_top MATCHES "^(build|\\.git)$" OR _list MATCHES "^tests/consumer/"
     OR EXISTS "${ADAMX_SOURCE_DIR}/${_top}/CMakeCache.txt")
    continue()
  endif()
  file(STRINGS "${ADAMX_SOURCE_DIR}/${_list}" _lines REGEX "option\\(ADAMX_[A-Z0-9_]+ ")
  foreach(_line IN LISTS _lines)
    string(REGEX MATCH "ADAMX_[A-Z0-9_]+" _option "${_line}")
    math(EXPR _n_options "${_n_options} + 1")
    string(FIND "${_readme}" "\n| `${_option}` |" _pos)
    if(_pos EQUAL -1)
      list(APPEND _problems "README.md: option ${_option} (${_list}) is not in the options table")
    endif()
  endforeach()
endforeach()
message(STATUS "${_n_options} options found in the CMakeLists.txt files")
if(_n_options EQUAL 0)
  list(APPEND _problems "no option(ADAMX_...) found in any CMakeLists.txt")
endif()

if(_problems)
  list(JOIN _problems "\n  " _text)
  message(FATAL_ERROR "release check failed:\n  ${_text}")
endif()
message(STATUS "release check: every place says ${_version}")
