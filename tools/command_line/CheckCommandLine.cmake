# cmake -DPROGRAM=<exe> -DARGS=<a|b|...> -DEXPECT_EXIT=<n>
#       [-DEXPECT_STDOUT=<text|text...>] [-DEXPECT_STDERR=<text|text...>] -P CheckCommandLine.cmake
# Runs the program with ARGS and fails unless it exits with EXPECT_EXIT and
# every listed text appears in its standard output or error respectively
# (CommandLineTests.cmake registers the tests).
string(REPLACE "|" ";" args "${ARGS}")
execute_process(COMMAND "${PROGRAM}" ${args}
                RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(failures "")
if(NOT status STREQUAL EXPECT_EXIT)
  string(APPEND failures "exit status ${status}, expected ${EXPECT_EXIT}\n")
endif()
foreach(stream IN ITEMS STDOUT STDERR)
  string(TOLOWER "${stream}" name)
  set(text "${out}")
  if(stream STREQUAL "STDERR")
    set(text "${err}")
  endif()
  string(REPLACE "|" ";" patterns "${EXPECT_${stream}}")
  foreach(pattern IN LISTS patterns)
    string(FIND "${text}" "${pattern}" at)
    if(at EQUAL -1)
      string(APPEND failures "${name} lacks \"${pattern}\"\n")
    endif()
  endforeach()
endforeach()
if(failures)
  message(FATAL_ERROR "${PROGRAM} ${ARGS}:\n${failures}--- stdout:\n${out}--- stderr:\n${err}")
endif()
message(STATUS "${PROGRAM} ${ARGS}: exit ${status} as expected\n${out}${err}")
