// The gradients and the comparison of the reference tests of the rules that
// step three tensors over 600 steps (reference_run.hpp, the run of
// tests/test_lion.cpp, test_adan.cpp and test_schedule_free.cpp): one
// generator per regime of regimes.hpp and one check of a library value
// against the reference's within a slack times its rounding-error bound.
#pragma once

#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "regimes.hpp"

namespace reference {

/// g = scale·noise(k)·(μ + z), μ fixed per element (normal, σ 0.5) and z a
/// unit normal: scale 1e-3, 1 or 1e3 by tensor in the mixed-scales regime,
/// noise ×100 for steps 200–399 in the burst regime and e^(−k/150) in the
/// decaying one, whole steps of zeros (k ≤ 30, 300 ≤ k < 450) in the
/// zero-stretches one. With `nonfinite`, a NaN at step 50 and ±Inf at steps
/// 250 and 251 (the tensors need at least 8, 4 and 21 elements).
class RegimeGradients {
 public:
  RegimeGradients(Regime regime, bool nonfinite, const std::vector<std::size_t>& sizes)
      : regime_(regime), nonfinite_(nonfinite), rng_(2023) {
    std::normal_distribution<double> normal(0.0, 0.5);
    for (std::size_t n : sizes) {
      std::vector<double> mean(n);
      for (double& x : mean) x = normal(rng_);
      means_.push_back(mean);
    }
  }
  /// The gradients of step k (1, 2, …), tensor by tensor, into `out`.
  void next(int k, std::vector<std::vector<double>>& out) {
    std::normal_distribution<double> normal(0.0, 1.0);
    const double scales[] = {1e-3, 1.0, 1e3};
    out.resize(means_.size());
    for (std::size_t j = 0; j < means_.size(); ++j) {
      out[j].resize(means_[j].size());
      const double scale = regime_ == Regime::mixed_scales ? scales[j % 3] : 1.0;
      const double noise = regime_ == Regime::burst      ? ((k >= 200 && k < 400) ? 100.0 : 1.0)
                           : regime_ == Regime::decaying ? std::exp(-k / 150.0)
                                                         : 1.0;
      for (std::size_t i = 0; i < means_[j].size(); ++i) {
        double g = scale * noise * (means_[j][i] + normal(rng_));
        if (regime_ == Regime::zero_stretches && (k <= 30 || (k >= 300 && k < 450))) g = 0.0;
        out[j][i] = g;
      }
    }
    if (nonfinite_) {
      if (k == 50) out[0][7] = std::nan("");
      if (k == 250) out[1][3] = HUGE_VAL;
      if (k == 251) out[2][20] = -HUGE_VAL;
    }
  }

 private:
  Regime regime_;
  bool nonfinite_;
  std::mt19937_64 rng_;
  std::vector<std::vector<double>> means_;
};

/// Checks |library − reference| ≤ slack·bound (both NaN, or equal, pass);
/// raises `worst_ratio` to |library − reference| / bound where the bound is
/// positive. Returns "" or a description of the violation naming `what`.
template <class Real>
std::string compare_within_bound(const char* what, Real library, Real reference, Real bound, Real slack,
                                 Real& worst_ratio) {
  if (std::isnan(library) && std::isnan(reference)) return {};
  if (library == reference) return {};
  const Real diff = std::fabs(library - reference);
  if (bound > 0) worst_ratio = std::fmax(worst_ratio, diff / bound);
  if (diff <= slack * bound) return {};
  return std::string(what) + ": library " + std::to_string(static_cast<double>(library)) + ", reference " +
         std::to_string(static_cast<double>(reference)) + ", |diff| " + std::to_string(static_cast<double>(diff)) +
         " > " + std::to_string(static_cast<double>(slack)) + " x bound " + std::to_string(static_cast<double>(bound));
}

}  // namespace reference
