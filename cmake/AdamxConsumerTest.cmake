# Configure, build and run one consumer project from tests/consumer/<MODE>/.
# Run by ctest as `cmake -D... -P AdamxConsumerTest.cmake`; see
# tests/CMakeLists.txt for the variables passed in.
#
#   MODE=installed     install this build of adamx into WORK_DIR/stage, move
#                      that tree to WORK_DIR/prefix (the package must be
#                      relocatable), then use it via find_package() and,
#                      separately, via pkg-config and a bare compiler call
#   MODE=installed_torch  the same install, used through the package's
#                      "torch" component (adamx::torch over libtorch)
#   MODE=installed_mpi  the same install, used through the package's "mpi"
#                      component (adamx::mpi over MPI), run under
#                      MPIEXEC -np 2; needs MPIEXEC
#   MODE=subdirectory  the consumer calls add_subdirectory(<adamx source>)
#   MODE=fetchcontent  the consumer uses FetchContent with SOURCE_DIR
#   MODE=fetchcontent_tag  the consumer uses FetchContent with GIT_REPOSITORY
#                      and GIT_TAG v<version>, as the README shows, from a git
#                      repository made of a copy of the source tree and tagged
#                      as a release is (docs/releasing.md); needs GIT
#
# Everything the test writes lives in WORK_DIR, which is emptied first.
cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS MODE CONSUMER_SOURCE_DIR WORK_DIR ADAMX_SOURCE_DIR
                      ADAMX_BINARY_DIR ADAMX_VERSION GENERATOR CXX_COMPILER BUILD_TYPE)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "AdamxConsumerTest: -D${_var}=... is required")
  endif()
endforeach()

# Run a command; stop the test with a message naming the step if it fails.
function(_adamx_run step)
  string(TIMESTAMP _t0 "%s")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc COMMAND_ECHO STDOUT)
  string(TIMESTAMP _t1 "%s")
  math(EXPR _dt "${_t1} - ${_t0}")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "consumer ${MODE}: ${step} failed (${_rc})")
  endif()
  message(STATUS "consumer ${MODE}: ${step} ok (${_dt} s)")
endfunction()

