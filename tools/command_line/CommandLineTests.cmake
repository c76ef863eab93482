# adamx_add_command_line_tests(<target> LABELS <label>...
#     OPTIONS <option>...            the options --help must list
#     BAD_VALUE <argument>...        a malformed value for one of them
#     BAD_VALUE_MESSAGE <text>)      what the error must say about it
#
# Registers three tests of a program built on command_line.hpp:
#   command_line.<target>.help            --help exits 0 and lists the options
#   command_line.<target>.unknown_option  an unknown option exits 2, names it and hints at --help
#   command_line.<target>.bad_value       BAD_VALUE exits 2 with BAD_VALUE_MESSAGE (when given)
# Each runs CheckCommandLine.cmake, which checks the exit status and the output.
set(_adamx_command_line_check "${CMAKE_CURRENT_LIST_DIR}/CheckCommandLine.cmake")

function(adamx_add_command_line_tests target)
  cmake_parse_arguments(ARG "" "" "LABELS;OPTIONS;BAD_VALUE;BAD_VALUE_MESSAGE" ${ARGN})
  # Lists travel to the script joined with '|' (a ';' would split the argument).
  string(REPLACE ";" "|" options "usage: ${target};${ARG_OPTIONS};--help")
  add_test(NAME command_line.${target}.help
           COMMAND "${CMAKE_COMMAND}" "-DPROGRAM=$<TARGET_FILE:${target}>" "-DARGS=--help"
                   "-DEXPECT_EXIT=0" "-DEXPECT_STDOUT=${options}" -P "${_adamx_command_line_check}")
  add_test(NAME command_line.${target}.unknown_option
           COMMAND "${CMAKE_COMMAND}" "-DPROGRAM=$<TARGET_FILE:${target}>" "-DARGS=--no-such-option"
                   "-DEXPECT_EXIT=2"
                   "-DEXPECT_STDERR=unknown option '--no-such-option'|try '${target} --help'"
                   -P "${_adamx_command_line_check}")
  set(tests command_line.${target}.help command_line.${target}.unknown_option)
  if(ARG_BAD_VALUE)
    string(REPLACE ";" "|" bad_value "${ARG_BAD_VALUE}")
    add_test(NAME command_line.${target}.bad_value
             COMMAND "${CMAKE_COMMAND}" "-DPROGRAM=$<TARGET_FILE:${target}>" "-DARGS=${bad_value}"
                     "-DEXPECT_EXIT=2" "-DEXPECT_STDERR=${ARG_BAD_VALUE_MESSAGE}|try '${target} --help'"
                     -P "${_adamx_command_line_check}")
    list(APPEND tests command_line.${target}.bad_value)
  endif()
  set_tests_properties(${tests} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT 30)
endfunction()
