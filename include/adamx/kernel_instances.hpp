// The element passes of every listed rule (ADAMX_FOR_EACH_RULE) for every
// parameter type, defined: include this in exactly one TU of a program whose
// other TUs define ADAMX_SEPARATE_KERNELS (separate_kernels.hpp), compiled
// with the same flags as they are. To spread the work over several TUs (one
// per core), include it in one TU per parameter type instead, each defining
// ADAMX_KERNEL_INSTANCES_PARAM as that type (float, double, Eigen::bfloat16,
// Eigen::half) first: every instance is then defined in exactly one of them.
#pragma once

#include <type_traits>

#include "adamx/abi.hpp"
#include "adamx/optimizers.hpp"
#include "adamx/separate_kernels.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// Every optimizer's rule must be listed, or its passes would be declared
// nowhere and compiled in every TU again (silently slow, not wrong).
template <class Rule>
constexpr bool rule_is_listed() {
#define ADAMX_IS_RULE(Name) std::is_same<Rule, rules::Name>::value ||
  return ADAMX_FOR_EACH_RULE(ADAMX_IS_RULE) false;
#undef ADAMX_IS_RULE
}
#define ADAMX_RULE_IS_LISTED(Name)                                           \
  static_assert(rule_is_listed<flavour::Name::Rule>(),                       \
                "adamx: the rule of optimizer " #Name " is missing from ADAMX_FOR_EACH_RULE (rules.hpp)");
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_RULE_IS_LISTED)
#undef ADAMX_RULE_IS_LISTED

#ifdef ADAMX_KERNEL_INSTANCES_PARAM
#define ADAMX_DEFINE_KERNEL_PASSES(Name) ADAMX_KERNEL_PASSES(template, rules::Name, ADAMX_KERNEL_INSTANCES_PARAM)
#else
#define ADAMX_DEFINE_KERNEL_PASSES(Name) ADAMX_KERNEL_PASSES_EVERY_PARAM(template, rules::Name)
#endif
ADAMX_FOR_EACH_RULE(ADAMX_DEFINE_KERNEL_PASSES)
#undef ADAMX_DEFINE_KERNEL_PASSES

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
