# Shared by the three consumer projects: the checks every way of consuming
# adamx must pass, and the one program they all build (../main.cpp).

# When adamx is pulled in as a subproject (add_subdirectory, FetchContent) it
# is not the top-level project, so none of its own targets or install rules
# may appear.
if(ADAMX_CONSUMER_IS_SUBPROJECT)
  foreach(_opt IN ITEMS ADAMX_BUILD_TESTS ADAMX_BUILD_BENCHMARKS ADAMX_BUILD_EXAMPLES ADAMX_BUILD_TOOLS ADAMX_INSTALL)
    if(${_opt})
      message(FATAL_ERROR "${_opt} is ON although adamx is a subproject")
    endif()
  endforeach()
  foreach(_target IN ITEMS adamx_test_smoke adamx_test_optimizer fashion_mnist_demo adamx_reshard)
    if(TARGET ${_target})
      message(FATAL_ERROR "adamx added its own target '${_target}' to a consumer's build")
    endif()
  endforeach()
endif()

# adamx's own warning flags must not reach its users.
get_target_property(_opts adamx::adamx INTERFACE_COMPILE_OPTIONS)
if(_opts)
  message(FATAL_ERROR "adamx::adamx exports compile options: ${_opts}")
endif()

add_executable(adamx_consumer "${CMAKE_CURRENT_LIST_DIR}/main.cpp")
target_link_libraries(adamx_consumer PRIVATE adamx::adamx)
# A user building with strict warnings must not trip over adamx's headers.
if(CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
  target_compile_options(adamx_consumer PRIVATE -Wall -Wextra -Wpedantic -Werror)
endif()
