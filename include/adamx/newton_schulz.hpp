// The quintic Newton–Schulz iteration Muon uses to replace a matrix by an
// approximation of the nearest semi-orthogonal matrix (U·Vᵀ for X = U·Σ·Vᵀ):
// each step maps every singular value σ to a·σ + b·σ³ + c·σ⁵, with
// coefficients chosen to push σ in (0, 1] quickly towards 1 rather than
// to converge exactly. After five steps the singular values lie in about
// [0.7, 1.2]: close enough for an update direction, and cheaper than an
// SVD. Written with Eigen's matrix products (the element passes of
// kernel.hpp do not apply: every output depends on a whole row and column).
//
//   K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse, J. Bernstein,
//   "Muon: An optimizer for hidden layers in neural networks", 2024
//   (kellerjordan.github.io/posts/muon), zeropower_via_newtonschulz5 in the
//   authors' muon.py: (a, b, c) = (3.4445, −4.7750, 2.0315), the matrix
//   first divided by its Frobenius norm + 1e-7 so that every σ ≤ 1.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

/// The coefficients of one quintic step σ ↦ a·σ + b·σ³ + c·σ⁵.
struct NewtonSchulzCoefficients {
  double a = 3.4445;
  double b = -4.7750;
  double c = 2.0315;
};

/// Added to the Frobenius norm before dividing by it, so that a zero matrix
/// stays zero.
inline constexpr double kNewtonSchulzNormEps = 1e-7;

namespace detail {

/// Elements of scratch newton_schulz_wide needs for an m×n matrix, m ≤ n.
inline Eigen::Index newton_schulz_scratch(Eigen::Index m, Eigen::Index n) { return m * n + 2 * m * m; }

/// X (m×n, column-major at `x`, m ≤ n: the product X·Xᵀ is the smaller
/// Gram matrix) ← `steps` quintic steps applied to X/(‖X‖_F + 1e-7), where
/// `squared_norm` is ‖X‖_F², summed by the caller in double. `scratch` holds
/// newton_schulz_scratch(m, n) elements. The products are Eigen's in the
/// precision S, in the authors' order: A = X·Xᵀ, B = b·A + c·(A·A),
/// X ← a·X + B·X.
template <class S>
void newton_schulz_wide(S* x, Eigen::Index m, Eigen::Index n, double squared_norm, int steps, S* scratch,
                        const NewtonSchulzCoefficients& k = {}) {
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  Eigen::Map<Matrix> X(x, m, n), Y(scratch, m, n), A(scratch + m * n, m, m), B(scratch + m * n + m * m, m, m);
  const S denominator = static_cast<S>(std::sqrt(squared_norm)) + static_cast<S>(kNewtonSchulzNormEps);
  X /= denominator;
  const S a = static_cast<S>(k.a), b = static_cast<S>(k.b), c = static_cast<S>(k.c);
  for (int step = 0; step < steps; ++step) {
    A.noalias() = X * X.transpose();
    B.noalias() = A * A;
    B = c * B + b * A;
    Y.noalias() = B * X;
    X = a * X + Y;
  }
}

}  // namespace detail

/// The Newton–Schulz output for `g` (any shape): `steps` quintic steps on
/// g/(‖g‖_F + 1e-7), computed on gᵀ when g has more rows than columns (as
/// the authors do), in g's precision. Allocates; Muon's step uses the
/// workspace its optimizer keeps instead.
template <class Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> newton_schulz(
    const Eigen::MatrixBase<Derived>& g, int steps = 5, const NewtonSchulzCoefficients& k = {}) {
  using S = typename Derived::Scalar;
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  const bool tall = g.rows() > g.cols();
  Matrix x = tall ? Matrix(g.transpose()) : Matrix(g);
  double squared_norm = 0.0;
  for (Eigen::Index i = 0; i < x.size(); ++i) squared_norm += static_cast<double>(x.data()[i]) * static_cast<double>(x.data()[i]);
  Matrix scratch(detail::newton_schulz_scratch(x.rows(), x.cols()), 1);
  detail::newton_schulz_wide(x.data(), x.rows(), x.cols(), squared_norm, steps, scratch.data(), k);
  if (tall) return x.transpose();
  return x;
}

ADAMX_NAMESPACE_END  // namespace adamx
