// adamx as a libtorch optimizer: adamx::torch_optim::Adam, AdamW, AdamX and
// the baselines RAdam, AdaBound and AdaMod, derived from torch::optim::Optimizer, so a libtorch training loop swaps
// torch::optim::Adam for adamx in one line. This header is the optional
// adamx::torch part (built when find_package(Torch) succeeds); nothing else in
// adamx includes it.
//
// How it maps onto adamx:
//  - each libtorch parameter group is one adamx group (one γ), each parameter
//    one tensor of numel() elements, with adamx's default names ("group<i>",
//    "tensor<j>": adamx::default_group_name, adamx::default_tensor_name);
//  - step() hands adamx's fused kernel the parameters' and gradients' own
//    memory (data_ptr), nothing is copied, whichever parameters have
//    gradients;
//  - parameters must be dense, contiguous CPU tensors of one dtype (float,
//    double, bfloat16 or half) with gradients of the same dtype; anything else
//    is refused before anything changes, naming the parameter and the reason;
//  - parameters whose grad is undefined are skipped as libtorch skips them
//    (their m, v stay as they were). Like libtorch, each parameter counts its
//    own steps, and m and v are bias-corrected with that count: a parameter
//    frozen for a while and then trained is corrected as libtorch's Adam
//    corrects it. The group's own count t (steps in which at least one of its
//    parameters had a gradient), γ and h stay per group: s (the squared
//    gradient norm driving γ) sums over the parameters with gradients this
//    step, and h is bias-corrected with the group's t. This is adamx's own
//    step of a subset (step_subset.hpp): each step lists the parameters with
//    gradients and their counts, and adamx updates those in place.
//  - torch::save / torch::load store adamx's own checkpoint (checkpoint.hpp)
//    as one byte tensor, so its CRCs and structure checks apply unchanged,
//    plus the per-parameter step counts; load restores the archive's options.
//  - Muon, which steps whole matrices, sees a parameter of two or more
//    dimensions as the row-major matrix size(0) × (numel / size(0)) (a
//    convolution's filters as its authors flatten them) and any other as a
//    vector, which belongs in a group with muon = false.
//  - Schedule-Free AdamW's parameters hold its training point y: eval()
//    moves them to x, the point to evaluate, and train() puts y back bit
//    for bit; step(), save() and load() refuse in between.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/adamx.hpp"
#include "adamx/checkpoint.hpp"

ADAMX_NAMESPACE_BEGIN
namespace torch_optim {

/// Options in libtorch's style (chainable setters named like the fields):
/// AdamOptions(1e-3).betas({0.9, 0.999}).weight_decay(0.1).amsgrad(true).
/// They hold adamx's own options (options.hpp), so every default and every
/// field is adamx's: libtorch's defaults (AdamW: weight_decay 1e-2) plus
/// AdamX's β3 (0.99 for AdamX, fixed at 1 elsewhere) and β_n = 0.99, and a
/// flavour's own options (final_lr, bound_speed, beta_step) only on the
/// optimizer that has them. The decay mode is the flavour's.
template <class Flavour>
class BasicOptions : public torch::optim::OptimizerCloneableOptions<BasicOptions<Flavour>> {
  using Adamx = adamx::BasicOptions<Flavour>;

 public:
  using flavour_type = Flavour;
  using Betas = std::tuple<double, double>;
  BasicOptions() = default;
  BasicOptions(double lr) { options_.lr = lr; }  // NOLINT(google-explicit-constructor): as libtorch

// A chainable setter and a getter for the adamx option `field`, declared
// only where adamx's options have that field (the template parameter makes
// the field's type a substitution that can fail).
#define ADAMX_TORCH_OPTION(field)                                                     \
  template <class O = Adamx>                                                          \
  BasicOptions& field(const decltype(O::field)& value) {                              \
    options_.field = value;                                                           \
    return *this;                                                                     \
  }                                                                                   \
  template <class O = Adamx>                                                          \
  auto field() const->decltype(O::field) {                                            \
    return options_.field;                                                            \
  }
  ADAMX_TORCH_OPTION(lr)
  ADAMX_TORCH_OPTION(eps)
  ADAMX_TORCH_OPTION(weight_decay)
  ADAMX_TORCH_OPTION(amsgrad)
  ADAMX_TORCH_OPTION(beta3)
  ADAMX_TORCH_OPTION(beta_norm)
  ADAMX_TORCH_OPTION(nonfinite)
  ADAMX_TORCH_OPTION(maximize)
  ADAMX_TORCH_OPTION(final_lr)
  ADAMX_TORCH_OPTION(bound_speed)
  ADAMX_TORCH_OPTION(beta_step)
  ADAMX_TORCH_OPTION(no_prox)
  ADAMX_TORCH_OPTION(warmup_steps)
  ADAMX_TORCH_OPTION(r)
  ADAMX_TORCH_OPTION(weight_lr_power)
  ADAMX_TORCH_OPTION(muon)
  ADAMX_TORCH_OPTION(momentum)
  ADAMX_TORCH_OPTION(nesterov)
  ADAMX_TORCH_OPTION(adjust_lr)
  ADAMX_TORCH_OPTION(ns_steps)
#undef ADAMX_TORCH_OPTION
  /// β1 and β2 together, as libtorch's `betas`.
  BasicOptions& betas(const Betas& value) {
    options_.set_betas(std::get<0>(value), std::get<1>(value));
    return *this;
  }
  Betas betas() const { return std::make_tuple(options_.beta1, options_.beta2); }

