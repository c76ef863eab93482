// The driver: parameter groups, one step() call over all of them, typed
// option setters. It owns the state; the update rules (rules/), the passes
// over memory (kernel.hpp) and AdamX's γ/h update (correction.hpp) live in
// their own headers. Data flows one way:
//   gradients → kernel (update θ, m, v; sum s) → correction (h, γ) → report.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/clip.hpp"
#include "adamx/correction.hpp"
#include "adamx/errors.hpp"
#include "adamx/flat_state.hpp"
#include "adamx/group_scalars.hpp"
#include "adamx/kernel.hpp"
#include "adamx/layout.hpp"
#include "adamx/norm_reducer.hpp"
#include "adamx/options.hpp"
#include "adamx/out_of_line.hpp"
#include "adamx/overlap.hpp"
#include "adamx/parallel.hpp"
#include "adamx/report.hpp"
#include "adamx/rules.hpp"
#include "adamx/state.hpp"
#include "adamx/step_subset.hpp"
#include "adamx/tensor_ref.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// The state (and arithmetic) type for a parameter type.
template <class Scalar>
struct state_scalar {
  using type = Scalar;
};
template <>
struct state_scalar<Eigen::bfloat16> {
  using type = float;
};
template <>
struct state_scalar<Eigen::half> {
  using type = float;
};

// True for containers whose elements convert to the view type View (and so
// not for an Eigen vector, whose elements are scalars).
template <class Range, class View, class = void>
struct is_range_of : std::false_type {};
template <class Range, class View>
struct is_range_of<Range, View, std::void_t<decltype(std::end(std::declval<const Range&>()))>>
    : std::is_convertible<decltype(*std::begin(std::declval<const Range&>())), View> {};

template <class Groups, class View, class = void>
struct is_range_of_ranges : std::false_type {};
template <class Groups, class View>
struct is_range_of_ranges<Groups, View, std::void_t<decltype(std::end(std::declval<const Groups&>()))>>
    : is_range_of<std::decay_t<decltype(*std::begin(std::declval<const Groups&>()))>, View> {};

// Whether update rule `Rule` declares an evaluation point (kEvaluationSlot):
// its parameters hold a training point, and Optimizer::eval()/train() switch
// them to the point to evaluate and back.
template <class Rule, class = void>
struct has_evaluation_point : std::false_type {};
template <class Rule>
struct has_evaluation_point<Rule, std::void_t<decltype(Rule::kEvaluationSlot)>> : std::true_type {};

// Whether update rule `Rule` steps some groups one whole matrix at a time
// (kStepsMatrices, Muon): for a group whose coefficients say
// steps_matrices(), the driver calls Rule::matrix_update once per tensor
// instead of running the element passes.
template <class Rule, class = void>
struct steps_matrices : std::false_type {};
template <class Rule>
struct steps_matrices<Rule, std::void_t<decltype(Rule::kStepsMatrices)>>
    : std::integral_constant<bool, Rule::kStepsMatrices> {};

// What a rule refuses in a tensor of a group with `options` (Rule::tensor_problem,
// e.g. Muon's vectors); empty for a rule that refuses nothing.
template <class Rule, class Options>
auto rule_tensor_problem(const Options& options, const TensorShape& shape, int)
    -> decltype(Rule::tensor_problem(options, shape)) {
  return Rule::tensor_problem(options, shape);
}
template <class Rule, class Options>
std::string rule_tensor_problem(const Options&, const TensorShape&, long) {
  return {};
}

}  // namespace detail

/// An Adam-family optimizer over one or more parameter groups. Use the
/// aliases adamx::Adam, adamx::AdamW and adamx::AdamX (adamx.hpp).
///
/// Parameters and gradients are passed to every step() (the optimizer keeps
/// no pointers into user memory); the tensors given to add_group() only fix
/// the group's shapes.
template <class Scalar, class Flavour>
class Optimizer {
  static_assert(std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value ||
                    std::is_same<Scalar, Eigen::bfloat16>::value ||
                    std::is_same<Scalar, Eigen::half>::value,
                "adamx: the parameter type must be float, double, Eigen::bfloat16 or Eigen::half");

 public:
  /// The type of the parameters and gradients.
  using scalar_type = Scalar;
  /// Its flavour: the optimizer's name, update rule and option parts.
  using flavour_type = Flavour;
  /// The type of m, v and v_max, and of the element arithmetic: float for
  /// bfloat16 and half parameters (converted in registers during the pass,
  /// rounded once when θ is stored), the parameter type otherwise.
  using state_scalar_type = typename detail::state_scalar<Scalar>::type;
  using Options = BasicOptions<Flavour>;
  using State = GroupState<state_scalar_type, Options>;
  /// One tensor's state as plain data: its name, shape and the rule's slots.
  using tensor_state_type = typename State::Tensor;
  /// One tensor's state read in place (state_view).
  using tensor_state_view_type = TensorStateView<state_scalar_type, typename Flavour::Rule>;
  using Tensor = TensorRef<Scalar>;
  using ConstTensor = ConstTensorRef<Scalar>;

 private:
  using Rule = typename Flavour::Rule;
  using Coefficients = typename Rule::template Coefficients<state_scalar_type>;
  // The rule's per-group scalars (group_scalars.hpp): γ and h for the Adam family.
  using Scalars = GroupScalarsOf<Rule>;
  static_assert(std::is_same<Scalars, GroupScalarsFor<Options>>::value,
                "adamx: the options' flavour must name this rule");

  // One group as the optimizer holds it: the name and shapes, the scalars,
  // and the per-element state flat, one buffer per slot (flat_state.hpp).
  // State (state.hpp) is the plain-data form built from it on request.
  struct Group : GroupLayout, Scalars {
    Options options;
    std::int64_t t = 0;
    detail::FlatState<state_scalar_type, Rule::kSlots> slots;
    // A rule that steps whole matrices: the largest workspace its tensors
    // need, allocated with the group (and when its options change), so
    // that step() does not allocate it.
    std::vector<state_scalar_type> matrix_scratch;
  };

 public:
  static constexpr const char* name() { return Flavour::name; }

  /// Whether some groups, by their options, are stepped one whole matrix
  /// at a time (Muon's groups with muon = true), and so take only matrices
  /// of at least 2 x 2.
  static constexpr bool matrix_rule = detail::steps_matrices<Rule>::value;

  /// The defaults of this optimizer (PyTorch's, plus AdamX's β3 and β_n).
  static Options default_options() { return Options{}; }

  // ---- groups -------------------------------------------------------------

  /// Adds a parameter group whose tensors have the shapes of `tensors`
  /// (their values are not read) and returns its index. Names default to
  /// "group<i>" and "tensor<j>" (default_group_name, default_tensor_name:
  /// layout.hpp); they must be unique, because checkpoints
  /// match state by name. Allocates the group's state (zeros) now, so
  /// step() never allocates. Throws std::invalid_argument, changing nothing.
  std::size_t add_group(std::initializer_list<ConstTensor> tensors,
                        const Options& options = Options{}, std::string group_name = {},
                        std::vector<std::string> tensor_names = {}) {
    return add_group_impl(tensors, options, std::move(group_name), std::move(tensor_names));
  }
  /// Same, from any container of tensors or views (e.g. std::vector<TensorRef<float>>).
  template <class Tensors,
            class = std::enable_if_t<detail::is_range_of<Tensors, ConstTensorRef<Scalar>>::value>>
  std::size_t add_group(const Tensors& tensors, const Options& options = Options{},
                        std::string group_name = {}, std::vector<std::string> tensor_names = {}) {
    return add_group_impl(tensors, options, std::move(group_name), std::move(tensor_names));
  }

