// Gradient clipping before step(), as torch.nn.utils does it (PyTorch 1.13):
//
// clip_grad_norm: the p-norm of all gradients of all groups taken together
// (as if concatenated into one vector) is computed; every gradient is then
// multiplied by min(1, max_norm / (norm + 1e-6)). The 1e-6 is PyTorch's: it
// means gradients are scaled a little (by up to 1e-6/norm) even when the norm
// is just below max_norm, and that a zero gradient never divides by zero.
// Returns the norm before clipping.
//
// Non-finite norm (a NaN or ±Inf gradient): adamx changes nothing and returns
// the norm, so the optimizer's NonFinitePolicy decides what the step does with
// it (skip or error per group). PyTorch instead multiplies every gradient of
// every group by NaN (NaN norm) or 0 (infinite norm). With
// error_if_nonfinite = true both throw; adamx throws NonFiniteGradientError,
// naming the first group whose contribution is not finite, before changing
// anything.
//
// clip_grad_value: every element is clamped to [−clip_value, clip_value]
// (NaN stays NaN, as with torch.clamp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "adamx/errors.hpp"
#include "adamx/kernel.hpp"
#include "adamx/options.hpp"
#include "adamx/tensor_ref.hpp"

namespace adamx {
namespace detail {

// Throws unless every gradient is contiguous; runs before anything changes.
template <class Groups>
void require_contiguous(const Groups& grads, const char* function) {
  std::size_t gi = 0;
  for (const auto& group : grads) {
    std::size_t j = 0;
    for (const auto& tensor : group) {
      const auto view = tensor;
      if (!view.layout().contiguous())
        throw std::invalid_argument(std::string("adamx::") + function + ": the gradient of group " +
                                    std::to_string(gi) + ", tensor " + std::to_string(j) +
                                    " is not contiguous");
      ++j;
    }
    ++gi;
  }
}

// One tensor's contribution to the norm: Σ|g|^p for finite p (Σg² summed in
// the kernel's block order, so the 2-norm does not depend on how the caller
// split its tensors into groups), max|g| for p = ∞ (NaN if any g is NaN).
template <class View>
double norm_contribution(const View& view, double norm_type) {
  const auto* data = view.data();
  const Index n = view.size();
  double total = 0.0;
  if (norm_type == 2.0) {
    for (Index start = 0; start < n; start += kNormBlock)
      total += squared_sum_block(data + start, std::min(kNormBlock, n - start), n - start);
  } else if (std::isinf(norm_type)) {
    for (Index i = 0; i < n; ++i) {
      const double a = std::fabs(static_cast<double>(data[i]));
      if (!(a <= total)) total = a;  // also takes a NaN, which then stays
      if (std::isnan(total)) break;
    }
  } else if (norm_type == 1.0) {
    for (Index i = 0; i < n; ++i) total += std::fabs(static_cast<double>(data[i]));
  } else {
    for (Index i = 0; i < n; ++i) total += std::pow(std::fabs(static_cast<double>(data[i])), norm_type);
  }
  return total;
}

template <class Groups>
double clip_grad_norm_impl(const Groups& grads, double max_norm, double norm_type,
                           bool error_if_nonfinite) {
  if (!(max_norm >= 0.0))
    throw std::invalid_argument("adamx::clip_grad_norm: invalid max_norm = " +
                                format_value(max_norm) + " (must be >= 0)");
  if (!(norm_type > 0.0))
    throw std::invalid_argument("adamx::clip_grad_norm: invalid norm_type = " +
                                format_value(norm_type) + " (must be > 0, or infinity)");
  require_contiguous(grads, "clip_grad_norm");
  const bool max_norm_type = std::isinf(norm_type);
  double total = 0.0;
  std::size_t gi = 0;
  std::size_t first_bad = std::numeric_limits<std::size_t>::max();
  for (const auto& group : grads) {
    for (const auto& tensor : group) {
      const double part = norm_contribution(tensor, norm_type);
      total = max_norm_type ? (part > total || std::isnan(part) ? part : total) : total + part;
    }
    if (!std::isfinite(total) && first_bad == std::numeric_limits<std::size_t>::max()) first_bad = gi;
    ++gi;
  }
  const double norm = max_norm_type ? total
                      : norm_type == 2.0 ? std::sqrt(total)
                      : norm_type == 1.0 ? total
                                         : std::pow(total, 1.0 / norm_type);
  if (!std::isfinite(norm)) {
    if (error_if_nonfinite)
      throw NonFiniteGradientError(
          "adamx::clip_grad_norm: the total norm of order " + format_value(norm_type) +
              " of the gradients is " + format_value(norm) + " (first non-finite in group " +
              std::to_string(first_bad) + "), so it cannot be clipped; nothing was changed",
          first_bad);
    return norm;
  }
  const double factor = max_norm / (norm + 1e-6);
  if (!(factor < 1.0)) return norm;  // PyTorch multiplies by the coefficient clamped to 1
  for (const auto& group : grads)
    for (const auto& tensor : group) {
      const auto view = tensor;
      using Scalar = std::remove_pointer_t<decltype(view.data())>;
      Scalar* data = view.data();
      const Scalar scale = static_cast<Scalar>(factor);
      for (Index i = 0; i < view.size(); ++i) data[i] = data[i] * scale;
    }
  return norm;
}

template <class Groups>
void clip_grad_value_impl(const Groups& grads, double clip_value) {
  if (!(clip_value >= 0.0))
    throw std::invalid_argument("adamx::clip_grad_value: invalid clip_value = " +
                                format_value(clip_value) + " (must be >= 0)");
  require_contiguous(grads, "clip_grad_value");
  for (const auto& group : grads)
    for (const auto& tensor : group) {
      const auto view = tensor;
      using Scalar = std::remove_pointer_t<decltype(view.data())>;
      Scalar* data = view.data();
      // Rounded to Scalar as torch.clamp rounds its bounds to the tensor's type.
      const Scalar high = static_cast<Scalar>(clip_value);
      const Scalar low = -high;
      for (Index i = 0; i < view.size(); ++i) {
        if (data[i] > high) data[i] = high;
        else if (data[i] < low) data[i] = low;  // a NaN fails both tests and stays
      }
    }
}

}  // namespace detail

/// Scales every gradient by min(1, max_norm / (norm + 1e-6)), where norm is
/// the norm_type-norm (2, 1, any p > 0, or infinity for the largest |g|) of
/// all gradients of all groups together, and returns the norm before
/// clipping. A non-finite norm changes nothing (or throws
/// NonFiniteGradientError with error_if_nonfinite). Gradients are given per
/// group, like step(): `clip_grad_norm({{gW1, gb1}, {gW2}}, 1.0)`.
/// Throws std::invalid_argument for max_norm < 0, norm_type <= 0, NaN, or a
/// non-contiguous gradient, changing nothing.
template <class Scalar>
double clip_grad_norm(std::initializer_list<std::initializer_list<TensorRef<Scalar>>> grads,
                      double max_norm, double norm_type = 2.0, bool error_if_nonfinite = false) {
  return detail::clip_grad_norm_impl(grads, max_norm, norm_type, error_if_nonfinite);
}

/// Same, for gradients collected in containers, e.g.
/// std::vector<std::vector<TensorRef<float>>>.
template <class Groups>
double clip_grad_norm(const Groups& grads, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false) {
  return detail::clip_grad_norm_impl(grads, max_norm, norm_type, error_if_nonfinite);
}

/// Clamps every gradient element to [−clip_value, clip_value]
/// (torch.nn.utils.clip_grad_value_). Throws std::invalid_argument for
/// clip_value < 0 or NaN, or a non-contiguous gradient, changing nothing.
template <class Scalar>
void clip_grad_value(std::initializer_list<std::initializer_list<TensorRef<Scalar>>> grads,
                     double clip_value) {
  detail::clip_grad_value_impl(grads, clip_value);
}

/// Same, for gradients collected in containers.
template <class Groups>
void clip_grad_value(const Groups& grads, double clip_value) {
  detail::clip_grad_value_impl(grads, clip_value);
}

}  // namespace adamx
