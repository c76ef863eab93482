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
//    memory (data_ptr), nothing is copied;
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
//    step, and h is bias-corrected with the group's t. When every parameter of
//    every group has a gradient and has taken its group's t steps (ordinary
//    training) the step is zero-copy; otherwise the affected groups are
//    stepped through a temporary adamx optimizer, one group per distinct step
//    count, holding a copy of those moments (documented cost, see
//    docs/from-pytorch.md).
//  - torch::save / torch::load store adamx's own checkpoint (checkpoint.hpp)
//    as one byte tensor, so its CRCs and structure checks apply unchanged,
//    plus the per-parameter step counts; load restores the archive's options.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
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
/// The defaults are libtorch's (AdamW: weight_decay 1e-2) plus AdamX's β3
/// (0.99 for AdamX, fixed at 1 for Adam and AdamW) and β_n = 0.99.
template <class Flavour>
class BasicOptions : public torch::optim::OptimizerCloneableOptions<BasicOptions<Flavour>> {
 public:
  using flavour_type = Flavour;
  using Betas = std::tuple<double, double>;
  BasicOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT(google-explicit-constructor): as libtorch
  TORCH_ARG(double, lr);
  TORCH_ARG(Betas, betas) = std::make_tuple(0.9, 0.999);
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = Flavour::weight_decay;
  TORCH_ARG(bool, amsgrad) = false;
  TORCH_ARG(double, beta3) = Flavour::beta3;
  TORCH_ARG(double, beta_norm) = 0.99;
  TORCH_ARG(NonFinitePolicy, nonfinite) = NonFinitePolicy::propagate;
  TORCH_ARG(bool, maximize) = false;
  // The baselines' own options (used only by AdaBound and AdaMod), with
  // adamx's defaults.
  TORCH_ARG(double, final_lr) = adamx::BasicOptions<Flavour>{}.final_lr;
  TORCH_ARG(double, bound_speed) = adamx::BasicOptions<Flavour>{}.bound_speed;
  TORCH_ARG(double, beta_step) = adamx::BasicOptions<Flavour>{}.beta_step;

 public:
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }

  /// The same options as adamx's own (decay mode fixed by the flavour).
  adamx::BasicOptions<Flavour> to_adamx() const {
    adamx::BasicOptions<Flavour> o;
    o.lr = lr();
    o.set_betas(std::get<0>(betas()), std::get<1>(betas()));
    o.eps = eps();
    o.weight_decay = weight_decay();
    o.amsgrad = amsgrad();
    o.beta3 = beta3();
    o.beta_norm = beta_norm();
    o.nonfinite = nonfinite();
    o.maximize = maximize();
    o.final_lr = final_lr();
    o.bound_speed = bound_speed();
    o.beta_step = beta_step();
    return o;
  }
  static BasicOptions from_adamx(const adamx::BasicOptions<Flavour>& o) {
    BasicOptions out(o.lr);
    out.betas(std::make_tuple(o.beta1, o.beta2))
        .eps(o.eps)
        .weight_decay(o.weight_decay)
        .amsgrad(o.amsgrad)
        .beta3(o.beta3)
        .beta_norm(o.beta_norm)
        .nonfinite(o.nonfinite)
        .maximize(o.maximize)
        .final_lr(o.final_lr)
        .bound_speed(o.bound_speed)
        .beta_step(o.beta_step);
    return out;
  }
};

// AdamOptions, AdamWOptions, AdamXOptions, RAdamOptions, AdaBoundOptions,
// AdaModOptions: one per optimizer of the library (optimizers.hpp's list).
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

// The number of s-blocks (kernel.hpp) a tensor of `size` elements is summed in.
inline std::size_t norm_blocks(std::int64_t size) {
  return static_cast<std::size_t>((size + adamx::detail::kNormBlock - 1) / adamx::detail::kNormBlock);
}

