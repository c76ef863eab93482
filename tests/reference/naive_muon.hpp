// An independent scalar reference for Muon and for its AdamW groups, written
// straight from the equations (docs/design.md, "Muon"), long double, a loop
// per element and per product, nothing shared with the library (no adamx
// header is included). For a matrix W (rows × cols) with gradient G:
//     B ← μ·B + (1 − μ)·G
//     U = (1 − μ)·G + μ·B  (nesterov), else U = B
//     X = U (or Uᵀ when rows > cols), X ← X/(‖X‖_F + 1e-7)
//     five times: A = X·Xᵀ, X ← a·X + (b·A + c·A·A)·X
//     W ← W·(1 − lr·λ) − lr·s·X (transposed back),
//         s = sqrt(max(1, rows/cols)) or 0.2·sqrt(max(rows, cols))
// and for a vector θ (an AdamW group), t = 1, 2, …:
//     m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
//     θ ← θ·(1 − lr·λ) − lr·(m/(1 − β1^t))/(sqrt(v/(1 − β2^t)) + ε)
// Matrices are held row by row here (element (i, j) at i·cols + j),
// whatever the library's storage order.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace naive_muon {

using Real = long double;

struct Hyper {
  Real lr = 0.02L;
  Real momentum = 0.95L;
  bool nesterov = true;
  Real weight_decay = 0;
  bool match_rms_adamw = false;
  int ns_steps = 5;
  bool maximize = false;
};

// Row-major rows × cols.
struct Matrix {
  long rows = 0, cols = 0;
  std::vector<Real> a;
  Matrix() = default;
  Matrix(long r, long c) : rows(r), cols(c), a(static_cast<std::size_t>(r * c), 0) {}
  Real& operator()(long i, long j) { return a[static_cast<std::size_t>(i * cols + j)]; }
  Real operator()(long i, long j) const { return a[static_cast<std::size_t>(i * cols + j)]; }
};

inline Matrix transpose(const Matrix& x) {
  Matrix t(x.cols, x.rows);
  for (long i = 0; i < x.rows; ++i)
    for (long j = 0; j < x.cols; ++j) t(j, i) = x(i, j);
  return t;
}

inline Matrix product(const Matrix& x, const Matrix& y) {
  Matrix p(x.rows, y.cols);
  for (long i = 0; i < x.rows; ++i)
    for (long j = 0; j < y.cols; ++j) {
      Real sum = 0;
      for (long k = 0; k < x.cols; ++k) sum += x(i, k) * y(k, j);
      p(i, j) = sum;
    }
  return p;
}

// The quintic Newton–Schulz iteration of Jordan et al. 2024 on u. Before
// each step's update, observe(x, A, A·A, B, B·x) sees the step's matrices
// (the rounding bound below replays the iteration through it).
struct NoObserver {
  void operator()(const Matrix&, const Matrix&, const Matrix&, const Matrix&, const Matrix&) const {}
};
template <class Observe = NoObserver>
Matrix newton_schulz(const Matrix& u, int steps, const Observe& observe = {}) {
  const Real a = 3.4445L, b = -4.7750L, c = 2.0315L;
  const bool tall = u.rows > u.cols;
  Matrix x = tall ? transpose(u) : u;
  Real squares = 0;
  for (const Real e : x.a) squares += e * e;
  const Real denominator = std::sqrt(squares) + 1e-7L;
  for (Real& e : x.a) e /= denominator;
  for (int step = 0; step < steps; ++step) {
    const Matrix A = product(x, transpose(x));
    const Matrix AA = product(A, A);
    Matrix B(A.rows, A.cols);
    for (std::size_t e = 0; e < B.a.size(); ++e) B.a[e] = b * A.a[e] + c * AA.a[e];
    const Matrix BX = product(B, x);
    observe(x, A, AA, B, BX);
    for (std::size_t e = 0; e < x.a.size(); ++e) x.a[e] = a * x.a[e] + BX.a[e];
  }
  return tall ? transpose(x) : x;
}

inline Real frobenius(const Matrix& m) {
  Real sum = 0;
  for (const Real e : m.a) sum += e * e;
  return std::sqrt(sum);
}