  double get_lr() const override { return options_.lr; }
  void set_lr(const double lr) override { options_.lr = lr; }

  /// The same options as adamx's own.
  const Adamx& to_adamx() const { return options_; }
  static BasicOptions from_adamx(const Adamx& o) {
    BasicOptions out;
    out.options_ = o;
    return out;
  }

 private:
  Adamx options_;
};

// NameOptions (AdamOptions, AdamWOptions, …): one per optimizer of the
// library (rules.hpp's list).
#define ADAMX_TORCH_OPTIONS_ALIAS(Name) using Name##Options = BasicOptions<flavour::Name>;
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_TORCH_OPTIONS_ALIAS)
#undef ADAMX_TORCH_OPTIONS_ALIAS

namespace detail {

// adamx's parameter type for a torch dtype (same bit layout: at::BFloat16 and
// Eigen::bfloat16, at::Half and Eigen::half are both IEEE-style 16-bit types).
template <class Scalar>
constexpr torch::Dtype dtype_of() {
  if constexpr (std::is_same<Scalar, float>::value) return torch::kFloat32;
  if constexpr (std::is_same<Scalar, double>::value) return torch::kFloat64;
  if constexpr (std::is_same<Scalar, Eigen::bfloat16>::value) return torch::kBFloat16;
  return torch::kFloat16;
}

inline std::string describe(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes() << " " << t.dtype();
  return out.str();
}

inline std::string parameter_name(std::size_t group, std::size_t index) {
  return "group " + std::to_string(group) + " parameter " + std::to_string(index);
}

}  // namespace detail

/// A libtorch optimizer stepping with adamx. Use the aliases Adam, AdamW, AdamX.
template <class Flavour>
class BasicOptimizer : public torch::optim::Optimizer {

 public:
  using Options = BasicOptions<Flavour>;

  explicit BasicOptimizer(std::vector<torch::optim::OptimizerParamGroup> param_groups,
                          Options defaults = {})
      : Optimizer(std::move(param_groups), std::make_unique<Options>(defaults)) {
    check_options();
  }
  explicit BasicOptimizer(std::vector<torch::Tensor> params, Options defaults = {})
      : BasicOptimizer({torch::optim::OptimizerParamGroup(std::move(params))}, defaults) {}

  /// One adamx step of every group (see the header comment for the rules).
  /// Throws std::invalid_argument (unsupported tensors, bad options) or
  /// adamx::NonFiniteGradientError before anything changes.
  torch::Tensor step(LossClosure closure = nullptr) override {
    torch::NoGradGuard no_grad;
    torch::Tensor loss;
    if (closure != nullptr) {
      at::AutoGradMode enable_grad(true);
      loss = closure();
    }
    if (in_eval_mode())
      throw std::logic_error(where("step") + "the parameters hold the evaluation point (eval()); call train() first");
    const torch::Dtype dtype = check_tensors();
    std::vector<adamx::BasicOptions<Flavour>> options = check_options();
    check_tensor_kinds(options);
    ensure_built(dtype);
    std::visit([&](auto& opt) { step_with(*opt, options); }, engine_);
    return loss;
  }

