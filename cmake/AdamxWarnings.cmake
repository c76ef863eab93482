# adamx_project_warnings(<target>)
#
# Strict warnings, as errors, and strict ISO C++ (no GNU extensions, so
# -std=c++17 rather than gnu++17) for targets that belong to this repository
# (tests, benchmarks, examples). Never call it on the `adamx` interface
# target: flags set there would leak into every consumer's build.
include_guard(GLOBAL)

function(adamx_project_warnings target)
  if(NOT TARGET "${target}")
    message(FATAL_ERROR "adamx_project_warnings: '${target}' is not a target")
  endif()
  get_target_property(_type "${target}" TYPE)
  if(_type STREQUAL "INTERFACE_LIBRARY")
    message(FATAL_ERROR "adamx_project_warnings: '${target}' is an interface target; "
                        "its flags would reach consumers")
  endif()
  set_target_properties("${target}" PROPERTIES CXX_EXTENSIONS OFF)
  if(CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
    target_compile_options("${target}" PRIVATE -Wall -Wextra -Wpedantic -Werror)
  elseif(MSVC)
    target_compile_options("${target}" PRIVATE /W4 /WX /permissive-)
  endif()
endfunction()
