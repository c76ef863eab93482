// adamx: Adam, AdamW and AdamX (and the baselines RAdam, AdaBound, AdaMod)
// for Eigen, header-only. The one include.
//
//   #include <adamx/adamx.hpp>
//   adamx::AdamX<float> opt;
//   opt.add_group({W, b});
//   opt.step({{W, b}}, {{dW, db}});
//
// AdamX is Adam whose second moment scales g² by a per-group factor γ that
// follows the group's squared gradient norm against its own history; see
// docs/design.md for the equations and every decision behind them.
//
// This header is adamx/core.hpp (optimizers, schedules, clipping) plus
// checkpoint files (checkpoint.hpp, run_checkpoint.hpp). A translation unit
// that saves nothing can include adamx/core.hpp instead and compile faster:
// core.hpp reaches neither <filesystem> nor <fstream>.
#pragma once

#include "adamx/checkpoint.hpp"
#include "adamx/core.hpp"
#include "adamx/run_checkpoint.hpp"
