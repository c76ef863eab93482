// The interface between test_openmp_mix.cpp and the two translation units
// built from openmp_mix_step.cpp, one with ADAMX_OPENMP and -fopenmp and one
// without. Only standard types cross it, so main sees no adamx header.
#pragma once

#include <string>
#include <vector>

namespace adamx_test {

/// What one translation unit's AdamX<float> did.
struct MixedStep {
  std::vector<float> params;      // θ after the steps
  std::string optimizer_type;     // typeid(adamx::AdamX<float>).name(), mangled
  int threads = 0;                // threads() after set_threads(2) (1 if it threw)
  std::string set_threads_error;  // what() of set_threads(2)'s exception, "" if none
};

/// Asks for 2 threads, then steps AdamX<float> on `params` once per gradient
/// vector in `gradients` (each params.size() long).
MixedStep step_with_openmp(const std::vector<float>& params, const std::vector<std::vector<float>>& gradients);
MixedStep step_without_openmp(const std::vector<float>& params, const std::vector<std::vector<float>>& gradients);

}  // namespace adamx_test