// A bound on ‖X − X*‖_F, X the Newton–Schulz output computed in a
// precision of unit roundoff `eps` and X* this file's from the same u, to
// first order in eps, when the u it was computed from differs from this u
// by at most `input_error` in Frobenius norm. Normalising turns that into
// at most 2·input_error/‖u‖_F, and rounds (2·eps relative: the norm, the
// division); then at each step the products
// (|fl(P·Q) − P·Q| ≤ d·eps·|P|·|Q| element by element for inner dimension
// d, so in Frobenius norm d·eps·‖P‖_F·‖Q‖_F) and the two sums (2·eps of
// each term). An error present before a step is multiplied by at most
// L = 3.88 through it: the Fréchet derivative of X ↦ a·X + b·XXᵀX +
// c·XXᵀXXᵀX is bounded in Frobenius norm by the largest divided difference
// of the odd polynomial p(σ) = aσ + bσ³ + cσ⁵ over the singular values,
// which lie in [0, 1.2] (p maps [0, 1] into [0, 1.2] and [0, 1.2] into
// itself), and max |p'| there is |p'(1.2)| = 3.88. The norms are the ones
// this replay computes in long double.
inline Real newton_schulz_error_bound(const Matrix& u, int steps, Real eps, Real input_error) {
  const Real a = 3.4445L, b = -4.7750L, c = 2.0315L, L = 3.88L;
  const Real u_norm = frobenius(u);
  const Real denominator = u_norm + 1e-7L;
  Real bound = 2 * input_error / denominator + 2 * eps * u_norm / denominator;
  newton_schulz(u, steps, [&](const Matrix& x, const Matrix& A, const Matrix& AA, const Matrix& B, const Matrix& BX) {
    const Real d_wide = static_cast<Real>(x.cols), d_small = static_cast<Real>(x.rows);
    const Real nx = frobenius(x), na = frobenius(A), naa = frobenius(AA), nb = frobenius(B), nbx = frobenius(BX);
    // A's error reaches B through b·A and c·(A·A) (2·‖A‖_F times it), then X through B·X.
    const Real error_a = d_wide * eps * nx * nx;
    const Real error_b = std::abs(b) * error_a + c * (2 * na * error_a + d_small * eps * na * na) +
                         2 * eps * (std::abs(b) * na + c * naa);
    const Real error_step = error_b * nx + d_small * eps * nb * nx + 2 * eps * (std::abs(a) * nx + nbx);
    bound = L * bound + error_step;
  });
  return bound;
}

// One Muon matrix: W and B, stepped with gradient G (row-major, W's shape).
struct MuonMatrix {
  Matrix w, buffer;
  Matrix last_direction;  // X of the last step (W's shape), for tests of the direction alone

  void step(const Hyper& h, Matrix g) {
    if (h.maximize)
      for (Real& e : g.a) e = -e;
    if (buffer.a.empty()) buffer = Matrix(w.rows, w.cols);
    Matrix u(w.rows, w.cols);
    for (std::size_t e = 0; e < u.a.size(); ++e) {
      buffer.a[e] = h.momentum * buffer.a[e] + (1 - h.momentum) * g.a[e];
      u.a[e] = h.nesterov ? (1 - h.momentum) * g.a[e] + h.momentum * buffer.a[e] : buffer.a[e];
    }
    last_direction = newton_schulz(u, h.ns_steps);
    const Real rows = static_cast<Real>(w.rows), cols = static_cast<Real>(w.cols);
    const Real s = h.match_rms_adamw ? 0.2L * std::sqrt(std::max(rows, cols)) : std::sqrt(std::max<Real>(1, rows / cols));
    for (std::size_t e = 0; e < w.a.size(); ++e)
      w.a[e] = w.a[e] * (1 - h.lr * h.weight_decay) - h.lr * s * last_direction.a[e];
  }
};