  std::size_t num_groups() const { return groups_.size(); }

  /// Index of the group called `group_name`; throws std::out_of_range if none.
  std::size_t group_index(const std::string& group_name) const {
    for (std::size_t i = 0; i < groups_.size(); ++i)
      if (groups_[i].name == group_name) return i;
    throw std::out_of_range(prefix("group_index") + "no group named '" + group_name + "'");
  }

  // ---- stepping -----------------------------------------------------------

  /// One step of every group: `params` and `grads` hold one list of tensors
  /// per group, in group order, e.g. `opt.step({{W1, b1}, {W2}}, {{gW1, gb1}, {gW2}})`.
  /// Wrong counts or shapes throw std::invalid_argument and a non-finite
  /// gradient in a group with NonFinitePolicy::error throws
  /// NonFiniteGradientError — in both cases before any state or parameter
  /// changes. Returns one report per group (valid until the next call).
  const std::vector<StepReport>& step(std::initializer_list<std::initializer_list<Tensor>> params,
                                      std::initializer_list<std::initializer_list<ConstTensor>> grads) {
    return step_impl(params, grads);
  }
  /// Same, from containers built once by the training loop, e.g.
  /// std::vector<std::vector<TensorRef<float>>> and std::vector<std::vector<ConstTensorRef<float>>>.
  template <class ParamGroups, class GradGroups,
            class = std::enable_if_t<detail::is_range_of_ranges<ParamGroups, TensorRef<Scalar>>::value &&
                                     detail::is_range_of_ranges<GradGroups, ConstTensorRef<Scalar>>::value>>
  const std::vector<StepReport>& step(const ParamGroups& params, const GradGroups& grads) {
    return step_impl(params, grads);
  }
  const std::vector<StepReport>& operator()(
      std::initializer_list<std::initializer_list<Tensor>> params,
      std::initializer_list<std::initializer_list<ConstTensor>> grads) {
    return step_impl(params, grads);
  }
  template <class ParamGroups, class GradGroups,
            class = std::enable_if_t<detail::is_range_of_ranges<ParamGroups, TensorRef<Scalar>>::value &&
                                     detail::is_range_of_ranges<GradGroups, ConstTensorRef<Scalar>>::value>>
  const std::vector<StepReport>& operator()(const ParamGroups& params, const GradGroups& grads) {
    return step_impl(params, grads);
  }

  /// One step of this process's shard of every group (docs/design.md section 6): the
  /// groups were added with the shard's parts of each tensor (shard.hpp),
  /// and `reducer` (norm_reducer.hpp) combines every shard's block partials
  /// of s once per step — twice when a group's nonfinite policy is skip or
  /// error, so that every shard makes the same decision. Everything else is
  /// as step(params, grads).
  template <class ParamGroups, class GradGroups, class Reducer,
            class = std::enable_if_t<detail::is_range_of_ranges<ParamGroups, TensorRef<Scalar>>::value &&
                                     detail::is_range_of_ranges<GradGroups, ConstTensorRef<Scalar>>::value &&
                                     !std::is_same<std::decay_t<Reducer>, ClipGradNorm>::value &&
                                     !std::is_same<std::decay_t<Reducer>, StepSubset>::value>>
  const std::vector<StepReport>& step(const ParamGroups& params, const GradGroups& grads,
                                      Reducer&& reducer) {
    return step_impl(params, grads, reducer);
  }

  // ---- stepping a subset --------------------------------------------------

  /// One step of the tensors `subset` lists (step_subset.hpp; docs/design.md,
  /// "Stepping a subset"), each bias-corrected with its own count: tensor j
  /// of group i, listed with steps_taken c, is updated as the (c+1)-th step
  /// of its m and v. `params` and `grads` hold, per group, only the listed
  /// tensors, in the listed order. The other tensors' θ, m and v are not
  /// touched. A group with at least one listed tensor advances its t by one,
  /// its γ and h from s summed over the listed tensors only (h
  /// bias-corrected with the group's t); a group with none does not step
  /// (its report has applied = false and finite = true). step(params, grads)
  /// is this with every tensor listed at its group's t, bit for bit.
  /// Everything step(params, grads) checks is checked, and the subset too
  /// (one entry per group, indices in range and increasing, counts from 0
  /// to the group's t), before anything changes: std::invalid_argument. The
  /// nonfinite policies apply to the listed tensors' s.
  const std::vector<StepReport>& step(std::initializer_list<std::initializer_list<Tensor>> params,
                                      std::initializer_list<std::initializer_list<ConstTensor>> grads,
                                      const StepSubset& subset) {
    detail::NoNormReducer none;
    return step_impl(params, grads, none, &subset);
  }
  /// Same, from containers (e.g. std::vector<std::vector<TensorRef<float>>>
  /// and std::vector<std::vector<ConstTensorRef<float>>>).
  template <class ParamGroups, class GradGroups,
            class = std::enable_if_t<detail::is_range_of_ranges<ParamGroups, TensorRef<Scalar>>::value &&
                                     detail::is_range_of_ranges<GradGroups, ConstTensorRef<Scalar>>::value>>
  const std::vector<StepReport>& step(const ParamGroups& params, const GradGroups& grads,
                                      const StepSubset& subset) {
    detail::NoNormReducer none;
    return step_impl(params, grads, none, &subset);
  }

  // ---- stepping with gradient clipping ------------------------------------

  /// clip_grad_norm(grads, clip.max_norm, clip.norm_type,
  /// clip.error_if_nonfinite) then step(params, grads), in one call and bit
  /// for bit: the norm is taken over all groups together. The gradients are
  /// scaled IN PLACE when the clip binds (as clip_grad_norm and PyTorch's
  /// clip_grad_norm_ do), so they must be mutable tensors. Every check of
  /// both runs before anything changes: the clip's invalid arguments throw
  /// clip_grad_norm's std::invalid_argument, and with error_if_nonfinite a
  /// non-finite norm throws its NonFiniteGradientError. A non-finite norm
  /// otherwise changes nothing and the groups' NonFinitePolicy decides.
  /// last_grad_norm() is then the norm before clipping.
  const std::vector<StepReport>& step(std::initializer_list<std::initializer_list<Tensor>> params,
                                      std::initializer_list<std::initializer_list<Tensor>> grads,
                                      const ClipGradNorm& clip) {
    return clipped_step_impl(params, grads, clip);
  }
  /// Same, from containers (e.g. std::vector<std::vector<TensorRef<float>>>
  /// for both).
  template <class ParamGroups, class GradGroups,
            class = std::enable_if_t<detail::is_range_of_ranges<ParamGroups, TensorRef<Scalar>>::value &&
                                     detail::is_range_of_ranges<GradGroups, TensorRef<Scalar>>::value>>
  const std::vector<StepReport>& step(const ParamGroups& params, const GradGroups& grads,
                                      const ClipGradNorm& clip) {
    return clipped_step_impl(params, grads, clip);
  }
  /// The total gradient norm, before clipping, of the last successful
  /// step(params, grads, ClipGradNorm); NaN before the first.
  double last_grad_norm() const { return last_grad_norm_; }

  /// The reports of the last step() (one per group).
  const std::vector<StepReport>& last_reports() const { return reports_; }

  // ---- the evaluation point (a rule that declares one) ---------------------

