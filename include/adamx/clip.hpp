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
// The norm is summed in one fixed order that a shard of the gradient can
// reproduce: every tensor is cut into the kernel's blocks (kNormBlock
// elements from its start), each block's part (Σg² in the kernel's lane
// pattern for p = 2, Σ|g| or Σ|g|^p in element order, max|g| for p = ∞) is
// computed from zero, and the parts are combined into one running total,
// block after block, tensor after tensor, group after group. So the norm
// does not depend on how the caller split its tensors into groups, and the
// sharded driver (adamx/mpi.hpp, step(…, ClipGradNorm)) gets the same bits
// from every rank's block parts. bfloat16 and half gradients are widened
// (exactly) to float first. Optimizer::step(params, grads, ClipGradNorm)
// is clip_grad_norm then step in one call (docs/distributed.md, "Clipping
// across ranks").
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

#include "adamx/abi.hpp"
#include "adamx/errors.hpp"
#include "adamx/kernel.hpp"
#include "adamx/options.hpp"
#include "adamx/tensor_ref.hpp"

ADAMX_NAMESPACE_BEGIN

/// Clipping by the total norm as part of a step: `opt.step(params, grads,
/// adamx::ClipGradNorm{1.0})` (Optimizer and mpi::ShardedOptimizer). The
/// fields mean what clip_grad_norm's arguments of the same names mean.
struct ClipGradNorm {
  double max_norm;
  double norm_type = 2.0;
  bool error_if_nonfinite = false;
};

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

/// What is wrong with clip_grad_norm's max_norm and norm_type ("" if
/// nothing): the message its std::invalid_argument carries.
inline std::string clip_argument_problem(double max_norm, double norm_type) {
  if (!(max_norm >= 0.0))
    return "adamx::clip_grad_norm: invalid max_norm = " + format_value(max_norm) + " (must be >= 0)";
  if (!(norm_type > 0.0))
    return "adamx::clip_grad_norm: invalid norm_type = " + format_value(norm_type) +
           " (must be > 0, or infinity)";
  return {};
}

inline void check_clip_arguments(double max_norm, double norm_type) {
  const std::string problem = clip_argument_problem(max_norm, norm_type);
  if (!problem.empty()) throw std::invalid_argument(problem);
}

/// One block's part of the norm (n ≤ kNormBlock elements from `data`,
/// `available` to the tensor's end, for prefetching only): Σg² in the
/// kernel's lane pattern for p = 2, max|g| for p = ∞ (NaN if any g is NaN),
/// Σ|g|^p in element order otherwise.
template <class Scalar>
double norm_block_part(const Scalar* data, Index n, Index available, double norm_type) {
  double part = 0.0;
  if (norm_type == 2.0) return squared_sum_block(data, n, available);
  if (std::isinf(norm_type)) {
    for (Index i = 0; i < n; ++i) {
      const double a = std::fabs(static_cast<double>(data[i]));
      if (!(a <= part)) part = a;  // also takes a NaN, which then stays
      if (std::isnan(part)) break;
    }
  } else if (norm_type == 1.0) {
    for (Index i = 0; i < n; ++i) part += std::fabs(static_cast<double>(data[i]));
  } else {
    for (Index i = 0; i < n; ++i) part += std::pow(std::fabs(static_cast<double>(data[i])), norm_type);
  }
  return part;
}

/// Calls on_part(part) for every block of a tensor of n elements, in order.
template <class Scalar, class OnPart>
void for_each_norm_part(const Scalar* data, Index n, double norm_type, OnPart on_part) {
  for (Index start = 0; start < n; start += kNormBlock)
    on_part(norm_block_part(data + start, std::min(kNormBlock, n - start), n - start, norm_type));
}

/// The running total after one more block part: a sum, or for p = ∞ a
/// maximum that keeps a NaN once it has met one.
inline double add_norm_part(double total, double part, double norm_type) {
  if (std::isinf(norm_type)) return part > total || std::isnan(part) ? part : total;
  return total + part;
}

/// The norm from the running total of all parts.
inline double finish_norm(double total, double norm_type) {
  return std::isinf(norm_type) ? total
         : norm_type == 2.0    ? std::sqrt(total)
         : norm_type == 1.0    ? total
                               : std::pow(total, 1.0 / norm_type);
}

/// The message of the NonFiniteGradientError thrown for a non-finite norm
/// with error_if_nonfinite.
inline std::string nonfinite_norm_message(double norm_type, double norm, std::size_t first_bad) {
  return "adamx::clip_grad_norm: the total norm of order " + format_value(norm_type) +
         " of the gradients is " + format_value(norm) + " (first non-finite in group " +
         std::to_string(first_bad) + "), so it cannot be clipped; nothing was changed";
}

/// The factor gradients are multiplied by for a finite norm; clipping
/// happens only when it is below 1 (PyTorch clamps the coefficient to 1).
inline double clip_factor(double max_norm, double norm) { return max_norm / (norm + 1e-6); }

/// to[i] = from[i] · factor, rounded to Scalar as a multiplication of two
/// Scalars (`to` may be `from`).
template <class Scalar>
void scale_gradient(const Scalar* from, Scalar* to, Index n, double factor) {
  const Scalar scale = static_cast<Scalar>(factor);
  for (Index i = 0; i < n; ++i) to[i] = from[i] * scale;
}

template <class Groups>
double clip_grad_norm_impl(const Groups& grads, double max_norm, double norm_type,
                           bool error_if_nonfinite) {
  check_clip_arguments(max_norm, norm_type);
  require_contiguous(grads, "clip_grad_norm");
  (void)instruction_set();  // chosen, or ADAMX_INSTRUCTION_SET refused, before anything changes
  double total = 0.0;
  std::size_t gi = 0;
  std::size_t first_bad = std::numeric_limits<std::size_t>::max();
  for (const auto& group : grads) {
    for (const auto& tensor : group) {
      const auto view = tensor;
      for_each_norm_part(view.data(), view.size(), norm_type,
                         [&](double part) { total = add_norm_part(total, part, norm_type); });
    }
    if (!std::isfinite(total) && first_bad == std::numeric_limits<std::size_t>::max()) first_bad = gi;
    ++gi;
  }
  const double norm = finish_norm(total, norm_type);
  if (!std::isfinite(norm)) {
    if (error_if_nonfinite)
      throw NonFiniteGradientError(nonfinite_norm_message(norm_type, norm, first_bad), first_bad);
    return norm;
  }
  const double factor = clip_factor(max_norm, norm);
  if (!(factor < 1.0)) return norm;
  for (const auto& group : grads)
    for (const auto& tensor : group) {
      const auto view = tensor;
      scale_gradient(view.data(), view.data(), view.size(), factor);
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

ADAMX_NAMESPACE_END  // namespace adamx
