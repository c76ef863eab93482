// The update rule of Muon: momentum on a weight matrix's gradient, the
// momentum (with Nesterov's look-ahead) replaced by the nearest
// semi-orthogonal matrix through five quintic Newton–Schulz steps, and the
// weights stepped along it. The tensors that are not matrices (biases,
// gains) are stepped by AdamW inside the same optimizer, as Muon's users do:
// each group says which (the option `muon`).
//
//   K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse, J. Bernstein,
//   "Muon: An optimizer for hidden layers in neural networks", 2024
//   (kellerjordan.github.io/posts/muon), as the authors' muon.py computes it
//   (github.com/KellerJordan/Muon: Muon and MuonWithAuxAdam; also
//   torch.optim.Muon since 2025). For a matrix W (rows × cols) with
//   gradient G and momentum μ:
//
//     B ← lerp(B, G, 1 − μ)             = μ·B + (1 − μ)·G
//     U = lerp(G, B, μ)                 = (1 − μ)·G + μ·B   (nesterov; else U = B)
//     X = NS5(U)                        (newton_schulz.hpp; on Uᵀ if rows > cols)
//     W ← W·(1 − lr·λ) − lr·s·X,        s = sqrt(max(1, rows/cols))      (original)
//                                        s = 0.2·sqrt(max(rows, cols))   (match_rms_adamw)
//
// lerp as torch.lerp computes it (from the nearer end), and lr·s folded into
// one constant as torch.optim.Muon's adjusted lr is: the authors' muon.py
// multiplies X by s first, which rounds once more. The decay uses the
// unscaled lr. The authors run Newton–Schulz in bfloat16 on a GPU; here it
// runs in the state's precision (the parameter type's for float and double,
// float for bfloat16 and half parameters), because Eigen has no fast
// bfloat16 products on a CPU.
//
// A group with muon = false is AdamW (rules/adam.hpp, the same
// instructions as adamx::AdamW with γ = 1) with the defaults of the
// authors' MuonWithAuxAdam: lr 3e-4, betas (0.9, 0.95), eps 1e-10
// (muon_adamw_options()).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/chunk.hpp"
#include "adamx/group_scalars.hpp"
#include "adamx/layout.hpp"
#include "adamx/newton_schulz.hpp"
#include "adamx/option_fields.hpp"
#include "adamx/options.hpp"
#include "adamx/rule_gradient.hpp"
#include "adamx/rules/adam.hpp"

ADAMX_NAMESPACE_BEGIN

/// How Muon scales its step to a matrix's shape (torch.optim.Muon's
/// adjust_lr_fn).
enum class MuonAdjustLr {
  original,         ///< lr·sqrt(max(1, rows/cols)), the authors'
  match_rms_adamw,  ///< lr·0.2·sqrt(max(rows, cols)): an update RMS like AdamW's, so AdamW's lr and λ carry over
};
template <>
struct OptionEnum<MuonAdjustLr> {
  static constexpr const char* names[] = {"original", "match_rms_adamw"};
  static constexpr const char* rule = "must be MuonAdjustLr::original or ::match_rms_adamw";
};
inline const char* to_string(MuonAdjustLr mode) { return OptionEnum<MuonAdjustLr>::names[static_cast<int>(mode)]; }

namespace option_range {
inline bool newton_schulz_steps(double x) { return std::isfinite(x) && x >= 1.0 && x <= 100.0 && x == std::floor(x); }
}  // namespace option_range

/// Muon's options, with the defaults of the authors' Muon (a group of
/// matrices). A group of other tensors sets muon = false and takes the
/// AdamW fields: muon_adamw_options() gives the authors' defaults for it.
struct MuonOwnOptions {
  bool muon = true;           ///< this group's tensors are matrices stepped by Muon; false: by AdamW
  double lr = 0.02;           ///< Muon's lr (AdamW's in a group with muon = false)
  double momentum = 0.95;     ///< μ, Muon's momentum
  bool nesterov = true;       ///< step along Nesterov's look-ahead (1 − μ)·G + μ·B instead of B
  double weight_decay = 0.0;  ///< λ, decoupled: W ← W·(1 − lr·λ) (both kinds of group)
  MuonAdjustLr adjust_lr = MuonAdjustLr::original;  ///< the step's scale for a matrix's shape
  double ns_steps = 5.0;      ///< quintic Newton–Schulz steps (a whole number from 1 to 100)
  double beta1 = 0.9;         ///< AdamW groups: EMA rate of m
  double beta2 = 0.95;        ///< AdamW groups: EMA rate of v
  double eps = 1e-10;         ///< AdamW groups: added to sqrt(v̂)
  bool maximize = false;      ///< ascend instead of descend (G ← −G)
  NonFinitePolicy nonfinite = NonFinitePolicy::propagate;