  /// For an optimizer whose parameters hold a training point other than the
  /// point to evaluate (Schedule-Free AdamW): moves every parameter to the
  /// point to evaluate (adamx::Optimizer::eval), keeping the training point
  /// for train(). Call it before evaluating or exporting the model; step(),
  /// save() and load() refuse until train(). Does nothing if already in
  /// eval mode. Throws std::invalid_argument for unsupported tensors,
  /// changing nothing.
  template <class R = typename Flavour::Rule, class = decltype(R::kEvaluationSlot)>
  void eval() {
    if (in_eval_mode()) return;
    ensure_built(check_tensors());
    std::visit(
        [&](auto& opt) {
          using Scalar = typename std::decay_t<decltype(*opt)>::scalar_type;
          std::vector<std::vector<Scalar>> copies;
          opt->eval(movable_parameters<Scalar>(copies));
        },
        engine_);
  }
  /// Puts back, bit for bit, the training point eval() kept. Does nothing if
  /// not in eval mode.
  template <class R = typename Flavour::Rule, class = decltype(R::kEvaluationSlot)>
  void train() {
    if (!in_eval_mode()) return;
    std::visit(
        [&](auto& opt) {
          using Scalar = typename std::decay_t<decltype(*opt)>::scalar_type;
          std::vector<std::vector<Scalar>> copies;
          opt->train(movable_parameters<Scalar>(copies));
        },
        engine_);
  }
  /// Whether the parameters hold the evaluation point (between eval() and train()).
  bool in_eval_mode() const {
    return std::visit([](const auto& opt) { return opt != nullptr && opt->in_eval_mode(); }, engine_);
  }

  /// Threads a step may use (adamx::Optimizer::set_threads; results do not depend on it).
  void set_threads(int threads) {
    adamx::detail::check_threads(where("set_threads"), threads);
    threads_ = threads;
    std::visit([&](auto& opt) { if (opt) opt->set_threads(threads); }, engine_);
  }

  /// γ of group i after the last step (1 before the first, and always for Adam/AdamW).
  double gamma(std::size_t group) const {
    return std::visit([&](const auto& opt) { return opt ? opt->gamma(group) : 1.0; }, engine_);
  }

  /// The steps parameter `index` of group `group` has taken (libtorch's
  /// per-parameter state "step"; 0 before the first step). Its m and v are
  /// bias-corrected with this count; the group's own t (engine()) counts the
  /// steps in which any of its parameters had a gradient.
  std::int64_t parameter_steps(std::size_t group, std::size_t index) const {
    if (group >= param_groups_.size() || index >= param_groups_[group].params().size())
      throw std::out_of_range(where("parameter_steps") + detail::parameter_name(group, index) +
                              " does not exist");
    return group < tensor_steps_.size() ? tensor_steps_[group][index] : 0;
  }

  /// Writes adamx's checkpoint of the whole state as the byte tensor
  /// "adamx_checkpoint" (with its dtype in "adamx_dtype") and every
  /// parameter's step count, group after group, in "adamx_parameter_steps".
  void save(torch::serialize::OutputArchive& archive) const override {
    if (in_eval_mode())
      throw std::logic_error(where("save") + "the parameters hold the evaluation point (eval()); call train() first");
    std::ostringstream bytes;
    std::int64_t dtype_code = -1;
    std::visit(
        [&](const auto& opt) {
          if (!opt) return;
          using Scalar = typename std::decay_t<decltype(*opt)>::scalar_type;
          dtype_code = static_cast<std::int64_t>(detail::dtype_of<Scalar>());
          save_checkpoint(*opt, bytes);
        },
        engine_);
    const std::string blob = bytes.str();
    torch::Tensor data = torch::empty({static_cast<std::int64_t>(blob.size())}, torch::kUInt8);
    if (!blob.empty()) std::memcpy(data.data_ptr(), blob.data(), blob.size());
    std::vector<std::int64_t> steps;
    if (dtype_code >= 0)
      for (const auto& group : tensor_steps_) steps.insert(steps.end(), group.begin(), group.end());
    archive.write("adamx_checkpoint", data);
    archive.write("adamx_dtype", torch::tensor({dtype_code}, torch::kInt64));
    torch::Tensor counts = torch::empty({static_cast<std::int64_t>(steps.size())}, torch::kInt64);
    if (!steps.empty()) std::memcpy(counts.data_ptr(), steps.data(), steps.size() * sizeof(std::int64_t));
    archive.write("adamx_parameter_steps", counts);
  }