  /// Whether the parameters hold the evaluation point (between eval() and
  /// train()); always false for a rule without one.
  bool in_eval_mode() const { return eval_mode_; }

  /// For a rule whose parameters hold a training point other than the point
  /// to evaluate (Schedule-Free AdamW: y while training, x to evaluate, a
  /// rule that declares kEvaluationSlot and evaluation_weight): moves every
  /// parameter of every group that has stepped to x = y + w·(z − y), z the
  /// rule's evaluation slot and w its evaluation_weight(options), keeping a
  /// copy of y for train(). Call it before evaluating or exporting the
  /// model; step() refuses to run until train(). Does nothing if already in
  /// eval mode. Throws std::invalid_argument for parameters whose count or
  /// shapes differ from the groups' (and std::bad_alloc), changing nothing.
  template <class ParamGroups, class R = Rule, class = decltype(R::kEvaluationSlot),
            class = std::enable_if_t<detail::is_range_of_ranges<ParamGroups, Tensor>::value>>
  ADAMX_OUT_OF_LINE void eval(const ParamGroups& params) {
    detail::check_step_arguments<Tensor, ConstTensor>(Flavour::name, groups_, params, params);
    if (eval_mode_) return;
    std::vector<std::vector<Scalar>> stash(groups_.size());  // allocated before anything changes
    auto param_group = std::begin(params);
    for (std::size_t gi = 0; gi < groups_.size(); ++gi, ++param_group) {
      stash[gi].reserve(static_cast<std::size_t>(work_[gi].elements));
      for (const auto& view : *param_group) {
        const Tensor p = view;
        stash[gi].insert(stash[gi].end(), p.data(), p.data() + p.size());
      }
    }
    param_group = std::begin(params);
    for (std::size_t gi = 0; gi < groups_.size(); ++gi, ++param_group) {
      const Group& g = groups_[gi];
      if (g.t == 0) continue;  // z is set at a tensor's first step: x = y until then
      using S = state_scalar_type;
      const double w = Rule::evaluation_weight(g.options);
      const S weight = static_cast<S>(w), one_minus_weight = static_cast<S>(1.0 - w);
      const bool near_end_z = w >= 0.5;
      std::size_t j = 0;
      for (const auto& view : *param_group) {
        const Tensor p = view;
        const S* z = g.slots.data(Rule::kEvaluationSlot, j);
        Scalar* theta = p.data();
        for (Index i = 0; i < p.size(); ++i) {
          const S y = static_cast<S>(theta[i]);
          const S towards_z = z[i] - y;
          theta[i] = static_cast<Scalar>(near_end_z ? z[i] - one_minus_weight * towards_z : y + weight * towards_z);
        }
        ++j;
      }
    }
    eval_stash_ = std::move(stash);
    eval_mode_ = true;
  }

  /// Puts back, bit for bit, the training point eval() kept (a rule with an
  /// evaluation point). Does nothing if not in eval mode. Throws
  /// std::invalid_argument for parameters whose count or shapes differ from
  /// the groups', changing nothing.
  template <class ParamGroups, class R = Rule, class = decltype(R::kEvaluationSlot),
            class = std::enable_if_t<detail::is_range_of_ranges<ParamGroups, Tensor>::value>>
  ADAMX_OUT_OF_LINE void train(const ParamGroups& params) {
    detail::check_step_arguments<Tensor, ConstTensor>(Flavour::name, groups_, params, params);
    if (!eval_mode_) return;
    auto param_group = std::begin(params);
    for (std::size_t gi = 0; gi < groups_.size(); ++gi, ++param_group) {
      const Scalar* kept = eval_stash_[gi].data();
      for (const auto& view : *param_group) {
        const Tensor p = view;
        std::copy(kept, kept + p.size(), p.data());
        kept += p.size();
      }
    }
    eval_stash_.clear();
    eval_stash_.shrink_to_fit();
    eval_mode_ = false;
  }

  // ---- threads ------------------------------------------------------------

  /// Number of threads a step may use (default 1). Results are bitwise the
  /// same for any value: work is split on the fixed blocks s is summed over.
  /// More than 1 needs OpenMP (define ADAMX_OPENMP and compile with -fopenmp,
  /// or configure adamx with -DADAMX_OPENMP=ON); otherwise it throws
  /// std::invalid_argument.
  void set_threads(int threads) {
    detail::check_threads(prefix("set_threads"), threads);
    threads_ = threads;
  }
  int threads() const { return threads_; }

  // ---- options ------------------------------------------------------------

  const Options& options(std::size_t group) const { return at(group).options; }

  /// Replaces a group's options after validating them (std::invalid_argument
  /// naming the field, nothing changed). Turning amsgrad on starts v_max at
  /// zero, as a fresh AMSGrad run would; turning it off drops v_max.
  void set_options(std::size_t group, const Options& options) {
    Group& g = at(group);
    validate(options, g.name);
    check_tensors(options, g.name, g.tensors, "set_options");
    // Allocate every new slot buffer first, then swap: an allocation failure
    // leaves the group as it was.
    const std::array<bool, Rule::kSlots> next = slots_in_use(options);
    detail::AlignedArray<state_scalar_type> fresh[Rule::kSlots];
    for (int k = 0; k < Rule::kSlots; ++k)
      if (next[k] != g.slots.in_use(k)) fresh[k] = g.slots.fresh_slot(next[k]);
    const std::size_t scratch_size = matrix_scratch_size(options, g.tensors);
    std::vector<state_scalar_type> scratch;
    if (scratch_size != g.matrix_scratch.size()) scratch.resize(scratch_size);
    for (int k = 0; k < Rule::kSlots; ++k)
      if (next[k] != g.slots.in_use(k)) g.slots.replace_slot(k, next[k], fresh[k]);
    if (scratch_size != g.matrix_scratch.size()) g.matrix_scratch.swap(scratch);
    g.options = options;
  }

  /// Sets one option of a group, validated like set_options: `field` is a
  /// member of this optimizer's options (`&Options::lr`,
  /// `&AdaBoundOptions::final_lr`); another optimizer's option is a compile
  /// error.
  template <class T, class Owner>
  void set(std::size_t group, T Owner::*field, detail::option_value_t<T> value) {
    static_assert(std::is_base_of<Owner, Options>::value,
                  "adamx: this option is not one of this optimizer's (see its Options)");
    modify(group, [&](Options& o) { o.*field = value; });
  }

