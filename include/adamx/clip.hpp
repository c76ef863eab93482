// Global gradient-norm clipping across every tensor of every group, as
// torch.nn.utils.clip_grad_norm_ does: if the L2 norm of all gradients taken
// together exceeds max_norm, every gradient is scaled by max_norm / (norm + 1e-6).
// Call it on the gradients before step().
#pragma once

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "adamx/kernel.hpp"
#include "adamx/options.hpp"
#include "adamx/tensor_ref.hpp"

namespace adamx {
namespace detail {

template <class Groups>
double clip_grad_norm_impl(const Groups& grads, double max_norm) {
  if (!(max_norm >= 0.0) || std::isnan(max_norm))
    throw std::invalid_argument("adamx::clip_grad_norm: invalid max_norm = " +
                                format_value(max_norm) + " (must be >= 0)");
  double total = 0.0;
  for (const auto& group : grads)
    for (const auto& tensor : group) {
      const auto view = tensor;
      if (!view.layout().contiguous())
        throw std::invalid_argument("adamx::clip_grad_norm: a gradient is not contiguous");
      // The kernel's block order, so the norm does not depend on how the
      // caller split its tensors into groups.
      for (Index start = 0; start < view.size(); start += kNormBlock)
        total += squared_sum_block(view.data() + start, std::min(kNormBlock, view.size() - start),
                                   view.size() - start);
    }
  const double norm = std::sqrt(total);
  // A non-finite norm is returned untouched: scaling by it would turn every
  // gradient into NaN; the optimizer's non-finite policy decides what happens.
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double factor = max_norm / (norm + 1e-6);
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

}  // namespace detail

/// Scales every gradient so that their global L2 norm is at most max_norm and
/// returns the norm before clipping (a non-finite norm changes nothing).
/// Gradients are given per group, like step(): `clip_grad_norm({{gW1, gb1}, {gW2}}, 1.0)`.
template <class Scalar>
double clip_grad_norm(std::initializer_list<std::initializer_list<TensorRef<Scalar>>> grads,
                      double max_norm) {
  return detail::clip_grad_norm_impl(grads, max_norm);
}

/// Same, for gradients collected in containers, e.g.
/// std::vector<std::vector<TensorRef<float>>>.
template <class Groups>
double clip_grad_norm(const Groups& grads, double max_norm) {
  return detail::clip_grad_norm_impl(grads, max_norm);
}

}  // namespace adamx