  /// Reads what save() wrote. The archive must come from an optimizer of the
  /// same kind, dtype and groups (shapes as numel per parameter); every check
  /// (adamx's CRCs and structure matching included) runs before anything
  /// changes, and a refused archive throws adamx::CheckpointError with the
  /// optimizer as it was. The archive's options replace every group's (as
  /// adamx's checkpoints do; libtorch's own optimizers keep theirs). An
  /// archive without per-parameter step counts (adamx before they were kept)
  /// gives every parameter its group's t, the count it was stepped with then;
  /// one whose tensors are named "param<j>" (adamx before the adapter used
  /// adamx's default names) loads with its state renamed.
  void load(torch::serialize::InputArchive& archive) override {
    if (in_eval_mode())
      throw std::logic_error(where("load") + "the parameters hold the evaluation point (eval()); call train() first");
    torch::Tensor data;
    torch::Tensor dtype_tensor;
    torch::Tensor steps_tensor;
    if (!archive.try_read("adamx_checkpoint", data)) {
      c10::IValue version;
      if (archive.try_read("pytorch_version", version))
        throw CheckpointError(
            where("load") +
            "the archive was written by another optimizer (it holds libtorch's optimizer entries "
            "'pytorch_version', 'state' and 'param_groups', as torch::save of a torch::optim "
            "optimizer writes them), not by adamx::torch_optim; libtorch's state cannot be "
            "taken over, nothing was changed");
      throw CheckpointError(where("load") +
                            "the archive was not written by adamx::torch_optim (it has no "
                            "'adamx_checkpoint' entry); nothing was changed");
    }
    const bool has_steps = archive.try_read("adamx_parameter_steps", steps_tensor);
    if (!archive.try_read("adamx_dtype", dtype_tensor) || data.scalar_type() != torch::kUInt8 ||
        data.dim() != 1 || !data.is_contiguous() || dtype_tensor.scalar_type() != torch::kInt64 ||
        dtype_tensor.numel() != 1 ||
        (has_steps && (steps_tensor.scalar_type() != torch::kInt64 || steps_tensor.dim() != 1 ||
                       !steps_tensor.is_contiguous())))
      throw CheckpointError(where("load") + "the archive's adamx entries are malformed");
    const std::int64_t code = dtype_tensor.item<std::int64_t>();
    if (code < 0) {
      // Saved before the first step: nothing to restore but nothing may exist here either.
      bool fresh = true;
      std::visit([&](const auto& opt) { fresh = !opt || opt->num_groups() == 0 || opt->step_count(0) == 0; },
                 engine_);
      if (!fresh)
        throw CheckpointError(
            where("load") +
            "the archive holds no state (saved before the first step) but this optimizer has "
            "stepped; refusing to discard its state");
      return;
    }
    const torch::Dtype dtype = static_cast<torch::Dtype>(code);
    const torch::Dtype own = check_tensors();
    if (dtype != own)
      throw CheckpointError(where("load") + "the archive was saved for " + c10::toString(dtype) +
                            " parameters, this optimizer's are " + c10::toString(own));
    std::size_t parameters = 0;
    for (const auto& group : param_groups_) parameters += group.params().size();
    if (has_steps && static_cast<std::size_t>(steps_tensor.numel()) != parameters)
      throw CheckpointError(where("load") + "the archive has step counts of " +
                            std::to_string(steps_tensor.numel()) + " parameters, this optimizer has " +
                            std::to_string(parameters) + "; nothing was changed");
    const std::string blob(static_cast<const char*>(data.data_ptr()),
                           static_cast<std::size_t>(data.numel()));
    const bool was_built = built();
    ensure_built(own);
    try {
      std::visit(
          [&](auto& opt) {
            using State = typename std::decay_t<decltype(*opt)>::State;
            std::vector<State> before;  // to undo a load whose step counts are refused
            if (was_built) before = opt->state();
            try {
              load_blob(*opt, blob);
              tensor_steps_ = loaded_steps(*opt, has_steps ? steps_tensor.data_ptr<std::int64_t>() : nullptr);
            } catch (...) {
              if (was_built) opt->restore(before);
              throw;
            }
          },
          engine_);
    } catch (...) {
      if (!was_built) {  // as before: no state
        engine_ = Engine{};
        tensor_steps_.clear();
      }
      throw;
    }
    std::visit(
        [&](auto& opt) {
          for (std::size_t g = 0; g < param_groups_.size(); ++g)
            param_groups_[g].set_options(std::make_unique<Options>(Options::from_adamx(opt->options(g))));
        },
        engine_);
  }

  /// The adamx optimizer behind this one, for inspection (null before the first step).
  template <class Scalar>
  const adamx::Optimizer<Scalar, Flavour>* engine() const {
    const auto* held = std::get_if<std::unique_ptr<adamx::Optimizer<Scalar, Flavour>>>(&engine_);
    return held ? held->get() : nullptr;
  }