  // Typed setters, one per option; each validates like set_options. The
  // setters of options not every optimizer has (the Adam family's β3, β_n,
  // ε, decay mode and AMSGrad, which Lion lacks; AdaBound's, AdaMod's own)
  // exist only on the optimizers whose options have that field.
  void set_lr(std::size_t group, double lr) { set(group, &Options::lr, lr); }
  void set_betas(std::size_t group, double beta1, double beta2) {
    modify(group, [&](Options& o) { o.set_betas(beta1, beta2); });
  }
  template <class O = Options, class = decltype(&O::beta3)>
  void set_beta3(std::size_t group, double beta3) {
    set(group, &O::beta3, beta3);
  }
  template <class O = Options, class = decltype(&O::beta_norm)>
  void set_beta_norm(std::size_t group, double beta_norm) {
    set(group, &O::beta_norm, beta_norm);
  }
  template <class O = Options, class = decltype(&O::eps)>
  void set_eps(std::size_t group, double eps) {
    set(group, &O::eps, eps);
  }
  void set_weight_decay(std::size_t group, double weight_decay) {
    set(group, &Options::weight_decay, weight_decay);
  }
  template <class O = Options, class = decltype(&O::decay_mode)>
  void set_decay_mode(std::size_t group, WeightDecayMode mode) {
    set(group, &O::decay_mode, mode);
  }
  template <class O = Options, class = decltype(&O::amsgrad)>
  void set_amsgrad(std::size_t group, bool amsgrad) {
    set(group, &O::amsgrad, amsgrad);
  }
  void set_maximize(std::size_t group, bool maximize) { set(group, &Options::maximize, maximize); }
  void set_nonfinite(std::size_t group, NonFinitePolicy policy) { set(group, &Options::nonfinite, policy); }
  template <class O = Options, class = decltype(&O::final_lr)>
  void set_final_lr(std::size_t group, double final_lr) {
    set(group, &O::final_lr, final_lr);
  }
  template <class O = Options, class = decltype(&O::bound_speed)>
  void set_bound_speed(std::size_t group, double bound_speed) {
    set(group, &O::bound_speed, bound_speed);
  }
  template <class O = Options, class = decltype(&O::beta_step)>
  void set_beta_step(std::size_t group, double beta_step) {
    set(group, &O::beta_step, beta_step);
  }
  /// Sets lr on every group (a schedule driving the whole model). Validated
  /// before any group changes.
  void set_lr(double lr) {
    if (groups_.empty()) {  // nothing to change, but a bad lr is still an error
      Options checked;
      checked.lr = lr;
      validate(checked);
    }
    for (const Group& g : groups_) {
      Options o = g.options;
      o.lr = lr;
      validate(o, g.name);
    }
    for (Group& g : groups_) g.options.lr = lr;
  }

  // ---- state --------------------------------------------------------------

  /// The full state of every group, as plain data: a copy, built from the
  /// optimizer's flat storage (docs/design.md, "State layout and
  /// allocation"), as large as the state itself. To read a few scalars, use
  /// step_count(), gamma(), h(), layout() or options(); to read arrays in
  /// place (e.g. to save them), state_view().
  ADAMX_OUT_OF_LINE std::vector<State> state() const {
    std::vector<State> out;
    out.reserve(groups_.size());
    for (std::size_t g = 0; g < groups_.size(); ++g) out.push_back(state(g));
    return out;
  }
  /// Group `group`'s state, as plain data (a copy, as state()).
  ADAMX_OUT_OF_LINE State state(std::size_t group) const {
    State out = state_without_arrays(group);
    for (std::size_t j = 0; j < out.tensors.size(); ++j) out.tensors[j] = tensor_state(group, j);
    return out;
  }
  /// Tensor `tensor` of group `group`'s state alone (a copy of its arrays).
  tensor_state_type tensor_state(std::size_t group, std::size_t tensor) const {
    const tensor_state_view_type view = state_view(group, tensor);
    tensor_state_type ts;
    static_cast<TensorShape&>(ts) = view.shape;
    for (int k = 0; k < Rule::kSlots; ++k) ts.slot(k) = view.slot(k);
    return ts;
  }
  /// Tensor `tensor` of group `group`'s state read in place, without a
  /// copy (what save_checkpoint writes from): valid until the storage
  /// changes (TensorStateView, state.hpp). Throws std::out_of_range for a
  /// bad index.
  tensor_state_view_type state_view(std::size_t group, std::size_t tensor) const {
    const Group& g = at(group);
    if (tensor >= g.tensors.size())
      throw std::out_of_range(prefix("state_view") + "tensor index " + std::to_string(tensor) +
                              " is out of range (group '" + g.name + "' has " +
                              std::to_string(g.tensors.size()) + " tensors)");
    using Map = typename tensor_state_view_type::Map;
    const Index n = g.tensors[tensor].size();
    return tensor_state_view_type::of(g.tensors[tensor], [&](int k) {
      return g.slots.in_use(k) ? Map(g.slots.data(k, tensor), n) : Map(nullptr, 0);
    });
  }
  /// Group `group`'s name, options, t, γ, h and its tensors' names and
  /// shapes, every array left empty: what a checkpoint's header holds, at
  /// the cost of copying the names.
  State state_without_arrays(std::size_t group) const {
    const Group& g = at(group);
    State out;
    copy_scalars(g, out);
    out.tensors.resize(g.tensors.size());
    for (std::size_t j = 0; j < g.tensors.size(); ++j)
      static_cast<TensorShape&>(out.tensors[j]) = g.tensors[j];
    return out;
  }

  /// Cheap reads of one group, without copying its state: the name and
  /// tensor shapes, the steps taken (t), AdamX's γ and h.
  const GroupLayout& layout(std::size_t group) const { return at(group); }
  std::int64_t step_count(std::size_t group) const { return at(group).t; }
  /// γ for the Adam family; 1 for a rule that has no γ.
  double gamma(std::size_t group) const { return gamma_of(scalars_of(at(group))); }
  /// h, only for a rule that carries it (the Adam family's; not Lion).
  template <class S = Scalars, class = decltype(&S::h)>
  double h(std::size_t group) const {
    return at(group).h;
  }

  /// The ways `states` differs in structure from this optimizer's groups:
  /// group count, order and names, tensor count, order, names and shapes.
  /// Empty when restore() would accept the structure. State is matched by
  /// name and shape, never by position alone, so a reordered or renamed
  /// model is refused instead of silently receiving another tensor's moments.
  std::vector<std::string> structure_differences(const std::vector<State>& states) const {
    return detail::structure_differences(states, groups_);
  }

  /// Replaces the whole state (every group's options, t, γ, h, m, v, v_max),
  /// e.g. from the user's own serialization; load_checkpoint() ends here too.
  /// Everything is checked before anything changes (std::invalid_argument,
  /// the optimizer as it was): the structure (structure_differences(), every
  /// difference listed), the options (as set_options()), t ≥ 0, the rule's
  /// group scalars (each finite and in its range, plus the rule's own check:
  /// the Adam family's γ is exactly 1 unless β3 moves it), and the array sizes
  /// (each slot the options keep has its tensor's size, every other is empty).
  /// `states` is only read: the state is copied once, into the optimizer's
  /// own storage.
  ADAMX_OUT_OF_LINE void restore(const std::vector<State>& states) {
    refuse_in_eval_mode("restore");
    const std::vector<std::string> differences = structure_differences(states);
    if (!differences.empty()) {
      std::string message = prefix("restore") + "the state does not match the optimizer's groups:";
      for (const std::string& difference : differences) message += "\n  - " + difference;
      throw std::invalid_argument(message);
    }
    for (const State& g : states) check_values(g);
    // Everything is allocated and copied before any group changes.
    std::vector<Group> fresh;
    fresh.reserve(states.size());
    for (const State& g : states) fresh.push_back(make_group(g));
    for (std::size_t gi = 0; gi < groups_.size(); ++gi) groups_[gi] = std::move(fresh[gi]);
  }

