# cmake -DREADME=<README.md> -DSOURCE=<examples/quickstart.cpp> -P AdamxReadmeQuickstartCheck.cmake
#
# The README shows examples/quickstart.cpp in full; this fails when the two
# drift apart, so the code a reader copies is the code the tests build and run.
file(READ "${README}" readme)
file(READ "${SOURCE}" source)
string(FIND "${readme}" "```cpp\n// quickstart.cpp" begin)
if(begin EQUAL -1)
  message(FATAL_ERROR "${README} has no ```cpp block starting with '// quickstart.cpp'")
endif()
math(EXPR begin "${begin} + 7")  # past "```cpp\n"
string(SUBSTRING "${readme}" ${begin} -1 rest)
string(FIND "${rest}" "```" end)
string(SUBSTRING "${rest}" 0 ${end} shown)
if(NOT shown STREQUAL source)
  message(FATAL_ERROR "README.md's quickstart block differs from ${SOURCE}: copy the file into the README")
endif()
message(STATUS "README.md shows ${SOURCE} exactly")
