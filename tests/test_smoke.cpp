// Smoke test: the version in include/adamx/version.hpp is the version CMake
// configured the project with (CMake parses the header and hands its own
// PROJECT_VERSION back as ADAMX_VERSION_STRING). A broken parse in
// CMakeLists.txt, or a header edited without re-configuring, fails here.
#include <adamx/version.hpp>

#include <gtest/gtest.h>

#include <string>

#ifndef ADAMX_VERSION_STRING
#error "ADAMX_VERSION_STRING must be defined by the build (tests/CMakeLists.txt)"
#endif

namespace {

// The macros must be usable in constant expressions.
constexpr int kMajor = ADAMX_VERSION_MAJOR;
constexpr int kMinor = ADAMX_VERSION_MINOR;
constexpr int kPatch = ADAMX_VERSION_PATCH;
static_assert(kMajor >= 0 && kMinor >= 0 && kPatch >= 0,
              "version components are non-negative integers");

std::string header_version() {
  return std::to_string(kMajor) + "." + std::to_string(kMinor) + "." +
         std::to_string(kPatch);
}

TEST(Version, HeaderMatchesCMakeProjectVersion) {
  EXPECT_EQ(header_version(), std::string(ADAMX_VERSION_STRING))
      << "include/adamx/version.hpp and the CMake project version disagree";
}

TEST(Version, CMakeVersionHasThreeNumericComponents) {
  const std::string v = ADAMX_VERSION_STRING;
  int dots = 0;
  for (char c : v) {
    if (c == '.') {
      ++dots;
    } else {
      EXPECT_TRUE(c >= '0' && c <= '9') << "unexpected character in '" << v << "'";
    }
  }
  EXPECT_EQ(dots, 2) << "'" << v << "' is not MAJOR.MINOR.PATCH";
}

}  // namespace
