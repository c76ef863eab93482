// adamx without file I/O: the optimizers (Adam, AdamW, AdamX, RAdam, AdaBound,
// AdaMod), learning-rate schedules and gradient clipping.
//
//   #include <adamx/core.hpp>
//   adamx::AdamX<float> opt;
//
// Nothing included from here reaches <filesystem> or <fstream> (the test
// unit.core_without_file_io checks it): a translation unit that only steps
// does not compile the checkpoint code. adamx/adamx.hpp is this header plus
// checkpoints (checkpoint.hpp, run_checkpoint.hpp).
#pragma once

#include "adamx/clip.hpp"
#include "adamx/correction.hpp"
#include "adamx/errors.hpp"
#include "adamx/optimizers.hpp"
#include "adamx/options.hpp"
#include "adamx/reduce_on_plateau.hpp"
#include "adamx/report.hpp"
#include "adamx/schedule.hpp"
#include "adamx/schedule_compose.hpp"
#include "adamx/schedule_cycle.hpp"
#include "adamx/schedule_factor.hpp"
#include "adamx/schedule_state.hpp"
#include "adamx/state.hpp"
#include "adamx/tensor_ref.hpp"
#include "adamx/version.hpp"