 private:
  // Null until the first step (or load) fixes the dtype.
  using Engine = std::variant<std::unique_ptr<adamx::Optimizer<float, Flavour>>,
                              std::unique_ptr<adamx::Optimizer<double, Flavour>>,
                              std::unique_ptr<adamx::Optimizer<Eigen::bfloat16, Flavour>>,
                              std::unique_ptr<adamx::Optimizer<Eigen::half, Flavour>>>;

  // Loads adamx checkpoint `blob` into `opt`, with all of load_checkpoint's
  // checks. An adapter before this one named tensor j of each group
  // "param<j>" (now adamx's default, "tensor<j>"): if the checkpoint does
  // not load as it is, it is loaded into an optimizer of the same groups
  // named the old way and its state moves over by position, renamed. If that
  // fails too, the first refusal is what the caller sees.
  template <class Engine1>
  static void load_blob(Engine1& opt, const std::string& blob) {
    using Scalar = typename Engine1::scalar_type;
    std::istringstream in(blob);
    try {
      load_checkpoint(opt, in);
      return;
    } catch (const CheckpointError&) {
      const std::exception_ptr refusal = std::current_exception();
      Engine1 old_names;
      for (std::size_t g = 0; g < opt.num_groups(); ++g) {
        const GroupLayout& own = opt.layout(g);
        std::vector<ConstTensorRef<Scalar>> shapes;
        std::vector<std::string> names;
        for (std::size_t j = 0; j < own.tensors.size(); ++j) {
          shapes.emplace_back(static_cast<const Scalar*>(nullptr), own.tensors[j].rows, own.tensors[j].cols);
          names.push_back("param" + std::to_string(j));
        }
        old_names.add_group(shapes, opt.options(g), own.name, names);
      }
      try {
        std::istringstream again(blob);
        load_checkpoint(old_names, again);
      } catch (const CheckpointError&) {
        std::rethrow_exception(refusal);
      }
      std::vector<typename Engine1::State> states = old_names.state();
      for (std::size_t g = 0; g < states.size(); ++g)
        for (std::size_t j = 0; j < states[g].tensors.size(); ++j)
          states[g].tensors[j].name = opt.layout(g).tensors[j].name;
      opt.restore(states);  // the same structure and checked values: cannot fail
    }
  }

  static std::string where(const char* function) {
    return std::string("adamx::torch_optim::") + Flavour::name + ": " + function + ": ";
  }

  bool built() const {
    return std::visit([](const auto& opt) { return opt != nullptr; }, engine_);
  }