  /// Throws std::invalid_argument unless the scalars of group state `g` could
  /// have come from stepping (options valid, t ≥ 0, γ and h finite and ≥ 0,
  /// γ = 1 for all but AdamX) and its arrays have its tensors' sizes.
  void check_values(const State& g) const {
    check_scalars(g);
    {
      std::vector<TensorShape> shapes;
      for (const tensor_state_type& ts : g.tensors) shapes.push_back(ts.shape());
      check_tensors(g.options, g.name, shapes, "restore");
    }
    const auto fail = [&](const std::string& what) {
      throw std::invalid_argument(prefix("restore") + "group '" + g.name + "': " + what);
    };
    using Tensor = tensor_state_type;
    for (const Tensor& ts : g.tensors) {
      // The rule's slots, all of them named when one is off ("has m, v, v_max
      // of sizes 3, 20, 0 (expected 20, 20, 0)"): a size 0 where the options
      // keep no such slot is part of what the message must show.
      bool sizes_match = true;
      std::string names, sizes, expected_sizes;
      for (int k = 0; k < Rule::kSlots; ++k) {
        const Index expected = keeps_slot(g.options, k) ? ts.size() : 0;
        sizes_match = sizes_match && ts.slot(k).size() == expected;
        const std::string separator = k == 0 ? "" : ", ";
        names += separator + Tensor::slot_names[k];
        sizes += separator + std::to_string(ts.slot(k).size());
        expected_sizes += separator + std::to_string(expected);
      }
      if (!sizes_match)
        fail("tensor '" + ts.name + "' of shape " + ts.describe() + " has " + names +
             (Rule::kSlots == 1 ? " of size " : " of sizes ") + sizes + " (expected " + expected_sizes + ")");
    }
  }

  /// Whether a group with `options` keeps state slot k (the rule's
  /// numbering, as TensorState::slot): whether its update rule has the slot and uses
  /// it with these options (rules/, uses_slot). A slot not kept has size 0
  /// in state(), checkpoints and shards.
  static bool keeps_slot(const Options& options, int k) {
    return k >= 0 && k < Rule::kSlots && slots_in_use(options)[static_cast<std::size_t>(k)];
  }

  /// The part of check_values() that needs no arrays: throws
  /// std::invalid_argument unless group `g`'s options are valid, t ≥ 0, γ and
  /// h finite and ≥ 0 (γ = 1 for all but AdamX). Static, because checkpoint
  /// conversions (sharded_checkpoint.hpp) check headers they never load.
  static void check_scalars(const State& g) {
    validate(g.options, g.name);
    const auto fail = [&](const std::string& what) {
      throw std::invalid_argument(prefix("restore") + "group '" + g.name + "': " + what);
    };
    if (g.t < 0) fail("invalid t = " + std::to_string(g.t) + " (must be >= 0)");
    // The rule's group scalars (γ and h: finite and >= 0), then what the
    // rule refuses beyond them (γ != 1 where the flavour fixes it).
    for_each_group_scalar<Scalars>([&](const auto& field) {
      const double value = scalars_of(g).*field.member;
      if (field.check.holds != nullptr && !field.check.holds(value))
        fail(std::string("invalid ") + field.name + " = " + detail::format_value(value) + " (" + field.check.rule + ")");
    });
    const std::string problem = group_scalars_problem<Flavour>(scalars_of(g));
    if (!problem.empty()) fail(problem);
  }

  /// The checks step() makes of its arguments' counts, shapes and
  /// contiguity, against the names and shapes of `groups` (their arrays are
  /// not read), throwing std::invalid_argument with step()'s messages. The
  /// sharded driver (adamx/mpi.hpp) checks its full tensors with it, so that
  /// a mistake reads the same with one process or many.
  /// `groups` may be any groups with .name and .tensors of TensorShapes
  /// (layout.hpp), e.g. GroupLayouts.
  template <class Groups, class ParamGroups, class GradGroups>
  static void check_step_arguments(const Groups& groups, const ParamGroups& params, const GradGroups& grads) {
    detail::check_step_arguments<Tensor, ConstTensor>(Flavour::name, groups, params, grads);
  }

 private:
  static std::string prefix(const char* function) { return detail::message_prefix(Flavour::name, function); }

  // Between eval() and train() the parameters hold the evaluation point,
  // not the point the state continues from: stepping or replacing the state
  // then is a mistake, refused before anything changes.
  void refuse_in_eval_mode(const char* function) const {
    if (eval_mode_)
      throw std::logic_error(prefix(function) +
                             "the parameters hold the evaluation point (eval()); call train(params) first");
  }

  const Group& at(std::size_t group) const {
    if (group >= groups_.size())
      throw std::out_of_range(prefix("group") + "group index " + std::to_string(group) +
                              " is out of range (the optimizer has " +
                              std::to_string(groups_.size()) + " groups)");
    return groups_[group];
  }
  Group& at(std::size_t group) { return const_cast<Group&>(std::as_const(*this).at(group)); }

  template <class Change>
  void modify(std::size_t group, Change change) {
    Options o = at(group).options;
    change(o);
    set_options(group, o);
  }

  static std::string qualified(const Group& g, std::size_t tensor) {
    return g.name + "." + g.tensors[tensor].name;
  }

  template <class Tensors>
  ADAMX_OUT_OF_LINE std::size_t add_group_impl(const Tensors& tensors, const Options& options, std::string group_name,
                             std::vector<std::string> tensor_names) {
    const std::size_t index = groups_.size();
    std::string name = detail::new_group_name(Flavour::name, std::move(group_name), groups_);
    validate(options, name);
    std::vector<TensorShape> shapes;
    for (const auto& tensor : tensors) shapes.push_back(ConstTensor(tensor).layout().shape());
    Group g;
    static_cast<GroupLayout&>(g) =
        detail::new_group_layout(Flavour::name, std::move(name), std::move(shapes), std::move(tensor_names));
    g.options = options;
    check_tensors(options, g.name, g.tensors, "add_group");
    g.slots = detail::FlatState<state_scalar_type, Rule::kSlots>(g.sizes(), slots_in_use(options));
    g.matrix_scratch.resize(matrix_scratch_size(options, g.tensors));
    // Everything step() needs is allocated here, before the group is
    // published, so a failure leaves the optimizer as it was and step()
    // never allocates.
    Work work;
    for (std::size_t t = 0; t < g.tensors.size(); ++t) {
      const Index n = g.tensors[t].size();
      for (Index start = 0; start < n; start += detail::kNormBlock)
        work.blocks.push_back({t, start, std::min(detail::kNormBlock, n - start)});
      work.elements += n;
    }
    work.partials.assign(work.blocks.size(), 0.0);
    work.params.assign(g.tensors.size(), nullptr);
    work.grads.assign(g.tensors.size(), nullptr);
    Selection selection;
    selection.coefficients.resize(g.tensors.size());
    selection.next.resize(g.tensors.size());
    selection.blocks.resize(work.blocks.size());
    std::size_t all_tensors = g.tensors.size();
    for (const Group& other : groups_) all_tensors += other.tensors.size();
    overlap_.reserve(all_tensors);
    reports_.reserve(index + 1);
    work_.reserve(index + 1);
    selections_.reserve(index + 1);
    shard_partials_.reserve(index + 1);
    reduced_norms_.reserve(index + 1);
    groups_.push_back(std::move(g));
    work_.push_back(std::move(work));
    selections_.push_back(std::move(selection));
    reports_.emplace_back();
    shard_partials_.emplace_back();
    reduced_norms_.push_back(0.0);
    return index;
  }

  // Throws unless every group got as many tensors as it has, each of its
  // shape and contiguous. Runs before anything changes.
  template <class ParamGroups, class GradGroups>
  void check_structure(const ParamGroups& params, const GradGroups& grads) const {
    check_step_arguments(groups_, params, grads);
  }

