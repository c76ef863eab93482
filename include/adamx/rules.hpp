// Every update rule of the library, one file each (include/adamx/rules/).
// The driver (optimizer.hpp) and everything built on it are written against
// the rule interface (docs/design.md, "Update rules") and name none of them.
#pragma once

#include "adamx/rules/adabound.hpp"
#include "adamx/rules/adam.hpp"
#include "adamx/rules/adamod.hpp"
#include "adamx/rules/radam.hpp"