  // Every parameter's step count after a load into `opt`: the archive's
  // (`saved`, group after group; each between 0 and its group's t) or, for
  // an archive without them, the group's t.
  template <class Engine1>
  std::vector<std::vector<std::int64_t>> loaded_steps(const Engine1& opt, const std::int64_t* saved) const {
    std::vector<std::vector<std::int64_t>> steps(param_groups_.size());
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      const std::int64_t t = opt.step_count(g);
      for (std::size_t j = 0; j < param_groups_[g].params().size(); ++j) {
        const std::int64_t count = saved != nullptr ? *saved++ : t;
        if (count < 0 || count > t)
          throw CheckpointError(where("load") + detail::parameter_name(g, j) + " has taken " +
                                std::to_string(count) + " steps in the archive and its group " +
                                std::to_string(t) +
                                " (a parameter steps only with its group); nothing was changed");
        steps[g].push_back(count);
      }
    }
    return steps;
  }

  // Every group's options as adamx's, all validated (the group named) before
  // any is used.
  std::vector<adamx::BasicOptions<Flavour>> check_options() const {
    std::vector<adamx::BasicOptions<Flavour>> out;
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      const auto* options = dynamic_cast<const Options*>(&param_groups_[g].options());
      if (options == nullptr)
        throw std::invalid_argument("adamx::torch_optim: group " + std::to_string(g) +
                                    " has options of another optimizer's type");
      out.push_back(options->to_adamx());
      validate(out.back(), adamx::default_group_name(g));
    }
    return out;
  }

  // Checks every parameter and gradient; returns the one dtype they share.
  torch::Dtype check_tensors() const {
    bool have_dtype = false;
    torch::Dtype dtype = torch::kFloat32;
    std::string first;
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      const auto& params = param_groups_[g].params();
      if (params.empty())
        throw std::invalid_argument("adamx::torch_optim: group " + std::to_string(g) +
                                    " has no parameters");
      for (std::size_t j = 0; j < params.size(); ++j) {
        const torch::Tensor& p = params[j];
        const std::string name = detail::parameter_name(g, j);
        const auto fail = [&](const std::string& why) {
          throw std::invalid_argument("adamx::torch_optim: " + name + ": " + why +
                                      "; nothing was changed");
        };
        if (!p.defined()) fail("is an undefined tensor");
        const std::string shape = " (" + detail::describe(p) + ")";
        if (!p.device().is_cpu())
          fail("is on " + p.device().str() + shape + "; adamx steps CPU tensors only");
        if (p.layout() != torch::kStrided) fail("is sparse" + shape + "; adamx steps dense tensors only");
        if (!p.is_contiguous())
          fail("is not contiguous" + shape + "; adamx steps contiguous memory in place");
        const torch::Dtype t = p.scalar_type();
        if (t != torch::kFloat32 && t != torch::kFloat64 && t != torch::kBFloat16 &&
            t != torch::kFloat16)
          fail("has dtype " + std::string(c10::toString(t)) +
               shape + "; adamx supports float, double, bfloat16 and half");
        if (!have_dtype) {
          dtype = t;
          first = name;
          have_dtype = true;
        } else if (t != dtype) {
          fail("has dtype " + std::string(c10::toString(t)) + " but " + first + " has " +
               c10::toString(dtype) + "; one optimizer steps one dtype");
        }
        const torch::Tensor& grad = p.grad();
        if (!grad.defined()) continue;
        if (!grad.device().is_cpu()) fail("has its gradient on " + grad.device().str());
        if (grad.layout() != torch::kStrided)
          fail("has a sparse gradient" + shape + "; adamx needs dense gradients");
        if (!grad.is_contiguous()) fail("has a non-contiguous gradient" + shape);
        if (grad.scalar_type() != t)
          fail("has a gradient of dtype " + std::string(c10::toString(grad.scalar_type())) +
               ", the parameter's is " + c10::toString(t));
        if (grad.numel() != p.numel())
          fail("has a gradient of " + std::to_string(grad.numel()) + " elements" + shape);
      }
    }
    // The structure adamx was built with must still hold (groups may be
    // added, parameters may not change size).
    std::visit(
        [&](const auto& opt) {
          if (!opt) return;
          using Scalar = typename std::decay_t<decltype(*opt)>::scalar_type;
          if (dtype != detail::dtype_of<Scalar>())
            throw std::invalid_argument(std::string("adamx::torch_optim: the parameters are now ") +
                                        c10::toString(dtype) + ", the optimizer stepped " +
                                        c10::toString(detail::dtype_of<Scalar>()) +
                                        "; nothing was changed");
          for (std::size_t g = 0; g < opt->num_groups(); ++g) {
            const auto& params = param_groups_[g].params();
            const auto& tensors = opt->layout(g).tensors;
            if (params.size() != tensors.size())
              throw std::invalid_argument("adamx::torch_optim: group " + std::to_string(g) + " has " +
                                          std::to_string(params.size()) + " parameters, it had " +
                                          std::to_string(tensors.size()) + "; nothing was changed");
            for (std::size_t j = 0; j < params.size(); ++j)
              if (params[j].numel() != tensors[j].size())
                throw std::invalid_argument("adamx::torch_optim: " + detail::parameter_name(g, j) +
                                            " has " + std::to_string(params[j].numel()) +
                                            " elements, it had " + std::to_string(tensors[j].size()) +
                                            "; nothing was changed");
          }
        },
        engine_);
    return dtype;
  }

  template <class Scalar>
  static Scalar* data_of(const torch::Tensor& t) {
    return reinterpret_cast<Scalar*>(t.data_ptr());
  }

  // The tensor adamx sees for parameter `p` (and for its gradient, `data`
  // the gradient's memory): one tensor of numel() elements, or, for a rule
  // that steps whole matrices, a parameter of two or more dimensions as the
  // row-major matrix size(0) × (numel / size(0)).
  template <class View, class Scalar>
  static View view_of(Scalar* data, const torch::Tensor& p) {
    if constexpr (adamx::detail::steps_matrices<typename Flavour::Rule>::value) {
      if (p.dim() >= 2 && p.numel() > 0) {
        using Matrix = Eigen::Matrix<std::remove_const_t<Scalar>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using Map = std::conditional_t<std::is_const<Scalar>::value, Eigen::Map<const Matrix>, Eigen::Map<Matrix>>;
        return View(Map(data, p.size(0), p.numel() / p.size(0)));
      }
    }
    return View(data, p.numel(), 1);
  }
  template <class Scalar>
  static TensorRef<Scalar> parameter_view(const torch::Tensor& p) {
    return view_of<TensorRef<Scalar>>(data_of<Scalar>(p), p);
  }
  template <class Scalar>
  static ConstTensorRef<Scalar> gradient_view(const torch::Tensor& p) {
    return view_of<ConstTensorRef<Scalar>>(static_cast<const Scalar*>(data_of<Scalar>(p.grad())), p);
  }

  // Every parameter of every group, as adamx sees them, for eval() and
  // train(). A parameter that has not stepped yet (its slots still zeros)
  // holds its starting point, which is also its point to evaluate; the rule,
  // which moves every tensor of a group that has stepped, is given a copy of
  // it (kept in `copies` for the call) and the parameter stays as it is.
  template <class Scalar>
  std::vector<std::vector<TensorRef<Scalar>>> movable_parameters(std::vector<std::vector<Scalar>>& copies) const {
    std::vector<std::vector<TensorRef<Scalar>>> out(param_groups_.size());
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      const auto& params = param_groups_[g].params();
      for (std::size_t j = 0; j < params.size(); ++j) {
        const bool stepped = g < tensor_steps_.size() && j < tensor_steps_[g].size() && tensor_steps_[g][j] > 0;
        if (stepped) {
          out[g].push_back(parameter_view<Scalar>(params[j]));
          continue;
        }
        const Scalar* data = data_of<Scalar>(params[j]);
        copies.emplace_back(data, data + params[j].numel());
        out[g].push_back(view_of<TensorRef<Scalar>>(copies.back().data(), params[j]));
      }
    }
    return out;
  }

  // Throws std::invalid_argument, before anything changes, if a group's
  // rule refuses one of its parameters with its options (Muon's groups
  // take matrices), naming the parameter as libtorch numbers it.
  void check_tensor_kinds(const std::vector<adamx::BasicOptions<Flavour>>& options) const {
    for (std::size_t g = 0; g < param_groups_.size() && g < options.size(); ++g) {
      const auto& params = param_groups_[g].params();
      for (std::size_t j = 0; j < params.size(); ++j) {
        const TensorShape shape =
            view_of<ConstTensorRef<float>>(static_cast<const float*>(nullptr), params[j]).layout().shape();
        const std::string problem =
            adamx::detail::rule_tensor_problem<typename Flavour::Rule>(options[g], shape, 0);
        if (!problem.empty())
          throw std::invalid_argument("adamx::torch_optim::" + std::string(Flavour::name) + ": " +
                                      detail::parameter_name(g, j) + " (" + detail::describe(params[j]) + ") " +
                                      problem + "; nothing was changed");
      }
    }
  }

  // Creates the adamx optimizer for `dtype` (first step or load), and adds
  // groups added to this optimizer since. Tensors were checked.
  void ensure_built(torch::Dtype dtype) {
    switch (dtype) {
      case torch::kFloat32: build<float>(); break;
      case torch::kFloat64: build<double>(); break;
      case torch::kBFloat16: build<Eigen::bfloat16>(); break;
      default: build<Eigen::half>(); break;
    }
  }

  template <class Scalar>
  void build() {
    using Engine1 = adamx::Optimizer<Scalar, Flavour>;
    auto* held = std::get_if<std::unique_ptr<Engine1>>(&engine_);
    std::unique_ptr<Engine1> fresh;
    Engine1* opt = held && *held ? held->get() : nullptr;
    if (opt == nullptr) {
      fresh = std::make_unique<Engine1>();
      fresh->set_threads(threads_);
      opt = fresh.get();
    }
    const std::vector<adamx::BasicOptions<Flavour>> options = check_options();
    check_tensor_kinds(options);
    for (std::size_t g = opt->num_groups(); g < param_groups_.size(); ++g) {
      std::vector<ConstTensorRef<Scalar>> shapes;
      std::vector<std::string> names;
      const auto& params = param_groups_[g].params();
      for (std::size_t j = 0; j < params.size(); ++j) {
        shapes.push_back(parameter_view<Scalar>(params[j]));
        names.push_back(adamx::default_tensor_name(j));
      }
      opt->add_group(shapes, options[g], adamx::default_group_name(g), names);
    }
    if (fresh) {
      engine_ = std::move(fresh);
      tensor_steps_.clear();
    }
    // New groups' parameters have taken no steps.
    tensor_steps_.resize(param_groups_.size());
    for (std::size_t g = 0; g < param_groups_.size(); ++g)
      tensor_steps_[g].resize(param_groups_[g].params().size(), 0);
  }

  template <class Scalar>
  void step_with(adamx::Optimizer<Scalar, Flavour>& opt,
                 const std::vector<adamx::BasicOptions<Flavour>>& options) {
    // Options first: all were validated (and the tensors' kinds checked
    // against them), so these cannot throw.
    for (std::size_t g = 0; g < options.size(); ++g)
      if (opt.options(g) != options[g]) opt.set_options(g, options[g]);

    // The views of the parameters with gradients, per group, and which
    // parameters they are with their step counts; the lists are kept across
    // steps so a steady training loop reuses their memory.
    const std::size_t groups = param_groups_.size();
    auto& params = std::get<ParamLists<Scalar>>(param_lists_);
    auto& grads = std::get<GradLists<Scalar>>(grad_lists_);
    params.resize(groups);
    grads.resize(groups);
    with_gradients_.groups.resize(groups);
    for (std::size_t g = 0; g < groups; ++g) {
      params[g].clear();
      grads[g].clear();
      with_gradients_.groups[g].clear();
      const auto& ps = param_groups_[g].params();
      for (std::size_t j = 0; j < ps.size(); ++j) {
        const torch::Tensor& p = ps[j];
        if (!p.grad().defined()) continue;
        params[g].push_back(parameter_view<Scalar>(p));
        grads[g].push_back(gradient_view<Scalar>(p));
        with_gradients_.groups[g].add(j, tensor_steps_[g][j]);
      }
    }
    const std::vector<StepReport>* reports = nullptr;
    try {
      reports = &opt.step(params, grads, with_gradients_);
    } catch (const NonFiniteGradientError& e) {
      // Name the group and parameter as libtorch numbers them (adamx's
      // tensor j of group g is parameter j of group g).
      std::ostringstream message;
      message << where("step") << "group " << e.group() << ": the gradient is not finite (first "
              << "non-finite at "
              << (e.tensor() == NonFiniteGradientError::kUnknownTensor
                      ? std::string("an unknown parameter")
                      : detail::parameter_name(e.group(), e.tensor()))
              << "); nothing was changed";
      throw NonFiniteGradientError(message.str(), e.group(), e.tensor());
    }
    for (std::size_t g = 0; g < groups; ++g) {
      const GroupSubset& stepped = with_gradients_.groups[g];
      if (stepped.empty()) continue;
      if ((*reports)[g].applied)
        for (const std::size_t j : stepped.tensors) ++tensor_steps_[g][j];
      bump_versions(g);
    }
  }

  // In-place changes count as writes for autograd's saved-tensor checks, as
  // libtorch's own in-place updates do.
  void bump_versions(std::size_t g) {
    for (auto& p : param_groups_[g].params())
      if (p.grad().defined() && !p.is_inference()) p.unsafeGetTensorImpl()->bump_version();
  }

  template <class Scalar>
  using ParamLists = std::vector<std::vector<TensorRef<Scalar>>>;
  template <class Scalar>
  using GradLists = std::vector<std::vector<ConstTensorRef<Scalar>>>;

  Engine engine_{};
  int threads_ = 1;
  // Per group, per parameter: the steps it has taken (libtorch's per-parameter
  // "step"); m and v are bias-corrected with it. Sized with the engine.
  std::vector<std::vector<std::int64_t>> tensor_steps_;
  // This step's parameters with gradients and their step counts (step_with).
  StepSubset with_gradients_;
  std::tuple<ParamLists<float>, ParamLists<double>, ParamLists<Eigen::bfloat16>,
             ParamLists<Eigen::half>>
      param_lists_;
  std::tuple<GradLists<float>, GradLists<double>, GradLists<Eigen::bfloat16>,
             GradLists<Eigen::half>>
      grad_lists_;
};

// Every optimizer of the library as a libtorch optimizer, stepped by adamx
// (rules.hpp's list): Adam has libtorch's semantics (L2 weight decay), AdamW
// decoupled decay; each optimizer's defaults are its rule file's.
#define ADAMX_TORCH_ALIAS(Name) using Name = BasicOptimizer<flavour::Name>;
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_TORCH_ALIAS)
#undef ADAMX_TORCH_ALIAS

}  // namespace torch_optim
ADAMX_NAMESPACE_END  // namespace adamx
