// study_torch.cpp - the optimizer study's neural-network tasks, written with
// libtorch and stepped through adamx's libtorch adapter (study_torch.hpp).
// Run by scripts/results; see study_main.hpp for the command line.
#include <torch/torch.h>

#include "study_main.hpp"
#include "study_torch.hpp"
#include "task_cartpole.hpp"
#include "task_char_lm.hpp"
#include "task_fashion_cnn.hpp"
#include "task_gan.hpp"
#include "task_transformer.hpp"

int main(int argc, char** argv) {
  // One thread per process: scripts/results runs two tasks at once on the
  // two-core machine, and one thread keeps every run's arithmetic the same.
  torch::set_num_threads(1);
  const std::vector<study::TaskEntry> tasks = {study::char_gru_task(),        study::transformer_lm_task(),
                                               study::cartpole_reinforce_task(), study::gan_8gaussians_task(),
                                               study::fashion_cnn_b8_task(),     study::fashion_cnn_b128_task()};
  return study::study_main(argc, argv, "study_torch", tasks);
}