  // Throws unless the tensors follow the memory rule (overlap.hpp): no two
  // parameters share memory, a gradient shares only its own parameter's,
  // exactly. Runs after check_structure, before anything changes.
  // With a subset, params and grads list its tensors only.
  template <class ParamGroups, class GradGroups>
  void check_memory(const ParamGroups& params, const GradGroups& grads, const StepSubset* subset = nullptr) {
    overlap_.collect<Scalar>(params, grads, groups_.size(), [&](std::size_t g) {
      return subset != nullptr ? subset->groups[g].tensors.size() : groups_[g].tensors.size();
    });
    const detail::MemoryConflict conflict = overlap_.find();
    if (!conflict) return;
    throw std::invalid_argument(prefix("step") + detail::conflict_message(conflict, [&](const detail::TensorSpan& span) {
                                  return qualified(groups_[span.group], subset != nullptr
                                                                            ? subset->groups[span.group].tensors[span.tensor]
                                                                            : span.tensor);
                                }));
  }

  template <class ParamGroups, class GradGroups>
  const std::vector<StepReport>& step_impl(const ParamGroups& params, const GradGroups& grads) {
    detail::NoNormReducer none;
    return step_impl(params, grads, none);
  }

  // The step's own checks first, so that bad input throws before the
  // gradients are scaled; clip_grad_norm_impl then throws before scaling.
  template <class ParamGroups, class GradGroups>
  ADAMX_OUT_OF_LINE const std::vector<StepReport>& clipped_step_impl(const ParamGroups& params, const GradGroups& grads,
                                                   const ClipGradNorm& clip) {
    refuse_in_eval_mode("step");
    detail::check_clip_arguments(clip.max_norm, clip.norm_type);
    check_structure(params, grads);
    check_memory(params, grads);
    const double norm = detail::clip_grad_norm_impl(grads, clip.max_norm, clip.norm_type, clip.error_if_nonfinite);
    const std::vector<StepReport>& reports = step_impl(params, grads);
    last_grad_norm_ = norm;
    return reports;
  }

