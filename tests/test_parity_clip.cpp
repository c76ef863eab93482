// adamx::clip_grad_norm and clip_grad_value against
// torch.nn.utils.clip_grad_norm_ and clip_grad_value_ (PyTorch 1.13), from
// tests/data/clip.txt: three gradient tensors (20 elements), norm types 2, ∞,
// 1 and 3, a max_norm that does not clip, one that does, and one just below
// the norm (within PyTorch's 1e-6, where PyTorch still scales), float32 and
// float64.
//
// Tolerances, with u the unit roundoff of the gradients' type and n = 20:
// - the returned norm: PyTorch sums |g|^p in the gradients' type, per tensor
//   and then over the tensors' norms (recursive sums of ≤ n terms: relative
//   error ≤ n·u, plus ≤ 8u for the powers and roots of both stages); adamx sums
//   in double (error ≪ u). So |adamx − torch| ≤ (n + 8)·u·norm.
// - clipped gradients: each side multiplies g by its coefficient
//   max_norm/(norm + 1e-6) rounded to the type, PyTorch's carrying its norm's
//   error and three more roundings (max_norm, the sum, the quotient), adamx's
//   one; one more rounding each for the product: ≤ (n + 16)·u·|g|.
// - no clipping, and clip_grad_value: exact (a product by exactly 1, or none;
//   a clamp to bounds rounded to the type, as torch.clamp rounds them).
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "golden/golden_data.hpp"

namespace {

struct ClipCase {
  std::string kind, name, dtype;
  std::vector<double> header;  // norm: norm_type, max_norm, torch's norm; value: clip_value
  std::vector<std::size_t> sizes;
  std::vector<double> in, out;
};

std::vector<ClipCase> read_cases() {
  const auto records = golden::read_records(golden::data_path("clip.txt"));
  std::vector<ClipCase> cases;
  for (std::size_t r = 0; r + 3 < records.size(); r += 4) {
    ClipCase c;
    c.kind = records[r].at(0);
    c.name = records[r].at(1);
    c.dtype = records[r].at(2);
    for (std::size_t i = 3; i < records[r].size(); ++i) c.header.push_back(golden::to_double(records[r][i]));
    for (const double s : golden::numbers(records[r + 1], "sizes")) c.sizes.push_back(static_cast<std::size_t>(s));
    c.in = golden::numbers(records[r + 2], "in");
    c.out = golden::numbers(records[r + 3], "out");
    cases.push_back(c);
  }
  return cases;
}

template <class Scalar>
void check_case(const ClipCase& c, double& worst_norm_rel, double& worst_grad_ulps) {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  const double u = std::numeric_limits<Scalar>::epsilon() / 2;
  std::vector<Vector> grads;
  std::size_t offset = 0;
  for (const std::size_t n : c.sizes) {
    Vector g(static_cast<Eigen::Index>(n));
    for (std::size_t i = 0; i < n; ++i) g[static_cast<Eigen::Index>(i)] = static_cast<Scalar>(c.in[offset + i]);
    grads.push_back(g);
    offset += n;
  }
  ASSERT_EQ(offset, c.in.size());
  ASSERT_EQ(c.out.size(), c.in.size());
  // Two groups, as a model with weights and biases would pass them: the norm is global.
  std::vector<std::vector<adamx::TensorRef<Scalar>>> views{{grads[0], grads[1]}, {grads[2]}};
  const double n = static_cast<double>(c.in.size());
  double grad_tolerance = 0;  // relative, per element
  if (c.kind == "clip_norm") {
    const double norm_type = c.header.at(0), max_norm = c.header.at(1), torch_norm = c.header.at(2);
    const double norm = adamx::clip_grad_norm(views, max_norm, norm_type);
    const double rel = std::fabs(norm - torch_norm) / torch_norm;
    worst_norm_rel = std::max(worst_norm_rel, rel);
    EXPECT_LE(rel, (n + 8) * u) << c.name << ": adamx " << norm << ", torch " << torch_norm;
    const bool torch_clipped = c.in != c.out;
    grad_tolerance = torch_clipped ? (n + 16) * u : 0.0;
    if (c.name.find("boundary") != std::string::npos) {
      EXPECT_LT(max_norm, norm) << c.name;
      EXPECT_TRUE(torch_clipped) << c.name << ": the boundary case must be one PyTorch clips";
    }
  } else {
    ASSERT_EQ(c.kind, "clip_value");
    adamx::clip_grad_value(views, c.header.at(0));
  }
  offset = 0;
  for (const Vector& g : grads)
    for (Eigen::Index i = 0; i < g.size(); ++i, ++offset) {
      const double ours = static_cast<double>(g[i]);
      const double theirs = c.out[offset];
      EXPECT_LE(std::fabs(ours - theirs), grad_tolerance * std::fabs(theirs))
          << c.name << " " << c.dtype << " element " << offset << ": adamx " << ours << ", torch " << theirs;
      const double ulp = static_cast<double>(std::nextafter(static_cast<Scalar>(std::fabs(theirs)),
                                                            std::numeric_limits<Scalar>::infinity())) -
                         std::fabs(theirs);
      worst_grad_ulps = std::max(worst_grad_ulps, std::fabs(ours - theirs) / ulp);
    }
}

TEST(ClipParity, EveryRecordedCaseMatchesPyTorch) {
  const std::vector<ClipCase> cases = read_cases();
  ASSERT_EQ(cases.size(), 28u);  // (4 norm types × 3 limits + 2 clip values) × 2 types
  for (const char* dtype : {"f32", "f64"}) {
    double worst_norm_rel = 0, worst_grad_ulps = 0;
    for (const ClipCase& c : cases) {
      if (c.dtype != dtype) continue;
      if (c.dtype == "f32")
        check_case<float>(c, worst_norm_rel, worst_grad_ulps);
      else
        check_case<double>(c, worst_norm_rel, worst_grad_ulps);
    }
    std::printf("[parity] clip %s: max relative norm difference %.3e, max gradient difference %.1f ulps\n",
                dtype, worst_norm_rel, worst_grad_ulps);
  }
}

}  // namespace
