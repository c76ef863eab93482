// One program whose translation units disagree on ADAMX_OPENMP: this file and
// the two builds of openmp_mix_step.cpp (with ADAMX_OPENMP and -fopenmp, and
// without). Without adamx's ABI namespace (include/adamx/abi.hpp) both would
// define adamx::AdamX<float> and its inline functions under the same names
// and the linker would keep one body of each, so one half would run the
// other's code. Here each half must keep its own type and behaviour, and the
// two must still compute bitwise the same parameters (results do not depend
// on the thread count, docs/design.md "Threads and determinism").
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "openmp_mix.hpp"

namespace {

// Above the 2^15 elements from which a group is stepped on several threads
// (parallel.hpp), and not a multiple of the block or chunk size.
constexpr std::size_t kElements = (std::size_t{1} << 16) + 5;
constexpr int kSteps = 3;

std::vector<float> wave(std::size_t n, double frequency, double amplitude) {
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(amplitude * std::sin(frequency * double(i) + 0.25));
  return out;
}

TEST(OpenMPMix, EachTranslationUnitKeepsItsOwnOptimizerType) {
  const std::vector<float> params = wave(kElements, 0.37, 1.0);
  const std::vector<std::vector<float>> gradients(1, wave(kElements, 0.11, 0.01));
  const adamx_test::MixedStep threaded = adamx_test::step_with_openmp(params, gradients);
  const adamx_test::MixedStep serial = adamx_test::step_without_openmp(params, gradients);

  // Mangled names carry the inline namespace's tag (abi.hpp): v<version>_openmp / _serial.
  EXPECT_NE(threaded.optimizer_type, serial.optimizer_type);
  EXPECT_NE(threaded.optimizer_type.find("_openmp"), std::string::npos) << threaded.optimizer_type;
  EXPECT_NE(serial.optimizer_type.find("_serial"), std::string::npos) << serial.optimizer_type;
}

TEST(OpenMPMix, SetThreadsFollowsEachTranslationUnitsOwnBuild) {
  const std::vector<float> params = wave(kElements, 0.37, 1.0);
  const std::vector<std::vector<float>> gradients(1, wave(kElements, 0.11, 0.01));
  const adamx_test::MixedStep threaded = adamx_test::step_with_openmp(params, gradients);
  const adamx_test::MixedStep serial = adamx_test::step_without_openmp(params, gradients);

  EXPECT_EQ(threaded.set_threads_error, "");
  EXPECT_EQ(threaded.threads, 2);
  EXPECT_NE(serial.set_threads_error.find("ADAMX_OPENMP"), std::string::npos) << serial.set_threads_error;
  EXPECT_EQ(serial.threads, 1);
}

TEST(OpenMPMix, TwoThreadsAndOneGiveTheSameBits) {
  const std::vector<float> params = wave(kElements, 0.37, 1.0);
  std::vector<std::vector<float>> gradients;
  // The same signs at every step, norms growing ×10 (so AdamX's γ moves):
  // every element moves the same way at each step and so ends away from its start.
  for (int t = 0; t < kSteps; ++t) gradients.push_back(wave(kElements, 0.11, std::pow(10.0, -2 + t)));
  const adamx_test::MixedStep threaded = adamx_test::step_with_openmp(params, gradients);
  const adamx_test::MixedStep serial = adamx_test::step_without_openmp(params, gradients);

  ASSERT_EQ(threaded.params.size(), kElements);
  ASSERT_EQ(serial.params.size(), kElements);
  EXPECT_EQ(std::memcmp(threaded.params.data(), serial.params.data(), kElements * sizeof(float)), 0);
  // The steps moved every element, so the comparison above compares steps, not copies.
  std::size_t unchanged = 0;
  for (std::size_t i = 0; i < kElements; ++i) unchanged += threaded.params[i] == params[i] ? 1 : 0;
  EXPECT_EQ(unchanged, 0u);
}

}  // namespace