  // With a reducer, s is combined across shards after the passes of every
  // group (one call for all groups), instead of summed group by group. With
  // a subset (never together with a reducer), only its tensors step, each
  // with its own coefficients; without one, every tensor steps with its
  // group's (select()).
  template <class ParamGroups, class GradGroups, class Reducer>
  ADAMX_OUT_OF_LINE const std::vector<StepReport>& step_impl(const ParamGroups& params, const GradGroups& grads,
                                           Reducer& reducer, const StepSubset* subset = nullptr) {
    constexpr bool sharded = !std::is_same<Reducer, detail::NoNormReducer>::value;
    refuse_in_eval_mode("step");
    // The instruction set of the passes (isa.hpp) is chosen on first use,
    // and ADAMX_INSTRUCTION_SET can be wrong: ask before changing anything.
    (void)instruction_set();
    if (subset != nullptr)
      detail::check_subset_step_arguments<Tensor, ConstTensor>(Flavour::name, groups_, *subset, params, grads);
    else
      check_structure(params, grads);
    check_memory(params, grads, subset);
    select(subset);

    // The skip and error policies read the gradients once before changing
    // anything; every error group is checked before any group is updated.
    {
      auto param_group = std::begin(params);
      auto grad_group = std::begin(grads);
      for (std::size_t gi = 0; gi < groups_.size(); ++gi, ++param_group, ++grad_group) {
        const Group& g = groups_[gi];
        if (g.options.nonfinite == NonFinitePolicy::propagate || selections_[gi].idle()) continue;
        Work& work = gather(gi, *param_group, *grad_group, subset != nullptr ? &subset->groups[gi] : nullptr);
        // Usually every gradient is small enough that s is certainly finite
        // (kernel.hpp, kSafeGradient): one comparison per element, and the
        // update pass then computes s. Only otherwise is s computed here.
        std::atomic<bool> safe{true};  // an AND: the same for any thread count
        for_each_stepped_block(gi, [&](Index, const Block& block, const Coefficients& c, std::size_t next) {
          if (!detail::gradient_within_safe_bound_block<Rule>(
                  c, gradient_arrays(g, work, block.tensor, block.start, true), block.length,
                  gradient_arrays(g, work, next, 0, c.gradient_reads_param())))
            safe.store(false, std::memory_order_relaxed);
        });
        if (safe.load()) {
          work.checked_norm = 0.0;  // finite; the update pass computes s itself
          // Sharded, another shard may still be non-finite: this one adds
          // zeros, which leave the combined sum finite or not as it was.
          if (sharded) std::fill(work.partials.begin(), work.partials.end(), 0.0);
          continue;
        }
        for_each_stepped_block(gi, [&](Index k, const Block& block, const Coefficients& c, std::size_t next) {
          work.partials[static_cast<std::size_t>(k)] = detail::squared_norm_block<Rule>(
              // θ is always passed (the rule reads it when its gradient
              // depends on it); only the next tensor's prefetch depends on that.
              c, gradient_arrays(g, work, block.tensor, block.start, true), block.length,
              gradient_arrays(g, work, next, 0, c.gradient_reads_param()));
        });
        if (!sharded) decide_nonfinite(gi, ordered_block_sum(work.partials.data(), stepped_block_count(gi)));
      }
      // Sharded, the decision waits for s over every shard, so that all
      // shards skip (or throw) together.
      if constexpr (sharded) {
        if (any_checked()) {
          reduce_norms(reducer);
          for (std::size_t gi = 0; gi < groups_.size(); ++gi)
            if (groups_[gi].options.nonfinite != NonFinitePolicy::propagate)
              decide_nonfinite(gi, reduced_norms_[gi]);
        }
      }
    }

    auto param_group = std::begin(params);
    auto grad_group = std::begin(grads);
    for (std::size_t gi = 0; gi < groups_.size(); ++gi, ++param_group, ++grad_group) {
      Group& g = groups_[gi];
      StepReport& report = reports_[gi];
      if (selections_[gi].idle()) {  // no tensor of the group steps: t stays
        report.step = g.t;
        report.grad_norm_sq = 0.0;
        report.gamma = gamma_of(scalars_of(g));
        report.finite = true;
        report.applied = false;
        continue;
      }
      if (g.options.nonfinite != NonFinitePolicy::propagate && !std::isfinite(work_[gi].checked_norm)) {
        report.step = g.t;
        report.grad_norm_sq = work_[gi].checked_norm;
        report.gamma = gamma_of(scalars_of(g));
        report.finite = false;
        report.applied = false;
        continue;
      }
      Work& work = gather(gi, *param_group, *grad_group, subset != nullptr ? &subset->groups[gi] : nullptr);
      if (steps_matrices(g.options)) {
        step_matrices(gi);
      } else {
        for_each_stepped_block(gi, [&](Index k, const Block& block, const Coefficients& c, std::size_t next) {
          work.partials[static_cast<std::size_t>(k)] = detail::fused_block<Rule>(
              c, all_arrays(g, work, block.tensor, block.start, c), block.length, all_arrays(g, work, next, 0, c));
        });
      }
      report.applied = true;
    }
    // γ_t is first used at step t+1 (docs/design.md D1), so s can be combined after
    // the element passes: no second pass over memory.
    if constexpr (sharded) reduce_norms(reducer);
    for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
      Group& g = groups_[gi];
      StepReport& report = reports_[gi];
      if (!report.applied) continue;
      const Work& work = work_[gi];
      // Blocks in order, tensor after tensor (the stepped ones): the sum does
      // not depend on how the blocks were shared out (over threads, or over shards).
      const double s = sharded ? reduced_norms_[gi] : ordered_block_sum(work.partials.data(), stepped_block_count(gi));
      const std::int64_t t = g.t + 1;
      g.t = t;
      // Every step taken advances the group's scalars; the rule decides
      // what a non-finite s means for them (AdamX's γ and h keep their
      // values, D5: one bad gradient must not poison every later step;
      // Schedule-Free's averaging weights follow every step regardless).
      report.finite = std::isfinite(s);
      advance_group_scalars<Rule>(scalars_of(g), s, t, g.options);
      report.step = t;
      report.grad_norm_sq = s;
      report.gamma = gamma_of(scalars_of(g));
    }
    return reports_;
  }

  // Decides, per group, which blocks this step runs and with which
  // coefficients (selections_, sized in add_group: no allocation here).
  // Without a subset every block, with one Coefficients for the whole group
  // at its t + 1; with one, the listed tensors' blocks in order, each tensor
  // with its own count + 1 (computed once per run of equal counts). Runs
  // after every check, and reads only options, t and γ.
  void select(const StepSubset* subset) {
    for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
      const Group& g = groups_[gi];
      const Work& work = work_[gi];
      Selection& chosen = selections_[gi];
      chosen.whole = subset == nullptr;
      if (chosen.whole) {
        chosen.group_coefficients = Coefficients::make(g.options, g.t + 1, scalars_of(g));
        chosen.tensors = g.tensors.size();
        chosen.block_count = work.blocks.size();
        chosen.elements = work.elements;
        continue;
      }
      const GroupSubset& listed = subset->groups[gi];
      chosen.tensors = listed.tensors.size();
      chosen.block_count = 0;
      chosen.elements = 0;
      std::size_t block = 0;
      for (std::size_t k = 0; k < listed.tensors.size(); ++k) {
        const std::size_t j = listed.tensors[k];
        const std::int64_t steps = listed.steps_taken[k];
        if (k > 0 && steps == listed.steps_taken[k - 1])
          chosen.coefficients[j] = chosen.coefficients[listed.tensors[k - 1]];
        else
          chosen.coefficients[j] = Coefficients::make(g.options, steps + 1, scalars_of(g));
        chosen.next[j] = k + 1 < listed.tensors.size() ? listed.tensors[k + 1] : g.tensors.size();
        chosen.elements += g.tensors[j].size();
        // Blocks are stored tensor after tensor: skip to tensor j's.
        while (block < work.blocks.size() && work.blocks[block].tensor < j) ++block;
        for (; block < work.blocks.size() && work.blocks[block].tensor == j; ++block)
          chosen.blocks[chosen.block_count++] = block;
      }
    }
  }

  // Whether a group with `options` is stepped one matrix at a time
  // (detail::steps_matrices): never for an element-wise rule.
  static bool steps_matrices(const Options& options) {
    if constexpr (detail::steps_matrices<Rule>::value)
      return Coefficients::make(options, 1, Scalars{}).steps_matrices();
    else
      return false;
  }

  // The workspace a group with `options` and these tensors needs to step
  // its matrices (the largest any one tensor needs; none for a group of
  // the element passes).
  static std::size_t matrix_scratch_size(const Options& options, const std::vector<TensorShape>& tensors) {
    Index largest = 0;
    if constexpr (detail::steps_matrices<Rule>::value)
      if (steps_matrices(options))
        for (const TensorShape& shape : tensors) largest = std::max(largest, Rule::matrix_scratch_size(shape));
    return static_cast<std::size_t>(largest);
  }

  // Throws std::invalid_argument naming the first tensor the rule refuses
  // in a group with `options` (Muon's groups take matrices).
  static void check_tensors(const Options& options, const std::string& group, const std::vector<TensorShape>& tensors,
                            const char* function) {
    for (const TensorShape& shape : tensors) {
      const std::string problem = detail::rule_tensor_problem<Rule>(options, shape, 0);
      if (!problem.empty())
        throw std::invalid_argument(prefix(function) + "group '" + group + "': tensor '" + shape.name + "' " + problem);
    }
  }

  // One step of group gi's stepped tensors, one whole matrix at a time, in
  // order (the rule's matrix_update; its products run on up to threads()
  // threads, split by Eigen). A tensor's squared gradient norm lands in the partial of its
  // first block and its other blocks' partials are 0, so s sums as for the
  // element passes.
  void step_matrices(std::size_t gi) {
    if constexpr (detail::steps_matrices<Rule>::value) {
      Group& g = groups_[gi];
      Work& work = work_[gi];
      const Selection& chosen = selections_[gi];
      const detail::EigenProductThreads product_threads(threads_);
      for (std::size_t k = 0; k < stepped_block_count(gi); ++k) {
        const Block& block = stepped_block(gi, k);
        if (block.start != 0) {
          work.partials[k] = 0.0;
          continue;
        }
        const std::size_t j = block.tensor;
        const Coefficients& c = chosen.whole ? chosen.group_coefficients : chosen.coefficients[j];
        state_scalar_type* slots[Rule::kSlots];
        for (int s = 0; s < Rule::kSlots; ++s) slots[s] = c.uses_slot(s) ? g.slots.data(s, j) : nullptr;
        work.partials[k] =
            Rule::matrix_update(c, work.params[j], work.grads[j], slots, g.tensors[j], g.matrix_scratch.data());
      }
    } else {
      static_cast<void>(gi);
    }
  }

  bool any_checked() const {
    for (const Group& g : groups_)
      if (g.options.nonfinite != NonFinitePolicy::propagate) return true;
    return false;
  }

  // Hands every group's block partials to the reducer; s per group lands in
  // reduced_norms_ (both sized in add_group: no allocation here).
  template <class Reducer>
  void reduce_norms(Reducer& reducer) {
    for (std::size_t gi = 0; gi < groups_.size(); ++gi)
      shard_partials_[gi] = BlockPartials{work_[gi].partials.data(), work_[gi].partials.size()};
    reducer(static_cast<const std::vector<BlockPartials>&>(shard_partials_), reduced_norms_);
  }

  // Records the checking pass's s of group gi and, if it is not finite and
  // the policy is error, throws naming the first tensor (of this process's
  // part of the group) where the running sum stops being finite.
  void decide_nonfinite(std::size_t gi, double s) {
    const Group& g = groups_[gi];
    Work& work = work_[gi];
    work.checked_norm = s;
    if (std::isfinite(s) || g.options.nonfinite != NonFinitePolicy::error) return;
    std::size_t first_bad = g.tensors.size();
    double running = 0.0;
    for (std::size_t k = 0; k < stepped_block_count(gi) && first_bad == g.tensors.size(); ++k) {
      running += work.partials[k];
      if (!std::isfinite(running)) first_bad = stepped_block(gi, k).tensor;
    }
    std::ostringstream message;
    message << prefix("step") << "group '" << g.name << "': the gradient is not finite (squared norm "
            << s << ", first non-finite at tensor '"
            << (first_bad == g.tensors.size() ? std::string("(in another shard)")
                                              : qualified(g, first_bad))
            << "'); nothing was changed";
    throw NonFiniteGradientError(message.str(), gi,
                                 first_bad == g.tensors.size() ? NonFiniteGradientError::kUnknownTensor
                                                               : first_bad);
  }

  // One s-block of one tensor: the unit of work and of summation.
  struct Block {
    std::size_t tensor;
    Index start;
    Index length;
  };
  // Per-group scratch, derived from the shapes and allocated in add_group.
  struct Work {
    std::vector<Block> blocks;
    std::vector<double> partials;        // one per block, filled by each pass
    std::vector<Scalar*> params;         // this step's tensors, per tensor
    std::vector<const Scalar*> grads;
    Index elements = 0;
    double checked_norm = 0.0;           // s from the checking pass (skip/error) if it
                                         // computed it, else 0 (s certainly finite)
  };

  // Records this step's data pointers of group gi (shapes were checked):
  // of every tensor, or of the tensors `listed` when a subset is stepped.
  template <class ParamList, class GradList>
  Work& gather(std::size_t gi, const ParamList& params, const GradList& grads, const GroupSubset* listed) {
    Work& work = work_[gi];
    auto param = std::begin(params);
    auto grad = std::begin(grads);
    const std::size_t count = listed != nullptr ? listed->tensors.size() : work.params.size();
    for (std::size_t k = 0; k < count; ++k, ++param, ++grad) {
      const std::size_t j = listed != nullptr ? listed->tensors[k] : k;
      const Tensor p = *param;
      const ConstTensor q = *grad;
      work.params[j] = p.data();
      work.grads[j] = q.data();
    }
    return work;
  }

  using Arrays = detail::TensorArrays<Scalar, state_scalar_type, Rule::kSlots>;

  // Per group, what this step runs (select()): every block with one set of
  // coefficients, or the blocks of the listed tensors with each tensor's own.
  // Sized in add_group, so that a step does not allocate.
  struct Selection {
    bool whole = true;                       // every tensor, at the group's t
    Coefficients group_coefficients{};       // whole: for every tensor
    std::vector<Coefficients> coefficients;  // subset: per tensor (the listed ones)
    std::vector<std::size_t> next;           // subset: per listed tensor, the next listed one
    std::vector<std::size_t> blocks;         // subset: the listed tensors' blocks, in order
    std::size_t block_count = 0;             // blocks stepped
    std::size_t tensors = 0;                 // tensors stepped
    Index elements = 0;                      // elements stepped
    // A subset lists no tensor of the group: it does not step.
    bool idle() const { return tensors == 0 && !whole; }
  };

  // Runs body(k, block, coefficients, next) over the blocks group gi steps
  // this time (select()), k numbering them from 0 (where the block's partial
  // of s goes), `next` the tensor stepped after the block's (prefetched at
  // its end; the group's tensor count after the last).
  template <class Body>
  void for_each_stepped_block(std::size_t gi, const Body& body) const {
    const Work& work = work_[gi];
    const Selection& chosen = selections_[gi];
    const int threads = threads_for(chosen.elements);
    if (chosen.whole) {
      detail::for_each_block(static_cast<Index>(work.blocks.size()), threads, [&](Index b) {
        const Block& block = work.blocks[static_cast<std::size_t>(b)];
        body(b, block, chosen.group_coefficients, block.tensor + 1);
      });
      return;
    }
    detail::for_each_block(static_cast<Index>(chosen.block_count), threads, [&](Index k) {
      const Block& block = work.blocks[chosen.blocks[static_cast<std::size_t>(k)]];
      body(k, block, chosen.coefficients[block.tensor], chosen.next[block.tensor]);
    });
  }

  // The k-th block group gi steps this time, and how many there are.
  const Block& stepped_block(std::size_t gi, std::size_t k) const {
    const Selection& chosen = selections_[gi];
    return work_[gi].blocks[chosen.whole ? k : chosen.blocks[k]];
  }
  std::size_t stepped_block_count(std::size_t gi) const { return selections_[gi].block_count; }

  // The slots a group with `options` keeps: those its rule's update uses
  // (rules/, uses_slot), which depend on the options alone.
  static std::array<bool, Rule::kSlots> slots_in_use(const Options& options) {
    const Coefficients c = Coefficients::make(options, 1, Scalars{});
    std::array<bool, Rule::kSlots> in_use{};
    for (int k = 0; k < Rule::kSlots; ++k) in_use[static_cast<std::size_t>(k)] = c.uses_slot(k);
    return in_use;
  }

  // The scalars part of a Group or a State.
  static Scalars& scalars_of(Scalars& g) { return g; }
  static const Scalars& scalars_of(const Scalars& g) { return g; }

  // The γ that gamma() and the step reports show: the rule's scalar named
  // gamma, or 1 for a rule without one.
  static double gamma_of(const Scalars& scalars) { return group_scalar_or(scalars, "gamma", 1.0); }

  // The name, options, t and scalars (γ, h) of a Group or State into another.
  template <class From, class To>
  static void copy_scalars(const From& from, To& to) {
    to.name = from.name;
    to.options = from.options;
    to.t = from.t;
    scalars_of(to) = scalars_of(from);
  }

  // A group holding `state` (checked by check_values): its flat storage
  // allocated and filled.
  static Group make_group(const State& state) {
    Group g;
    copy_scalars(state, g);
    for (const tensor_state_type& ts : state.tensors) g.tensors.push_back(ts.shape());
    g.slots = detail::FlatState<state_scalar_type, Rule::kSlots>(g.sizes(), slots_in_use(g.options));
    g.matrix_scratch.resize(matrix_scratch_size(g.options, g.tensors));
    for (std::size_t j = 0; j < g.tensors.size(); ++j)
      for (int k = 0; k < Rule::kSlots; ++k)
        if (g.slots.in_use(k))
          std::copy(state.tensors[j].slot(k).data(), state.tensors[j].slot(k).data() + g.tensors[j].size(),
                    g.slots.data(k, j));
    return g;
  }

  // Tensor t's arrays from element `start` on, the slots this step uses
  // bound; size 0 past the last tensor.
  static Arrays all_arrays(Group& g, const Work& work, std::size_t t, Index start, const Coefficients& c) {
    Arrays arrays{};
    if (t >= g.tensors.size()) return arrays;
    arrays.param = work.params[t] + start;
    arrays.grad = work.grads[t] + start;
    for (int k = 0; k < Rule::kSlots; ++k)
      arrays.slot[k] = c.uses_slot(k) ? g.slots.segment(k, t) + start : nullptr;
    arrays.size = g.tensors[t].size() - start;
    return arrays;
  }
  // The same for the checking pass, which reads only g (and θ when the
  // rule's gradient depends on it).
  static Arrays gradient_arrays(const Group& g, const Work& work, std::size_t t, Index start,
                                bool with_params) {
    Arrays arrays{};
    if (t >= g.tensors.size()) return arrays;
    arrays.param = with_params ? work.params[t] + start : nullptr;
    arrays.grad = work.grads[t] + start;
    arrays.size = g.tensors[t].size() - start;
    return arrays;
  }

  int threads_for(Index elements) const {
    return elements >= detail::kMinParallelElements ? threads_ : 1;
  }

  std::vector<Group> groups_;
  std::vector<Work> work_;
  std::vector<Selection> selections_;
  std::vector<StepReport> reports_;
  std::vector<BlockPartials> shard_partials_;  // step(…, reducer): per group, for the reducer
  std::vector<double> reduced_norms_;          // and its answer, s per group
  detail::OverlapCheck overlap_;               // sized in add_group: step() does not allocate
  int threads_ = 1;
  bool eval_mode_ = false;                       // eval(): the parameters hold the evaluation point
  std::vector<std::vector<Scalar>> eval_stash_;  // eval(): each group's training point, for train()
  double last_grad_norm_ = std::numeric_limits<double>::quiet_NaN();  // step(…, ClipGradNorm)
};

ADAMX_NAMESPACE_END  // namespace adamx

// With ADAMX_SEPARATE_KERNELS, the element passes of the listed rules are
// declared compiled elsewhere (separate_kernels.hpp).
#include "adamx/separate_kernels.hpp"
