// libFuzzer target for adamx::load_checkpoint (docs/fuzzing.md). It is built
// twice: as shipped, and with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which
// skips the checksum comparisons so that mutations reach the header parser
// and the validation behind the checksums. Each input
// is loaded into three optimizers. The loader may accept the input or throw
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

template <class Model>
void try_load(Model& model, const std::string& bytes) {
  const auto before = model.opt.state();
  std::istringstream in(bytes, std::ios::binary);
  try {
    adamx::load_checkpoint(model.opt, in);
  } catch (const adamx::CheckpointError&) {
    if (!(model.opt.state() == before)) finding("a refused checkpoint changed the optimizer");
    return;
  }
  // Accepted: the state must be one restore() would accept, and saving and
  // loading it again must give it back bitwise.
  for (const auto& g : model.opt.state()) {
    try {
      model.opt.check_values(g);
    } catch (const std::invalid_argument&) {
      finding("an accepted checkpoint holds invalid values");
    }
  }
  const auto accepted = model.opt.state();
  std::stringstream again(std::ios::in | std::ios::out | std::ios::binary);
  adamx::save_checkpoint(model.opt, again);
  adamx::load_checkpoint(model.opt, again);
  if (!(model.opt.state() == accepted)) finding("an accepted checkpoint does not round-trip");
  // Back to the fixed starting state, so every input meets the same optimizer.
  model.opt.restore(before);
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
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try_load(adamx_model, bytes);
  try_load(adam_model, bytes);
  try_load(adamod_model, bytes);
  return 0;
}
