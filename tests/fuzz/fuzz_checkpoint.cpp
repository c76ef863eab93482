// libFuzzer target for adamx::load_checkpoint, adamx::load_shard_checkpoint
// and adamx::load_run (docs/fuzzing.md). It is built
// twice: as shipped, and with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which
// skips the checksum comparisons so that mutations reach the header parser
// and the validation behind the checksums. Each input
// is loaded into three optimizers as a checkpoint, into a shard optimizer
// as a shard file and into a training run as a run checkpoint. The loader may accept the input or throw
// adamx::CheckpointError; anything else is a finding: another exception type
// (uncaught, so libFuzzer reports it), a sanitizer report, a crash, a hang,
// an allocation beyond -rss_limit_mb, a refused input that changed the
// optimizer, or an accepted one whose state breaks the invariants a
// checkpoint must guarantee.
#include "fuzz_model.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "adamx fuzz finding: %s\n", what);
  std::abort();
}

// Loads `bytes` into `opt` with load(opt, stream); save(opt, stream) is the
// matching writer, for the round trip.
template <class Opt, class Load, class Save>
void try_load(Opt& opt, const std::string& bytes, Load load, Save save) {
  const auto before = opt.state();
  std::istringstream in(bytes, std::ios::binary);
  try {
    load(opt, in);
  } catch (const adamx::CheckpointError&) {
    if (!(opt.state() == before)) finding("a refused checkpoint changed the optimizer");
    return;
  }
  // Accepted: the state must be one restore() would accept, and saving and
  // loading it again must give it back bitwise.
  for (const auto& g : opt.state()) {
    try {
      opt.check_values(g);
    } catch (const std::invalid_argument&) {
      finding("an accepted checkpoint holds invalid values");
    }
  }
  const auto accepted = opt.state();
  std::stringstream again(std::ios::in | std::ios::out | std::ios::binary);
  save(opt, again);
  load(opt, again);
  if (!(opt.state() == accepted)) finding("an accepted checkpoint does not round-trip");
  // Back to the fixed starting state, so every input meets the same optimizer.
  opt.restore(before);
}

template <class Model>
void try_load(Model& model, const std::string& bytes) {
  try_load(
      model.opt, bytes, [](auto& opt, std::istream& in) { adamx::load_checkpoint(opt, in); },
      [](const auto& opt, std::ostream& out) { adamx::save_checkpoint(opt, out); });
}

// A shard file: its record, then rank 0's checkpoint (sharded_checkpoint.hpp).
void try_load_shard(adamx_fuzz::ShardModel& model, const std::string& bytes) {
  try_load(
      model.opt, bytes,
      [&](auto& opt, std::istream& in) { adamx::load_shard_checkpoint(opt, model.layout, 0, in); },
      [&](const auto& opt, std::ostream& out) { adamx::save_shard_checkpoint(opt, model.layout, 0, out); });
}

// A run checkpoint. The run's own save_run bytes are its snapshot: they hold
// the parameters, the optimizer state, both schedules' states and the
// counters bit for bit.
void try_load_run(adamx_fuzz::RunModel& run, const std::string& bytes) {
  const auto snapshot = [&] {
    std::ostringstream out(std::ios::binary);
    run.save(out);
    return out.str();
  };
  const std::string before = snapshot();
  std::istringstream in(bytes, std::ios::binary);
  try {
    run.load(in);
  } catch (const adamx::CheckpointError&) {
    if (snapshot() != before) finding("a refused run checkpoint changed the run");
    return;
  }
  for (const auto& g : run.model.opt.state()) {
    try {
      run.model.opt.check_values(g);
    } catch (const std::invalid_argument&) {
      finding("an accepted run checkpoint holds invalid optimizer values");
    }
  }
  const std::string accepted = snapshot();
  std::istringstream again(accepted, std::ios::binary);
  run.load(again);
  if (snapshot() != accepted) finding("an accepted run checkpoint does not round-trip");
  std::istringstream back(before, std::ios::binary);
  run.load(back);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static adamx_fuzz::AdamXModel adamx_model = [] {
    adamx_fuzz::AdamXModel m;
    m.train(3);
    return m;
  }();
  static adamx_fuzz::AdamModel adam_model = [] {
    adamx_fuzz::AdamModel m;
    m.train(2);
    return m;
  }();
  static adamx_fuzz::AdaModModel adamod_model = [] {
    adamx_fuzz::AdaModModel m;
    m.train(2);
    return m;
  }();
  static adamx_fuzz::ShardModel shard_model;
  static adamx_fuzz::RunModel run_model = [] {
    adamx_fuzz::RunModel r;
    r.train(4);
    return r;
  }();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try_load(adamx_model, bytes);
  try_load(adam_model, bytes);
  try_load(adamod_model, bytes);
  try_load_shard(shard_model, bytes);
  try_load_run(run_model, bytes);
  return 0;
}