// The first-order bound on ‖W − W*‖_F for a matrix stepped in a precision
// of unit roundoff eps, W* the reference's MuonMatrix: advance() after each
// MuonMatrix::step with the same gradient. Per step: B's lerp rounds 3
// times per element (B's earlier error shrinking by μ), U's lerp likewise;
// X's error is newton_schulz_error_bound from U's; W's update rounds the
// decay, the product by −lr·s and the sum (3·eps of ‖W‖_F and of
// lr·s·‖X‖_F), and W's earlier error shrinks by 1 − lr·λ.
struct MatrixBound {
  Real buffer_error = 0;
  Real w_error = 0;

  void advance(const Hyper& h, const MuonMatrix& m, const Matrix& g, Real eps) {
    const Real sign = h.maximize ? -1 : 1;
    Matrix u(m.w.rows, m.w.cols);
    for (std::size_t e = 0; e < u.a.size(); ++e)
      u.a[e] = h.nesterov ? (1 - h.momentum) * sign * g.a[e] + h.momentum * m.buffer.a[e] : m.buffer.a[e];
    buffer_error = h.momentum * buffer_error + 3 * eps * (frobenius(m.buffer) + frobenius(g));
    const Real u_error = h.nesterov ? h.momentum * buffer_error + 3 * eps * (frobenius(u) + frobenius(g)) : buffer_error;
    const Real step_size = h.lr * scale(h, m.w.rows, m.w.cols);
    w_error = w_error * (1 - h.lr * h.weight_decay) +
              step_size * newton_schulz_error_bound(u, h.ns_steps, eps, u_error) +
              3 * eps * (frobenius(m.w) + step_size * frobenius(m.last_direction));
  }

  static Real scale(const Hyper& h, long rows_count, long cols_count) {
    const Real rows = static_cast<Real>(rows_count), cols = static_cast<Real>(cols_count);
    return h.match_rms_adamw ? 0.2L * std::sqrt(std::max(rows, cols)) : std::sqrt(std::max<Real>(1, rows / cols));
  }
};

struct AdamWHyper {
  Real lr = 3e-4L;
  Real beta1 = 0.9L, beta2 = 0.95L, eps = 1e-10L;
  Real weight_decay = 0;
  bool maximize = false;
};

// One AdamW vector.
struct AdamWVector {
  std::vector<Real> theta, m, v;
  long t = 0;

  void step(const AdamWHyper& h, std::vector<Real> g) {
    if (h.maximize)
      for (Real& e : g) e = -e;
    if (m.empty()) m.assign(theta.size(), 0), v.assign(theta.size(), 0);
    ++t;
    const Real bias1 = 1 - std::pow(h.beta1, static_cast<Real>(t)), bias2 = 1 - std::pow(h.beta2, static_cast<Real>(t));
    for (std::size_t e = 0; e < theta.size(); ++e) {
      m[e] = h.beta1 * m[e] + (1 - h.beta1) * g[e];
      v[e] = h.beta2 * v[e] + (1 - h.beta2) * g[e] * g[e];
      theta[e] = theta[e] * (1 - h.lr * h.weight_decay) - h.lr * (m[e] / bias1) / (std::sqrt(v[e] / bias2) + h.eps);
    }
  }
};

// A first-order bound on |θ − θ*| for one element of an AdamW vector after
// t steps in a precision of unit roundoff eps: the moments' roundings (3·eps
// relative per step, their earlier errors shrinking by β), the bias
// corrections' and the step's few (8·eps of the step), the decay's and the
// sum's (3·eps of θ): 40·eps·t·(|θ| + lr·|m̂|/(sqrt(v̂) + ε)) covers them
// for β2 ≤ 0.99 over a few hundred steps; a tiny v keeps the step's relative
// error at its few roundings because ε is added to sqrt(v̂), never divided by.
inline Real adamw_element_bound(const AdamWHyper& h, const AdamWVector& x, std::size_t e, Real eps) {
  const Real t = static_cast<Real>(x.t);
  const Real bias1 = 1 - std::pow(h.beta1, t), bias2 = 1 - std::pow(h.beta2, t);
  const Real step = h.lr * std::abs(x.m[e] / bias1) / (std::sqrt(x.v[e] / bias2) + h.eps);
  return 40 * eps * t * (std::abs(x.theta[e]) + step);
}

}  // namespace naive_muon