// A norm reducer (norm_reducer.hpp) for a group stepped as several adamx
// groups, one per step count of its parameters: every part receives the s of
// the whole group, its parts' block partials added in the group's own
// parameter order, so s (and γ, h) are bitwise those of one adamx group
// holding the same parameters.
class RegroupedNorms {
 public:
  // One parameter's blocks: in part `part`, `count` partials from `first` on.
  struct Segment {
    std::size_t parameter;
    std::size_t part;
    std::size_t first;
    std::size_t count;
  };
  /// Starts a group; its parameters follow in the group's order.
  void add_group() {
    segments_.emplace_back();
    parts_.emplace_back();
    first_nonfinite_.push_back(kNone);
  }
  /// Adds adamx group `part` to the last group started.
  void add_part(std::size_t part) { parts_.back().push_back(part); }
  void add_parameter(const Segment& segment) { segments_.back().push_back(segment); }

  void operator()(const std::vector<BlockPartials>& partials, std::vector<double>& s) {
    for (std::size_t k = 0; k < segments_.size(); ++k) {
      double running = 0.0;
      first_nonfinite_[k] = kNone;
      for (const Segment& seg : segments_[k]) {
        running = ordered_block_sum(partials[seg.part].data + seg.first, seg.count, running);
        if (first_nonfinite_[k] == kNone && !std::isfinite(running)) first_nonfinite_[k] = seg.parameter;
      }
      for (const std::size_t part : parts_[k]) s[part] = running;
    }
  }

  /// The group (in add_group order) that adamx group `part` belongs to.
  std::size_t group_of(std::size_t part) const {
    for (std::size_t k = 0; k < parts_.size(); ++k)
      if (std::find(parts_[k].begin(), parts_[k].end(), part) != parts_[k].end()) return k;
    return kNone;
  }
  /// The parameter at which group k's running sum of s first stopped being
  /// finite in the last reduction (kNone if it did not).
  std::size_t first_nonfinite(std::size_t k) const { return first_nonfinite_[k]; }

  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

