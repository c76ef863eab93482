// adamx as a libtorch optimizer: adamx::torch_optim::Adam, AdamW and AdamX,
// derived from torch::optim::Optimizer, so a libtorch training loop swaps
// torch::optim::Adam for adamx in one line. This header is the optional
// adamx::torch part (built when find_package(Torch) succeeds); nothing else in
// adamx includes it.
//
// How it maps onto adamx:
//  - each libtorch parameter group is one adamx group (one γ), each parameter
//    one tensor of numel() elements ("group<i>", "param<j>");
//  - step() hands adamx's fused kernel the parameters' and gradients' own
//    memory (data_ptr), nothing is copied;
//  - parameters must be dense, contiguous CPU tensors of one dtype (float,
//    double, bfloat16 or half) with gradients of the same dtype; anything else
//    is refused before anything changes, naming the parameter and the reason;
//  - parameters whose grad is undefined are skipped as libtorch skips them
//    (their m, v stay as they were). The group's step count t and its γ, h
//    advance when at least one of its parameters has a gradient, and s (the
//    squared gradient norm driving γ) sums only over those parameters. When
//    every parameter of a group has a gradient the step is zero-copy; when only
//    some do, the group is stepped through a temporary adamx group holding a
//    copy of those parameters' moments (documented cost, see docs/from-pytorch.md).
//  - torch::save / torch::load store adamx's own checkpoint (checkpoint.hpp)
//    as one byte tensor, so its CRCs and structure checks apply unchanged.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "adamx/adamx.hpp"
#include "adamx/checkpoint.hpp"

