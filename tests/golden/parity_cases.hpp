// The cases of the tests that replay a parity file's trajectories
// (test_parity_adam.cpp, test_parity_adan.cpp, test_parity_schedule_free.cpp;
// parity_replay.hpp replays them): each run by name, in float32 and
// float64, with a printer and a case name for GoogleTest.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace golden {

struct ParityCase {
  std::string name;
  int width;  // bytes per element: 4 float32, 8 float64
};

// Without a printer GoogleTest prints a parameter byte by byte, padding
// included, and valgrind rightly flags the read of those uninitialised bytes.
inline void PrintTo(const ParityCase& c, std::ostream* out) {
  *out << c.name << (c.width == 4 ? " float32" : " float64");
}

/// Every run named, in float32, then every one in float64.
template <std::size_t N>
std::vector<ParityCase> parity_cases(const char* const (&names)[N]) {
  std::vector<ParityCase> cases;
  for (const int width : {4, 8})
    for (const char* name : names) cases.push_back({name, width});
  return cases;
}

inline std::string parity_case_name(const testing::TestParamInfo<ParityCase>& info) {
  return info.param.name + (info.param.width == 4 ? "_float32" : "_float64");
}

}  // namespace golden
