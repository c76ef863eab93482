// Every update rule of the library, one file each (include/adamx/rules/).
// The driver (optimizer.hpp) and everything built on it are written against
// the rule interface (docs/design.md, "Update rules") and name none of them.
#pragma once

#include "adamx/rules/adabound.hpp"
#include "adamx/rules/adam.hpp"
#include "adamx/rules/adamod.hpp"
#include "adamx/rules/radam.hpp"

/// Every rule above, by its name in adamx::rules: expands X(Name) once per
/// rule. Several optimizers may share a rule (Adam, AdamW and AdamX share
/// rules::Adam), so this list, not ADAMX_FOR_EACH_OPTIMIZER, says which
/// element passes exist (separate_kernels.hpp defines each once).
#define ADAMX_FOR_EACH_RULE(X) X(Adam) X(RAdam) X(AdaBound) X(AdaMod)
