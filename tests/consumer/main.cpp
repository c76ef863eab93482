// Consumer check (installed): a program that only knows adamx as a dependency,
// brought in through find_package(adamx) on an installed copy. It takes one AdamX step
// and checks the result, so a wrong include path, a missing Eigen dependency
// or a broken package shows up as a build or run failure.
#include <adamx/adamx.hpp>

#include <cmath>
#include <cstdio>

int main() {
  Eigen::VectorXf w = Eigen::VectorXf::Constant(4, 1.0f);
  Eigen::VectorXf g = Eigen::VectorXf::Constant(4, 0.5f);

  adamx::AdamX<float> opt;
  opt.add_group({w});
  opt.step({{w}}, {{g}});

  // After the first step the bias-corrected moments are m = g and v = g*g, so
  // every element moves by (almost exactly) lr = 1e-3 against its gradient.
  const float expected = 1.0f - 1e-3f;
  const float tolerance = 1e-6f;
  int mismatches = 0;
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    const bool ok = std::abs(w(i) - expected) <= tolerance;
    std::printf("installed consumer: w(%d) = %.9g, expected %.9g: %s\n",
                static_cast<int>(i), static_cast<double>(w(i)),
                static_cast<double>(expected), ok ? "ok" : "WRONG");
    if (!ok) {
      ++mismatches;
    }
  }
  if (w.size() != 4) {
    std::printf("installed consumer: w has %d elements, expected 4\n",
                static_cast<int>(w.size()));
    return 1;
  }
  return mismatches == 0 ? 0 : 1;
}
