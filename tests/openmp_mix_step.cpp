// Built twice into adamx_test_openmp_mix: once with ADAMX_OPENMP and -fopenmp
// (defining step_with_openmp), once without (step_without_openmp). Both
// instantiate adamx::AdamX<float> and its inline functions, which differ
// between the two builds (set_threads, the threaded passes); linked into one
// program they must stay two, which adamx's ABI namespace (abi.hpp) ensures.
#include <adamx/core.hpp>

#include <stdexcept>
#include <typeinfo>

#include "openmp_mix.hpp"

#ifdef ADAMX_OPENMP
#define ADAMX_TEST_STEP_FUNCTION step_with_openmp
#else
#define ADAMX_TEST_STEP_FUNCTION step_without_openmp
#endif

namespace adamx_test {

MixedStep ADAMX_TEST_STEP_FUNCTION(const std::vector<float>& params,
                                   const std::vector<std::vector<float>>& gradients) {
  const auto n = static_cast<Eigen::Index>(params.size());
  Eigen::VectorXf theta = Eigen::Map<const Eigen::VectorXf>(params.data(), n);
  Eigen::VectorXf g(n);

  adamx::AdamX<float> opt;
  MixedStep out;
  out.optimizer_type = typeid(opt).name();
  try {
    opt.set_threads(2);
  } catch (const std::invalid_argument& e) {
    out.set_threads_error = e.what();
  }
  out.threads = opt.threads();

  opt.add_group({theta});
  for (const std::vector<float>& step_gradient : gradients) {
    g = Eigen::Map<const Eigen::VectorXf>(step_gradient.data(), n);
    opt.step({{theta}}, {{g}});
  }
  out.params.assign(theta.data(), theta.data() + n);
  return out;
}

}  // namespace adamx_test