  static auto option_fields() {
    using O = MuonOwnOptions;
    return std::make_tuple(
        option_flag("muon", &O::muon), option_field("lr", &O::lr, option_range::non_negative),
        option_field("momentum", &O::momentum, option_range::rate), option_flag("nesterov", &O::nesterov),
        option_field("weight_decay", &O::weight_decay, option_range::non_negative),
        option_enum("adjust_lr", &O::adjust_lr),
        option_field("ns_steps", &O::ns_steps,
                     OptionCheck<double>{&option_range::newton_schulz_steps, "must be a whole number from 1 to 100"}),
        option_field("beta1", &O::beta1, option_range::rate), option_field("beta2", &O::beta2, option_range::rate),
        option_field("eps", &O::eps, option_range::non_negative), option_flag("maximize", &O::maximize),
        option_enum("nonfinite", &O::nonfinite));
  }
};

namespace rules {

struct Muon {
  /// The per-element state slots: m and v for AdamW's groups (first, in
  /// Adam's numbering, whose update they share), the momentum for Muon's.
  enum Slot : int {
    m = 0,                ///< AdamW groups: first moment
    v = 1,                ///< AdamW groups: second moment
    momentum_buffer = 2,  ///< Muon groups: the momentum B
  };
  static constexpr int kSlots = 3;
  /// Bound in every element pass, which runs for AdamW's groups only.
  static constexpr int kBoundSlots = 2;
  static constexpr const char* slot_names[kSlots] = {"m", "v", "momentum_buffer"};
  template <class A>
  struct Slots {
    A m;                ///< AdamW groups: first moment
    A v;                ///< AdamW groups: second moment
    A momentum_buffer;  ///< Muon groups: the momentum
    static constexpr A Slots::*members[kSlots] = {&Slots::m, &Slots::v, &Slots::momentum_buffer};
  };

  /// A group with muon = true is stepped one matrix at a time
  /// (matrix_update), not by the element passes.
  static constexpr bool kStepsMatrices = true;

  /// AdamW's options for a group with muon = false.
  template <class Options>
  static AdamFamilyOptions<flavour::AdamW> adamw_options(const Options& o) {
    AdamFamilyOptions<flavour::AdamW> a;
    a.lr = o.lr;
    a.beta1 = o.beta1;
    a.beta2 = o.beta2;
    a.eps = o.eps;
    a.weight_decay = o.weight_decay;
    a.decay_mode = WeightDecayMode::decoupled;
    a.amsgrad = false;
    a.maximize = o.maximize;
    return a;
  }

  template <class Scalar>
  struct Coefficients {
    Adam::Coefficients<Scalar> adamw;  // the step of a group with muon = false
    Scalar momentum;                   // μ
    Scalar one_minus_momentum;         // 1 − μ
    Scalar decay_factor;               // 1 − lr·λ (exactly 1 when λ = 0)
    double lr;
    int ns_steps;
    MuonAdjustLr adjust_lr;
    bool muon;
    bool nesterov;
    bool maximize;

    /// For step t (AdamW's bias corrections; Muon's step does not depend on t).
    template <class Options>
    static Coefficients make(const Options& o, std::int64_t t, const NoGroupScalars& /*scalars*/) {
      const AdamFamilyOptions<flavour::AdamW> a = adamw_options(o);
      Coefficients c;
      c.adamw = Adam::Coefficients<Scalar>::make(a, 1.0, Adam::bias_corrections(a, t));
      c.momentum = static_cast<Scalar>(o.momentum);
      c.one_minus_momentum = static_cast<Scalar>(1.0 - o.momentum);
      c.decay_factor = static_cast<Scalar>(1.0 - o.lr * o.weight_decay);
      c.lr = o.lr;
      c.ns_steps = static_cast<int>(o.ns_steps);
      c.adjust_lr = o.adjust_lr;
      c.muon = o.muon;
      c.nesterov = o.nesterov;
      c.maximize = o.maximize;
      return c;
    }
    bool gradient_reads_param() const { return false; }
    bool uses_slot(int k) const { return muon ? k == momentum_buffer : k != momentum_buffer; }
    bool steps_matrices() const { return muon; }
  };

  /// What a group's options refuse in a tensor: Muon's groups take matrices
  /// of at least 2 × 2 (a vector, e.g. a bias, belongs to an AdamW group).
  template <class Options>
  static std::string tensor_problem(const Options& o, const TensorShape& shape) {
    if (!o.muon || (shape.rows >= 2 && shape.cols >= 2)) return {};
    return "is " + shape.describe() +
           ": a group with muon = true steps matrices of at least 2x2; put vectors such as biases in a group "
           "with muon = false (muon_adamw_options())";
  }

