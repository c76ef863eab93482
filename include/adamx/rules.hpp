// Every update rule of the library, one file each (include/adamx/rules/).
// The driver (optimizer.hpp) and everything built on it are written against
// the rule interface (docs/design.md, "Update rules") and name none of them.
#pragma once

#include "adamx/rules/adabound.hpp"
#include "adamx/rules/adam.hpp"
#include "adamx/rules/adamod.hpp"
#include "adamx/rules/adan.hpp"
#include "adamx/rules/lion.hpp"
#include "adamx/rules/muon.hpp"
#include "adamx/rules/radam.hpp"
#include "adamx/rules/schedule_free_adamw.hpp"

/// Every optimizer of the library, by name: expands X(Name) once per
/// optimizer, where Name is both its alias (adamx::Name<Scalar>,
/// optimizers.hpp) and its flavour (adamx::flavour::Name, in its rule file).
/// This file is the one place an optimizer is registered (its #include, its
/// entry here and, if its rule is new, the rule's entry below): the aliases, the sharded driver's aliases (adamx::mpi::Name),
/// the libtorch adapter's, the checkpoint conversions (which must recognise
/// every optimizer's files), the benchmarks and the comparison runner are all
/// made from it, so an optimizer added here is offered everywhere.
#define ADAMX_FOR_EACH_OPTIMIZER(X) X(Adam) X(AdamW) X(AdamX) X(RAdam) X(AdaBound) X(AdaMod) X(Lion) X(Adan) X(ScheduleFreeAdamW) X(Muon)

/// Every rule above, by its name in adamx::rules: expands X(Name) once per
/// rule. Several optimizers may share a rule (Adam, AdamW and AdamX share
/// rules::Adam), so this list, not ADAMX_FOR_EACH_OPTIMIZER, says which
/// element passes exist (separate_kernels.hpp defines each once). An
/// optimizer with a rule of its own adds the rule here too; if it does not,
/// kernel_instances.hpp refuses to compile and names it.
#define ADAMX_FOR_EACH_RULE(X) X(Adam) X(RAdam) X(AdaBound) X(AdaMod) X(Lion) X(Adan) X(ScheduleFreeAdamW) X(Muon)
