// Opt-in: the element passes compiled once for the whole program instead of
// in every translation unit that steps an optimizer.
//
// Each TU that instantiates Optimizer<Scalar, flavour>::step also
// instantiates and optimises the passes of kernel.hpp (fused_block,
// squared_norm_block, gradient_within_safe_bound_block) for that rule and
// parameter type: most of the compile time of a TU that steps many
// optimizers. A program with many such TUs may define ADAMX_SEPARATE_KERNELS
// in all of them (e.g. target_compile_definitions) and include
// adamx/kernel_instances.hpp in exactly one more TU, compiled with the same
// flags: the passes of every listed rule (ADAMX_FOR_EACH_RULE, rules.hpp) for
// every parameter type are then only declared here (explicit instantiation
// declarations) and defined there (explicit instantiation definitions). The
// code of the passes, and so every result, is the same; only where it is
// compiled changes. Without the macro (the default) nothing here is
// declared and the library stays header-only. A rule outside the list (one
// declared by the program itself) is instantiated where it is used, as
// always. docs/design.md, "Compiling the passes once".
#pragma once

#include <Eigen/Core>

#include "adamx/abi.hpp"
#include "adamx/kernel.hpp"
#include "adamx/optimizer.hpp"
#include "adamx/rules.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// The argument types of the passes for one rule and parameter type, as the
// driver (optimizer.hpp) calls them.
template <class Rule, class Param>
using KernelCoefficients = typename Rule::template Coefficients<typename state_scalar<Param>::type>;
template <class Rule, class Param>
using KernelArrays = TensorArrays<Param, typename state_scalar<Param>::type, Rule::kSlots>;

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx

// The driver's passes of Rule (a type in adamx::rules) over parameters of
// type Param, for each instruction set compiled (kernel.hpp, isa.hpp), each
// preceded by KIND: `extern template` declares the instances, `template`
// defines them. Used at namespace adamx::detail scope.
#define ADAMX_KERNEL_PASSES_OF_SET(KIND, Set, Rule, Param)                                                        \
  KIND double Set::fused_block<Rule>(const KernelCoefficients<Rule, Param>&, KernelArrays<Rule, Param>, Index,      \
                                     KernelArrays<Rule, Param>);                                                 \
  KIND double Set::squared_norm_block<Rule>(const KernelCoefficients<Rule, Param>&, KernelArrays<Rule, Param>,      \
                                            Index, KernelArrays<Rule, Param>);                                   \
  KIND bool Set::gradient_within_safe_bound_block<Rule>(const KernelCoefficients<Rule, Param>&,                    \
                                                        KernelArrays<Rule, Param>, Index, KernelArrays<Rule, Param>);
#if ADAMX_DISPATCH
#define ADAMX_KERNEL_PASSES(KIND, Rule, Param)                \
  ADAMX_KERNEL_PASSES_OF_SET(KIND, isa_baseline, Rule, Param) \
  ADAMX_KERNEL_PASSES_OF_SET(KIND, isa_avx2, Rule, Param)     \
  ADAMX_KERNEL_PASSES_OF_SET(KIND, isa_avx512, Rule, Param)
#else
#define ADAMX_KERNEL_PASSES(KIND, Rule, Param) ADAMX_KERNEL_PASSES_OF_SET(KIND, isa_baseline, Rule, Param)
#endif

// The same for every parameter type an optimizer accepts.
#define ADAMX_KERNEL_PASSES_EVERY_PARAM(KIND, Rule)    \
  ADAMX_KERNEL_PASSES(KIND, Rule, float)               \
  ADAMX_KERNEL_PASSES(KIND, Rule, double)              \
  ADAMX_KERNEL_PASSES(KIND, Rule, Eigen::bfloat16)     \
  ADAMX_KERNEL_PASSES(KIND, Rule, Eigen::half)

#ifdef ADAMX_SEPARATE_KERNELS
ADAMX_NAMESPACE_BEGIN
namespace detail {
#define ADAMX_EXTERN_KERNEL_PASSES(Name) ADAMX_KERNEL_PASSES_EVERY_PARAM(extern template, rules::Name)
ADAMX_FOR_EACH_RULE(ADAMX_EXTERN_KERNEL_PASSES)
#undef ADAMX_EXTERN_KERNEL_PASSES
}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
#endif
