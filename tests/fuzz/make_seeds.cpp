// Writes the checkpoint fuzzer's seed corpus into the directory given as the
// first argument: valid checkpoints of the three fuzzed optimizers at a few step
// counts, two shard files, two run checkpoints, and two short invalid inputs (empty, magic only). Creates that
// directory and the fuzzers' working corpus directories (the other arguments).
#include "fuzz_model.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

namespace {

template <class Model>
bool write_seed(const std::string& directory, const std::string& name, int steps) {
  Model model;
  model.train(steps);
  std::ofstream out(directory + "/" + name, std::ios::binary | std::ios::trunc);
  adamx::save_checkpoint(model.opt, out);
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " <seed directory> [<corpus directory>...]\n";
    return 2;
  }
  const std::string directory = argv[1];
  for (int i = 1; i < argc; ++i) std::filesystem::create_directories(argv[i]);
  bool ok = true;
  for (int steps : {0, 1, 5}) {
    ok = write_seed<adamx_fuzz::AdamXModel>(directory, "adamx_float_" + std::to_string(steps), steps) && ok;
    ok = write_seed<adamx_fuzz::AdamModel>(directory, "adam_double_" + std::to_string(steps), steps) && ok;
    ok = write_seed<adamx_fuzz::AdaModModel>(directory, "adamod_float_" + std::to_string(steps), steps) && ok;
  }
  for (int steps : {0, 3}) {
    adamx_fuzz::ShardModel shard(steps);
    std::ofstream out(directory + "/shard_adamx_float_" + std::to_string(steps), std::ios::binary | std::ios::trunc);
    adamx::save_shard_checkpoint(shard.opt, shard.layout, 0, out);
    ok = static_cast<bool>(out) && ok;
  }
  for (int steps : {0, 4}) {
    adamx_fuzz::RunModel run;
    run.train(steps);
    std::ofstream out(directory + "/run_adamx_float_" + std::to_string(steps), std::ios::binary | std::ios::trunc);
    run.save(out);
    ok = static_cast<bool>(out) && ok;
  }
  std::ofstream(directory + "/empty", std::ios::binary | std::ios::trunc);
  std::ofstream(directory + "/magic_only", std::ios::binary | std::ios::trunc) << "ADAMXCKP";
  if (!ok) std::cerr << "make_seeds: could not write every seed to " << directory << "\n";
  return ok ? 0 : 1;
}
