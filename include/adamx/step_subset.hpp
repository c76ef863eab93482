// Stepping a subset of the tensors (docs/design.md, "Stepping a subset"):
// which tensors of each group one step updates, and the steps each of them
// has taken, so that each is bias-corrected with its own count. This is how
// libtorch's optimizers treat a parameter without a gradient (skipped, its
// moments kept) and a parameter trained later than the rest (its own step
// count); the libtorch adapter (torch.hpp) steps with it.
//
// The group's t counts the steps in which at least one of its tensors
// stepped; γ and h stay per group, s sums over the stepped tensors only, and
// h is bias-corrected with the group's t. A tensor's count can therefore
// never exceed its group's t.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/layout.hpp"

ADAMX_NAMESPACE_BEGIN

/// The tensors of one group that a step updates, by index into the group in
/// increasing order, each with the steps it has taken before this one (its m
/// and v are bias-corrected with that count + 1). Empty: the group does not
/// step (its t does not advance).
struct GroupSubset {
  std::vector<std::size_t> tensors;
  std::vector<std::int64_t> steps_taken;  ///< one per entry of `tensors`, 0 ≤ count ≤ the group's t

  /// Appends tensor `tensor`, which has taken `steps` steps.
  void add(std::size_t tensor, std::int64_t steps) {
    tensors.push_back(tensor);
    steps_taken.push_back(steps);
  }
  /// Empties the lists, keeping their memory for the next step.
  void clear() {
    tensors.clear();
    steps_taken.clear();
  }
  bool empty() const { return tensors.empty(); }
};

/// For Optimizer::step(params, grads, subset): one GroupSubset per group of
/// the optimizer, in group order. params and grads then hold, per group, only
/// the listed tensors, in the listed order.
struct StepSubset {
  std::vector<GroupSubset> groups;
};

namespace detail {

// step(params, grads, subset)'s checks, against `groups` (anything with
// .name, .t and .tensors of TensorShapes): the subset has one entry per
// group, its indices are in range and increasing, every count is between 0
// and the group's t, and params and grads hold one view per listed tensor,
// each fitting it (check_view). Builds a message only on failure: the step
// must not allocate.
template <class Tensor, class ConstTensor, class Groups, class ParamGroups, class GradGroups>
void check_subset_step_arguments(const char* optimizer, const Groups& groups, const StepSubset& subset,
                                 const ParamGroups& params, const GradGroups& grads) {
  const auto fail = [&](const std::string& what) {
    throw std::invalid_argument(message_prefix(optimizer, "step") + what);
  };
  if (subset.groups.size() != groups.size())
    fail("the subset lists " + std::to_string(subset.groups.size()) + " groups, but the optimizer has " +
         std::to_string(groups.size()) + " groups");
  const auto n_params = static_cast<std::size_t>(std::distance(std::begin(params), std::end(params)));
  const auto n_grads = static_cast<std::size_t>(std::distance(std::begin(grads), std::end(grads)));
  if (n_params != groups.size() || n_grads != groups.size())
    fail("got " + std::to_string(n_params) + " parameter groups and " + std::to_string(n_grads) +
         " gradient groups, but the optimizer has " + std::to_string(groups.size()) + " groups");
  auto param_group = std::begin(params);
  auto grad_group = std::begin(grads);
  for (std::size_t gi = 0; gi < groups.size(); ++gi, ++param_group, ++grad_group) {
    const auto& g = groups[gi];
    const GroupSubset& chosen = subset.groups[gi];
    const auto group = [&] { return "group '" + std::string(g.name) + "': "; };  // on failure only
    if (chosen.steps_taken.size() != chosen.tensors.size())
      fail(group() + "the subset lists " + std::to_string(chosen.tensors.size()) + " tensors but " +
           std::to_string(chosen.steps_taken.size()) + " step counts");
    for (std::size_t k = 0; k < chosen.tensors.size(); ++k) {
      const std::size_t j = chosen.tensors[k];
      if (j >= g.tensors.size())
        fail(group() + "the subset's tensor index " + std::to_string(j) + " is out of range (the group has " +
             std::to_string(g.tensors.size()) + " tensors)");
      if (k > 0 && j <= chosen.tensors[k - 1])
        fail(group() + "the subset's tensor indices must increase, but " + std::to_string(j) + " follows " +
             std::to_string(chosen.tensors[k - 1]));
      const std::int64_t steps = chosen.steps_taken[k];
      if (steps < 0 || steps > g.t)
        fail("tensor '" + std::string(g.name) + "." + g.tensors[j].name + "': the subset says it has taken " +
             std::to_string(steps) + " steps, but it must be between 0 and its group's t = " +
             std::to_string(g.t) + " (a tensor steps only with its group)");
    }
    const auto np = static_cast<std::size_t>(std::distance(std::begin(*param_group), std::end(*param_group)));
    const auto ng = static_cast<std::size_t>(std::distance(std::begin(*grad_group), std::end(*grad_group)));
    if (np != chosen.tensors.size() || ng != chosen.tensors.size())
      fail(group() + "the subset lists " + std::to_string(chosen.tensors.size()) + " tensors but got " +
           std::to_string(np) + " parameters and " + std::to_string(ng) + " gradients");
    auto param = std::begin(*param_group);
    auto grad = std::begin(*grad_group);
    for (std::size_t k = 0; k < chosen.tensors.size(); ++k, ++param, ++grad) {
      const Tensor p = *param;
      const ConstTensor q = *grad;
      check_view(optimizer, g, chosen.tensors[k], "parameter", p.layout(), p.data() != nullptr);
      check_view(optimizer, g, chosen.tensors[k], "gradient", q.layout(), q.data() != nullptr);
    }
  }
}

}  // namespace detail

ADAMX_NAMESPACE_END  // namespace adamx