namespace adamx {
namespace torch_optim {

/// Options in libtorch's style (chainable setters named like the fields):
/// AdamOptions(1e-3).betas({0.9, 0.999}).weight_decay(0.1).amsgrad(true).
/// The defaults are libtorch's (AdamW: weight_decay 1e-2) plus AdamX's β3
/// (0.99 for AdamX, fixed at 1 for Adam and AdamW) and β_n = 0.99.
template <class Flavour>
class BasicOptions : public torch::optim::OptimizerCloneableOptions<BasicOptions<Flavour>> {
 public:
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
        .nonfinite(o.nonfinite);
    return out;
  }
};

using AdamOptions = BasicOptions<flavour::Adam>;
using AdamWOptions = BasicOptions<flavour::AdamW>;
using AdamXOptions = BasicOptions<flavour::AdamX>;

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
    const torch::Dtype dtype = check_tensors();
    std::vector<adamx::BasicOptions<Flavour>> options = check_options();
    ensure_built(dtype);
    std::visit([&](auto& opt) { step_with(*opt, options); }, engine_);
    return loss;
  }

  /// Threads a step may use (adamx::Optimizer::set_threads; results do not depend on it).
  void set_threads(int threads) {
    if (threads < 1 || (threads > 1 && !adamx::detail::kOpenMP))
      throw std::invalid_argument("adamx::torch_optim: set_threads(" + std::to_string(threads) +
                                  "): needs threads >= 1, and OpenMP (ADAMX_OPENMP) for more than 1");
    threads_ = threads;
    std::visit([&](auto& opt) { if (opt) opt->set_threads(threads); }, engine_);
  }

  /// γ of group i after the last step (1 before the first, and always for Adam/AdamW).
  double gamma(std::size_t group) const {
    return std::visit([&](const auto& opt) { return opt ? opt->state(group).gamma : 1.0; }, engine_);
  }

  /// Writes adamx's checkpoint of the whole state as the byte tensor
  /// "adamx_checkpoint" (with its dtype in "adamx_dtype").
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
    archive.write("adamx_checkpoint", data);
    archive.write("adamx_dtype", torch::tensor({dtype_code}, torch::kInt64));
  }

  /// Reads what save() wrote. The archive must come from an optimizer of the
  /// same kind, dtype and groups (shapes as numel per parameter); every check
  /// (adamx's CRCs and structure matching included) runs before anything
  /// changes, and a refused archive throws with the optimizer as it was.
  void load(torch::serialize::InputArchive& archive) override {
    torch::Tensor data;
    torch::Tensor dtype_tensor;
    archive.read("adamx_checkpoint", data);
    archive.read("adamx_dtype", dtype_tensor);
    if (data.scalar_type() != torch::kUInt8 || data.dim() != 1 || !data.is_contiguous() ||
        dtype_tensor.scalar_type() != torch::kInt64 || dtype_tensor.numel() != 1)
      throw CheckpointError("adamx::torch_optim: load: the archive's adamx entries are malformed");
    const std::int64_t code = dtype_tensor.item<std::int64_t>();
    if (code < 0) {
      // Saved before the first step: nothing to restore but nothing may exist here either.
      bool fresh = true;
      std::visit([&](const auto& opt) { fresh = !opt || opt->state().empty() || opt->state(0).t == 0; },
                 engine_);
      if (!fresh)
        throw CheckpointError(
            "adamx::torch_optim: load: the archive holds no state (saved before the first step) "
            "but this optimizer has stepped; refusing to discard its state");
      return;
    }
    const torch::Dtype dtype = static_cast<torch::Dtype>(code);
    const torch::Dtype own = check_tensors();
    if (dtype != own)
      throw CheckpointError(std::string("adamx::torch_optim: load: the archive was saved for ") +
                            c10::toString(dtype) + " parameters, this optimizer's are " +
                            c10::toString(own));
    const std::string blob(static_cast<const char*>(data.data_ptr()),
                           static_cast<std::size_t>(data.numel()));
    const bool was_built = built();
    ensure_built(own);
    try {
      std::visit(
          [&](auto& opt) {
            std::istringstream in(blob);
            load_checkpoint(*opt, in);
            for (std::size_t g = 0; g < param_groups_.size(); ++g)
              param_groups_[g].set_options(
                  std::make_unique<Options>(Options::from_adamx(opt->options(g))));
          },
          engine_);
    } catch (...) {
      if (!was_built) engine_ = Engine{};  // as before: no state
      throw;
    }
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

  bool built() const {
    return std::visit([](const auto& opt) { return opt != nullptr; }, engine_);
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
      validate(out.back(), "group" + std::to_string(g));
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
        names.push_back("param" + std::to_string(j));
      }
      opt->add_group(shapes, options[g], "group" + std::to_string(g), names);
    }
    if (fresh) engine_ = std::move(fresh);
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
    bool complete = true;              // every parameter of every group has one
    for (std::size_t g = 0; g < groups; ++g) {
      params[g].clear();
      grads[g].clear();
      for (const auto& p : param_groups_[g].params()) {
        if (!p.grad().defined()) {
          complete = false;
          continue;
        }
        params[g].emplace_back(data_of<Scalar>(p), p.numel(), 1);
        grads[g].emplace_back(data_of<Scalar>(p.grad()), p.numel(), 1);
      }
      if (!params[g].empty()) stepped.push_back(g);
    }
    if (complete) {
      opt.step(params, grads);  // the usual case: zero-copy, one fused pass per group
    } else if (!stepped.empty()) {
      step_groups(opt, stepped, params, grads);
    }
    for (const std::size_t g : stepped) bump_versions(g);
  }

  // Steps the listed groups only (each with the parameters in params[g],
  // which must be those with gradients, in order) through a temporary adamx
  // optimizer holding a copy of their state, then writes that state back.
  template <class Scalar>
  void step_groups(adamx::Optimizer<Scalar, Flavour>& opt, const std::vector<std::size_t>& which,
                   const std::vector<std::vector<TensorRef<Scalar>>>& params,
                   const std::vector<std::vector<ConstTensorRef<Scalar>>>& grads) {
    using Engine1 = adamx::Optimizer<Scalar, Flavour>;
    using State = typename Engine1::State;
    Engine1 temp;
    temp.set_threads(threads_);
    std::vector<State> sub;
    std::vector<std::vector<TensorRef<Scalar>>> sub_params;
    std::vector<std::vector<ConstTensorRef<Scalar>>> sub_grads;
    std::vector<std::vector<std::size_t>> kept;  // per listed group, the tensor indices stepped
    for (const std::size_t g : which) {
      const State& own = opt.state(g);
      State s = own.without_tensors();
      std::vector<std::size_t> indices;
      std::vector<ConstTensorRef<Scalar>> shapes;
      std::vector<std::string> names;
      const auto& ps = param_groups_[g].params();
      for (std::size_t j = 0; j < ps.size(); ++j) {
        if (!ps[j].grad().defined()) continue;
        indices.push_back(j);
        s.tensors.push_back(own.tensors[j]);
        shapes.emplace_back(data_of<Scalar>(ps[j]), ps[j].numel(), 1);
        names.push_back(own.tensors[j].name);
      }
      temp.add_group(shapes, own.options, own.name, names);
      sub.push_back(std::move(s));
      sub_params.push_back(params[g]);
      sub_grads.push_back(grads[g]);
      kept.push_back(std::move(indices));
    }
    temp.restore(std::move(sub));
    temp.step(sub_params, sub_grads);
    // Write back: the whole state with the stepped groups replaced.
    std::vector<State> all = opt.state();
    for (std::size_t k = 0; k < which.size(); ++k) {
      const State& stepped = temp.state(k);
      State& target = all[which[k]];
      target.t = stepped.t;
      target.gamma = stepped.gamma;
      target.h = stepped.h;
      for (std::size_t i = 0; i < kept[k].size(); ++i)
        target.tensors[kept[k][i]] = stepped.tensors[i];
    }
    opt.restore(std::move(all));
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
  std::tuple<ParamLists<float>, ParamLists<double>, ParamLists<Eigen::bfloat16>,
             ParamLists<Eigen::half>>
      param_lists_;
  std::tuple<GradLists<float>, GradLists<double>, GradLists<Eigen::bfloat16>,
             GradLists<Eigen::half>>
      grad_lists_;
};

/// Adam with libtorch's semantics (L2 weight decay), stepped by adamx.
using Adam = BasicOptimizer<flavour::Adam>;
/// AdamW (decoupled weight decay, λ = 1e-2 by default), stepped by adamx.
using AdamW = BasicOptimizer<flavour::AdamW>;
/// AdamX: Adam with a per-group γ scaling the second moment (β3 = 0.99 by default).
using AdamX = BasicOptimizer<flavour::AdamX>;

}  // namespace torch_optim
}  // namespace adamx