  /// The step's multiplier of X for a rows × cols matrix: −lr·s.
  template <class Scalar>
  static double neg_adjusted_lr(const Coefficients<Scalar>& c, const TensorShape& shape) {
    const double rows = static_cast<double>(shape.rows), cols = static_cast<double>(shape.cols);
    const double s = c.adjust_lr == MuonAdjustLr::original ? std::sqrt(std::max(1.0, rows / cols))
                                                           : 0.2 * std::sqrt(std::max(rows, cols));
    return -(c.lr * s);
  }

  /// The gradient the moments see: sign flipped for maximize.
  template <class Scalar, class L, class LoadTheta>
  static ADAMX_ALWAYS_INLINE L gradient(const Coefficients<Scalar>& c, L grad, const LoadTheta& /*theta*/) {
    return detail::maximize_only_gradient(c.maximize, grad);
  }

  /// The element update of a group with muon = false: AdamW's.
  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    return Adam::update(c.adamw, theta, grad, g, state);
  }

  /// Scratch elements matrix_update needs for a tensor of `shape`.
  static Eigen::Index matrix_scratch_size(const TensorShape& shape) {
    const Eigen::Index n = shape.size(), small = std::min(shape.rows, shape.cols);
    return 2 * n + detail::newton_schulz_scratch(small, n / std::max<Eigen::Index>(small, 1));
  }

  /// One step of one matrix of a group with muon = true: θ (`theta`, in
  /// the tensor's memory order, `shape` giving rows, cols and the order),
  /// its gradient and slots; `scratch` holds matrix_scratch_size(shape)
  /// elements. Returns the squared norm of the gradient (after maximize),
  /// summed in double.
  template <class Param, class S>
  static double matrix_update(const Coefficients<S>& c, Param* theta, const Param* grad, S* const* slots,
                              const TensorShape& shape, S* scratch) {
    using Index = Eigen::Index;
    const Index n = shape.size();
    // The memory as a column-major matrix: W itself, or Wᵀ when row-major.
    const Index memory_rows = shape.row_major ? shape.cols : shape.rows;
    const Index memory_cols = n / memory_rows;
    S* buffer = slots[momentum_buffer];
    S* u = scratch;
    double grad_squares = 0.0, u_squares = 0.0;
    for (Index e = 0; e < n; ++e) {
      const S g = detail::maximize_only_gradient(c.maximize, static_cast<S>(grad[e]));
      grad_squares += static_cast<double>(g) * static_cast<double>(g);
      const S b = lerp(buffer[e], g, c.one_minus_momentum);
      buffer[e] = b;
      const S update = c.nesterov ? lerp(g, b, c.momentum) : b;
      u[e] = update;
      u_squares += static_cast<double>(update) * static_cast<double>(update);
    }
    // Newton–Schulz on the wide orientation (fewer rows than columns).
    using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
    const bool transposed = memory_rows > memory_cols;
    S* x = u;
    if (transposed) {
      x = scratch + n;
      Eigen::Map<Matrix>(x, memory_cols, memory_rows) = Eigen::Map<const Matrix>(u, memory_rows, memory_cols).transpose();
    }
    const Index wide_rows = std::min(memory_rows, memory_cols);
    detail::newton_schulz_wide(x, wide_rows, n / wide_rows, u_squares, c.ns_steps, scratch + 2 * n);
    const S step = static_cast<S>(neg_adjusted_lr(c, shape));
    const Eigen::Map<const Matrix> X(x, transposed ? memory_cols : memory_rows, transposed ? memory_rows : memory_cols);
    for (Index j = 0; j < memory_cols; ++j)
      for (Index i = 0; i < memory_rows; ++i) {
        const Index e = i + j * memory_rows;
        const S direction = transposed ? X(j, i) : X(i, j);
        theta[e] = static_cast<Param>(static_cast<S>(theta[e]) * c.decay_factor + step * direction);
      }
    return grad_squares;
  }

 private:
  // torch.lerp(a, b, w) for w in [0, 1]: from a when w < 1/2, from b
  // otherwise, so that the end nearer the result carries it.
  template <class S>
  static S lerp(S a, S b, S w) {
    return w < S(0.5) ? a + w * (b - a) : b - (b - a) * (S(1) - w);
  }
};

}  // namespace rules

namespace flavour {
struct Muon {
  static constexpr const char* name = "Muon";
  using Rule = rules::Muon;
  using OptionParts = OptionPartList<MuonOwnOptions>;
};
}  // namespace flavour

using MuonOptions = BasicOptions<flavour::Muon>;

/// The options of a Muon optimizer's AdamW group (biases, gains and other
/// tensors that are not matrices), with the authors' MuonWithAuxAdam
/// defaults: lr 3e-4, betas (0.9, 0.95), eps 1e-10, no decay.
inline MuonOptions muon_adamw_options() {
  MuonOptions o;
  o.muon = false;
  o.lr = 3e-4;
  return o;
}

ADAMX_NAMESPACE_END  // namespace adamx