 private:
  std::vector<std::vector<Segment>> segments_;
  std::vector<std::vector<std::size_t>> parts_;
  std::vector<std::size_t> first_nonfinite_;
};

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
    const torch::Dtype dtype = check_tensors();
    std::vector<adamx::BasicOptions<Flavour>> options = check_options();
    ensure_built(dtype);
    std::visit([&](auto& opt) { step_with(*opt, options); }, engine_);
    return loss;
  }

  /// Threads a step may use (adamx::Optimizer::set_threads; results do not depend on it).
  void set_threads(int threads) {
    adamx::detail::check_threads(where("set_threads"), threads);
    threads_ = threads;
    std::visit([&](auto& opt) { if (opt) opt->set_threads(threads); }, engine_);
  }

  /// γ of group i after the last step (1 before the first, and always for Adam/AdamW).
  double gamma(std::size_t group) const {
    return std::visit([&](const auto& opt) { return opt ? opt->state(group).gamma : 1.0; }, engine_);
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
      std::visit([&](const auto& opt) { fresh = !opt || opt->state().empty() || opt->state(0).t == 0; },
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
              if (was_built) opt->restore(std::move(before));
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
      opt.restore(std::move(states));  // the same structure and checked values: cannot fail
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
            const auto& tensors = opt->state(g).tensors;
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
    for (std::size_t g = opt->num_groups(); g < param_groups_.size(); ++g) {
      std::vector<ConstTensorRef<Scalar>> shapes;
      std::vector<std::string> names;
      const auto& params = param_groups_[g].params();
      for (std::size_t j = 0; j < params.size(); ++j) {
        shapes.emplace_back(data_of<Scalar>(params[j]), params[j].numel(), 1);
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
    // Options first: all were validated, so these cannot throw.
    for (std::size_t g = 0; g < options.size(); ++g)
      if (opt.options(g) != options[g]) opt.set_options(g, options[g]);

    // The views of the parameters with gradients, per group; the lists are
    // kept across steps so a steady training loop reuses their memory.
    const std::size_t groups = param_groups_.size();
    auto& params = std::get<ParamLists<Scalar>>(param_lists_);
    auto& grads = std::get<GradLists<Scalar>>(grad_lists_);
    params.resize(groups);
    grads.resize(groups);
    std::vector<std::size_t> stepped;  // groups with at least one gradient
    // Every parameter of every group has a gradient and has taken its group's
    // t steps, so one adamx step (bias-corrected with t + 1) is libtorch's.
    bool uniform = true;
    for (std::size_t g = 0; g < groups; ++g) {
      params[g].clear();
      grads[g].clear();
      const auto& ps = param_groups_[g].params();
      for (std::size_t j = 0; j < ps.size(); ++j) {
        const torch::Tensor& p = ps[j];
        if (!p.grad().defined()) {
          uniform = false;
          continue;
        }
        if (tensor_steps_[g][j] != opt.step_count(g)) uniform = false;
        params[g].emplace_back(data_of<Scalar>(p), p.numel(), 1);
        grads[g].emplace_back(data_of<Scalar>(p.grad()), p.numel(), 1);
      }
      if (!params[g].empty()) stepped.push_back(g);
    }
    if (uniform) {
      // The usual case: zero-copy, one fused pass per group.
      const std::vector<StepReport>& reports = opt.step(params, grads);
      for (std::size_t g = 0; g < groups; ++g)
        if (reports[g].applied)
          for (std::int64_t& steps : tensor_steps_[g]) ++steps;
    } else if (!stepped.empty()) {
      step_by_counts(opt, stepped);
    }
    for (const std::size_t g : stepped) bump_versions(g);
  }

  // Steps the listed groups' parameters that have gradients, each with its
  // own step count, through a temporary adamx optimizer holding a copy of
  // their state, then writes that state back. Each listed group becomes one
  // adamx group per distinct step count of those parameters (its t is that
  // count, so m and v are bias-corrected as libtorch does), plus, when no
  // parameter's count is the group's t, one group of no elements with the
  // group's t: after the step, the part whose t was the group's holds the
  // group's new t, γ and h. Every part sees the whole group's s
  // (RegroupedNorms), so γ and h are those of one adamx group of the
  // parameters with gradients, and every part applies or skips together.
  template <class Scalar>
  void step_by_counts(adamx::Optimizer<Scalar, Flavour>& opt, const std::vector<std::size_t>& which) {
    using Engine1 = adamx::Optimizer<Scalar, Flavour>;
    using State = typename Engine1::State;
    Engine1 temp;
    temp.set_threads(threads_);
    std::vector<State> sub;
    std::vector<std::vector<TensorRef<Scalar>>> sub_params;
    std::vector<std::vector<ConstTensorRef<Scalar>>> sub_grads;
    std::vector<std::vector<std::size_t>> kept;  // per part, the parameter indices it steps
    std::vector<std::size_t> carrier;            // per listed group, the part with the group's t
    detail::RegroupedNorms norms;
    for (const std::size_t g : which) {
      const State& own = opt.state(g);
      const auto& ps = param_groups_[g].params();
      std::vector<std::int64_t> counts;
      for (std::size_t j = 0; j < ps.size(); ++j)
        if (ps[j].grad().defined()) counts.push_back(tensor_steps_[g][j]);
      std::sort(counts.begin(), counts.end());
      counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
      if (!std::binary_search(counts.begin(), counts.end(), own.t)) counts.push_back(own.t);
      norms.add_group();
      std::vector<detail::RegroupedNorms::Segment> segment_of(ps.size());
      for (const std::int64_t count : counts) {
        const std::size_t part = sub.size();
        State s = own.without_tensors();
        s.name = own.name + "/steps" + std::to_string(count);
        s.t = count;
        std::vector<std::size_t> indices;
        std::vector<ConstTensorRef<Scalar>> shapes;
        std::vector<std::string> names;
        std::vector<TensorRef<Scalar>> part_params;
        std::vector<ConstTensorRef<Scalar>> part_grads;
        std::size_t blocks = 0;
        for (std::size_t j = 0; j < ps.size(); ++j) {
          if (!ps[j].grad().defined() || tensor_steps_[g][j] != count) continue;
          indices.push_back(j);
          s.tensors.push_back(own.tensors[j]);
          shapes.emplace_back(data_of<Scalar>(ps[j]), ps[j].numel(), 1);
          names.push_back(own.tensors[j].name);
          part_params.emplace_back(data_of<Scalar>(ps[j]), ps[j].numel(), 1);
          part_grads.emplace_back(data_of<Scalar>(ps[j].grad()), ps[j].numel(), 1);
          const std::size_t n = detail::norm_blocks(ps[j].numel());
          segment_of[j] = {j, part, blocks, n};
          blocks += n;
        }
        if (indices.empty()) {  // the group's t, γ and h only: one tensor of no elements
          shapes.emplace_back(nullptr, 0, 1);
          names.emplace_back("none");
          part_params.emplace_back(nullptr, 0, 1);
          part_grads.emplace_back(nullptr, 0, 1);
        }
        temp.add_group(shapes, own.options, s.name, names);
        if (indices.empty()) s.tensors = temp.state(part).tensors;
        if (count == own.t) carrier.push_back(part);
        norms.add_part(part);
        sub.push_back(std::move(s));
        sub_params.push_back(std::move(part_params));
        sub_grads.push_back(std::move(part_grads));
        kept.push_back(std::move(indices));
      }
      for (std::size_t j = 0; j < ps.size(); ++j)
        if (ps[j].grad().defined()) norms.add_parameter(segment_of[j]);
    }
    temp.restore(std::move(sub));
    try {
      temp.step(sub_params, sub_grads, norms);
    } catch (const NonFiniteGradientError& e) {
      // Name the group and parameter as the user knows them, not the parts.
      const std::size_t k = norms.group_of(e.group());
      const std::size_t bad = norms.first_nonfinite(k);
      std::ostringstream message;
      message << where("step") << "group " << which[k] << ": the gradient is not finite (first "
              << "non-finite at "
              << (bad == detail::RegroupedNorms::kNone ? std::string("an unknown parameter")
                                                        : detail::parameter_name(which[k], bad))
              << "); nothing was changed";
      throw NonFiniteGradientError(message.str(), which[k]);
    }
    // Write back: the whole state with the stepped parts replaced.
    std::vector<State> all = opt.state();
    std::size_t part = 0;
    std::vector<bool> applied(which.size());
    for (std::size_t k = 0; k < which.size(); ++k) {
      State& target = all[which[k]];
      applied[k] = temp.last_reports()[carrier[k]].applied;
      target.t = temp.step_count(carrier[k]);
      target.gamma = temp.gamma(carrier[k]);
      target.h = temp.h(carrier[k]);
      for (; part < kept.size() && norms.group_of(part) == k; ++part)
        for (std::size_t i = 0; i < kept[part].size(); ++i)
          target.tensors[kept[part][i]] = temp.tensor_state(part, i);
    }
    opt.restore(std::move(all));
    for (std::size_t k = 0; k < which.size(); ++k) {
      if (!applied[k]) continue;
      const auto& ps = param_groups_[which[k]].params();
      for (std::size_t j = 0; j < ps.size(); ++j)
        if (ps[j].grad().defined()) ++tensor_steps_[which[k]][j];
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
  std::tuple<ParamLists<float>, ParamLists<double>, ParamLists<Eigen::bfloat16>,
             ParamLists<Eigen::half>>
      param_lists_;
  std::tuple<GradLists<float>, GradLists<double>, GradLists<Eigen::bfloat16>,
             GradLists<Eigen::half>>
      grad_lists_;
};

// Every optimizer of the library as a libtorch optimizer, stepped by adamx:
// Adam (libtorch's semantics, L2 weight decay), AdamW (decoupled decay,
// λ = 1e-2 by default), AdamX (a per-group γ scaling the second moment,
// β3 = 0.99 by default), and the baselines RAdam, AdaBound and AdaMod
// (optimizers.hpp's list).
#define ADAMX_TORCH_ALIAS(Name) using Name = BasicOptimizer<flavour::Name>;
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_TORCH_ALIAS)
#undef ADAMX_TORCH_ALIAS

}  // namespace torch_optim
ADAMX_NAMESPACE_END  // namespace adamx