# Path of the consumer executable (single- or multi-config generators).
function(_adamx_find_exe out dir name)
  foreach(_cand IN ITEMS "${dir}/${name}" "${dir}/${BUILD_TYPE}/${name}")
    if(EXISTS "${_cand}" AND NOT IS_DIRECTORY "${_cand}")
      set(${out} "${_cand}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "consumer ${MODE}: built no ${name} under ${dir}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(_configure_args
  -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(DEFINED MAKE_PROGRAM AND NOT MAKE_PROGRAM STREQUAL "")
  list(APPEND _configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

if(MODE MATCHES "^installed(_torch|_mpi)?$")
  set(_stage "${WORK_DIR}/stage")
  set(_prefix "${WORK_DIR}/prefix")
  _adamx_run("install of ${ADAMX_BINARY_DIR}"
    "${CMAKE_COMMAND}" --install "${ADAMX_BINARY_DIR}" --prefix "${_stage}" --config "${BUILD_TYPE}")
  # Nothing in the installed files may remember where they were installed.
  file(RENAME "${_stage}" "${_prefix}")
  list(APPEND _configure_args
    "-DCMAKE_PREFIX_PATH=${_prefix}"
    "-DADAMX_EXPECTED_PREFIX=${_prefix}")
elseif(MODE STREQUAL "subdirectory" OR MODE STREQUAL "fetchcontent")
  list(APPEND _configure_args "-DADAMX_ROOT=${ADAMX_SOURCE_DIR}")
elseif(MODE STREQUAL "fetchcontent_tag")
  if(NOT DEFINED GIT OR GIT STREQUAL "" OR GIT MATCHES "NOTFOUND$")
    message(FATAL_ERROR "consumer ${MODE}: -DGIT=<git executable> is required")
  endif()
  include("${CMAKE_CURRENT_LIST_DIR}/AdamxCopySource.cmake")
  set(_repo "${WORK_DIR}/repo")
  adamx_copy_source_tree("${ADAMX_SOURCE_DIR}" "${_repo}")
  set(_tag "v${ADAMX_VERSION}")
  # The user's git configuration must not matter (signing, default branch).
  foreach(_git_args IN ITEMS "-c init.defaultBranch=main init -q" "add -A"
      "-c user.name=adamx -c user.email=adamx@localhost -c commit.gpgsign=false commit -q -m release"
      "-c tag.gpgsign=false tag ${_tag}")
    separate_arguments(_git_args UNIX_COMMAND "${_git_args}")
    execute_process(COMMAND "${GIT}" ${_git_args} WORKING_DIRECTORY "${_repo}" RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "consumer ${MODE}: git ${_git_args} failed (${_rc})")
    endif()
  endforeach()
  list(APPEND _configure_args "-DADAMX_GIT_REPOSITORY=file://${_repo}" "-DADAMX_GIT_TAG=${_tag}")
else()
  message(FATAL_ERROR "AdamxConsumerTest: unknown MODE '${MODE}'")
endif()

set(_build "${WORK_DIR}/build")
_adamx_run("configure"
  "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${_build}" ${_configure_args})
_adamx_run("build"
  "${CMAKE_COMMAND}" --build "${_build}" --config "${BUILD_TYPE}")
_adamx_find_exe(_exe "${_build}" adamx_consumer)
if(MODE STREQUAL "installed_mpi")
  if(NOT DEFINED MPIEXEC OR MPIEXEC STREQUAL "" OR MPIEXEC MATCHES "NOTFOUND$")
    message(FATAL_ERROR "consumer ${MODE}: -DMPIEXEC=<mpirun> is required")
  endif()
  # As the mpi tests run: CI runs as root, and two ranks may share one core.
  _adamx_run("run under ${MPIEXEC} -np 2"
    "${MPIEXEC}" --oversubscribe --allow-run-as-root -np 2 "${_exe}")
else()
  _adamx_run("run" "${_exe}")
endif()

if(NOT MODE STREQUAL "installed")
  return()
endif()

# --- pkg-config: the installed adamx.pc, used without CMake ---------------
if(NOT DEFINED PKG_CONFIG OR PKG_CONFIG STREQUAL "" OR PKG_CONFIG MATCHES "NOTFOUND$")
  message(FATAL_ERROR "consumer installed: pkg-config was not found when the build was "
                      "configured; install it (scripts/lib/setup.sh does) and re-configure")
endif()

file(GLOB_RECURSE _pc_files "${_prefix}/*/adamx.pc")
list(LENGTH _pc_files _n_pc)
if(NOT _n_pc EQUAL 1)
  message(FATAL_ERROR "consumer installed: expected one adamx.pc under ${_prefix}, found: ${_pc_files}")
endif()
get_filename_component(_pc_dir "${_pc_files}" DIRECTORY)
# Keep the system's search path (eigen3.pc lives there) and put ours first.
if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
  set(ENV{PKG_CONFIG_PATH} "${_pc_dir}:$ENV{PKG_CONFIG_PATH}")
else()
  set(ENV{PKG_CONFIG_PATH} "${_pc_dir}")
endif()

execute_process(COMMAND "${PKG_CONFIG}" --modversion adamx
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _pc_version OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _rc EQUAL 0 OR NOT _pc_version STREQUAL ADAMX_VERSION)
  message(FATAL_ERROR "consumer installed: pkg-config --modversion adamx gave '${_pc_version}' "
                      "(exit ${_rc}), expected '${ADAMX_VERSION}'")
endif()
message(STATUS "consumer installed: pkg-config --modversion adamx = ${_pc_version}")

execute_process(COMMAND "${PKG_CONFIG}" --cflags adamx
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _pc_cflags OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "consumer installed: pkg-config --cflags adamx failed (${_rc})")
endif()
message(STATUS "consumer installed: pkg-config --cflags adamx = ${_pc_cflags}")

# One of the -I directories must be the moved prefix's include directory.
separate_arguments(_pc_cflags_list UNIX_COMMAND "${_pc_cflags}")
file(REAL_PATH "${_prefix}" _prefix_real)
set(_found_include FALSE)
foreach(_flag IN LISTS _pc_cflags_list)
  if(_flag MATCHES "^-I(.+)$")
    file(REAL_PATH "${CMAKE_MATCH_1}" _inc)
    string(FIND "${_inc}/" "${_prefix_real}/" _pos)
    if(_pos EQUAL 0 AND EXISTS "${_inc}/adamx/version.hpp")
      set(_found_include TRUE)
    endif()
  endif()
endforeach()
if(NOT _found_include)
  message(FATAL_ERROR "consumer installed: no -I in '${_pc_cflags}' points at the headers "
                      "under ${_prefix}; adamx.pc is not relocatable")
endif()

set(_pc_exe "${WORK_DIR}/adamx_consumer_pkgconfig")
_adamx_run("bare compile with pkg-config flags"
  "${CXX_COMPILER}" -std=c++17 ${_pc_cflags_list}
  "${CONSUMER_SOURCE_DIR}/../main.cpp" -o "${_pc_exe}")
_adamx_run("run of the pkg-config build" "${_pc_exe}")
