// Results do not change unnoticed: every optimizer over every parameter type,
// under a matrix of options and gradient regimes, is stepped deterministically
// (recorded_model.hpp) and a digest (FNV-1a 64) of the exact bytes of every
// parameter and of the whole state (m, v, v_max, step_avg, t, γ, h) is taken
// after steps 1, 2, 3, 7, 10 and 40. tests/data/bitwise_history.txt holds the
// digests recorded from an earlier build; every one must be reproduced, and
// the file must list exactly the cases this test runs. Every instruction
// set this machine runs (isa.hpp) must reproduce them, on one thread and on
// two.
//
// ADAMX_WRITE_BITWISE_HISTORY=<path> writes the file instead of comparing:
// doing that accepts a change of results (tests/data/README.md).
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "recorded_model.hpp"
#include "test_util.hpp"

namespace {

using recorded_model::Fnv1a64;
using recorded_model::GroupSpec;
using recorded_model::Regime;

// The one place that reads the state: if its plain-data fields are renamed,
// only this function changes (and the digests must not).
template <class State>
void hash_group_state(Fnv1a64& fnv, const State& g) {
  fnv.add(static_cast<std::int64_t>(g.t));
  // γ and h as the Adam family keeps them; a rule without them (Lion) hashes
  // the values they start from, so that every recorded digest stays valid.
  fnv.add(adamx::group_scalar_or(g.scalars(), "gamma", 1.0));
  fnv.add(adamx::group_scalar_or(g.scalars(), "h", 0.0));
  // The slots in the order the digests were recorded with, a slot the rule
  // does not have (Lion's v, Adam's step_avg) hashed as the empty array it
  // was when every state had the four; then, in the rule's order, the slots
  // of a rule that has others (Adan's n and prev_grad).
  constexpr const char* kFirstSlots[] = {"m", "v", "v_max", "step_avg"};
  for (const auto& ts : g.tensors) {
    for (const char* name : kFirstSlots) {
      const auto* slot = adamx_test::slot_named(ts, name);
      fnv.add_array(slot ? slot->data() : nullptr, slot ? slot->size() : 0);
    }
    using TensorState = std::decay_t<decltype(ts)>;
    for (int k = 0; k < TensorState::kSlots; ++k)
      if (std::none_of(std::begin(kFirstSlots), std::end(kFirstSlots),
                       [&](const char* name) { return std::strcmp(name, TensorState::slot_names[k]) == 0; }))
        fnv.add_array(ts.slot(k).data(), ts.slot(k).size());
  }
}

constexpr int kSteps = 40;
const std::vector<int> kRecordedSteps = {1, 2, 3, 7, 10, 40};
constexpr int kNonFiniteStep = 7;            // a NaN or Inf enters group 0's gradient
constexpr int kZeroFrom = 11, kZeroTo = 13;  // group 1's whole gradient is exactly 0
constexpr int kLrChangeStep = 20;            // group 0's lr changes before this step

enum class Variant {
  defaults,
  amsgrad,
  maximize_l2,    // maximize, with L2 weight decay
  decoupled,      // decoupled weight decay
  betas_eps,      // non-default β1, β2, ε
  gamma_rates,    // AdamX: non-default β3 and β_n
  bounds,         // AdaBound: non-default final_lr and bound_speed
  step_average,   // AdaMod: non-default beta_step
  skip_nan,       // NonFinitePolicy::skip, a NaN at kNonFiniteStep
  propagate_inf,  // NonFinitePolicy::propagate, an Inf at kNonFiniteStep
  wide,           // defaults, group 1 large enough to be stepped on threads
  betas_decay_maximize,  // non-default β1, β2, weight decay and maximize, for an
                         // optimizer without a decay mode or ε (Lion), where
                         // maximize_l2, decoupled and betas_eps do not apply
  prox_decay,     // Adan: non-default β3, weight decay by its proximal division
  no_prox_decay,  // Adan: weight decay and maximize, no_prox
  warmup_averaging,  // Schedule-Free AdamW: warm-up, averaging powers, weight decay
};

const std::vector<std::pair<Variant, const char*>> kVariants = {
    {Variant::defaults, "defaults"},       {Variant::amsgrad, "amsgrad"},
    {Variant::maximize_l2, "maximize_l2"}, {Variant::decoupled, "decoupled"},
    {Variant::betas_eps, "betas_eps"},     {Variant::gamma_rates, "gamma_rates"},
    {Variant::bounds, "bounds"},           {Variant::step_average, "step_average"},
    {Variant::skip_nan, "skip_nan"},       {Variant::propagate_inf, "propagate_inf"},
    {Variant::wide, "wide"},               {Variant::betas_decay_maximize, "betas_decay_maximize"},
    {Variant::prox_decay, "prox_decay"},   {Variant::no_prox_decay, "no_prox_decay"},
    {Variant::warmup_averaging, "warmup_averaging"},
};

// Whether a variant applies to Opt: the γ, bound and step-average variants to
// the one optimizer they are about; the others where Opt has every option the
// variant sets (Lion has no AMSGrad, decay mode or ε).
template <class Opt>
bool applies(Variant variant) {
  const std::string name = Opt::name();
  const auto has = [](const char* option) { return adamx_test::declares_option<typename Opt::Options>(option); };
  if (variant == Variant::gamma_rates) return name == "AdamX";
  if (variant == Variant::bounds) return name == "AdaBound";
  if (variant == Variant::step_average) return name == "AdaMod";
  if (variant == Variant::prox_decay || variant == Variant::no_prox_decay) return has("no_prox");
  if (variant == Variant::warmup_averaging) return has("warmup_steps");
  if (variant == Variant::amsgrad) return has("amsgrad");
  if (variant == Variant::maximize_l2 || variant == Variant::decoupled) return has("decay_mode");
  if (variant == Variant::betas_eps) return has("eps");
  if (variant == Variant::betas_decay_maximize) return !has("decay_mode") && !has("eps");
  return true;
}

// Group 0: tensors of 1, 7, 9 and 5 elements and a 3×5 row-major matrix;
// group 1: 4096 + 13 elements (one block and a ragged tail) and a 20×300
// column-major matrix, plus, for the wide variant, 22664 elements, which
// bring the group to 32773 elements, just past the 2^15 from which steps use
// threads (adamx/parallel.hpp).
std::vector<GroupSpec> model_groups(Variant variant) {
  std::vector<GroupSpec> groups = {
      {"g0",
       {{"one", 1, 1, false, Regime::ordinary},
        {"seven", 7, 1, false, Regime::tiny},
        {"nine", 9, 1, false, Regime::large},
        {"zeros", 5, 1, false, Regime::zero},
        {"rows", 3, 5, true, Regime::sparse}}},
      {"g1", {{"block_tail", 4096 + 13, 1, false, Regime::ordinary}, {"cols", 20, 300, false, Regime::ordinary}}},
  };
  if (variant == Variant::wide) groups[1].tensors.push_back({"wide", 22664, 1, false, Regime::sparse});
  return groups;
}

// Whether an options type has Adan's no_prox (and so its β3 is Adan's).
template <class Options, class = void>
struct has_no_prox : std::false_type {};
template <class Options>
struct has_no_prox<Options, std::void_t<decltype(&Options::no_prox)>> : std::true_type {};

// Whether an options type has Schedule-Free AdamW's warmup_steps.
template <class Options, class = void>
struct has_warmup_steps : std::false_type {};
template <class Options>
struct has_warmup_steps<Options, std::void_t<decltype(&Options::warmup_steps)>> : std::true_type {};

// Sets the variant's options through the typed setters (every group).
template <class Opt>
void configure(Opt& opt, Variant variant) {
  opt.set_lr(1, 3e-3);  // the groups differ in lr in every case
  for (std::size_t g = 0; g < opt.num_groups(); ++g) {
    switch (variant) {
      case Variant::defaults:
      case Variant::wide: break;
      // The Adam family's setters, on the optimizers that have them (applies()).
      case Variant::amsgrad:
        EXPECT_TRUE(adamx_test::call_if_declared(
            opt, [&](auto& o) -> decltype(o.set_amsgrad(g, true)) { o.set_amsgrad(g, true); }));
        break;
      case Variant::maximize_l2:
        opt.set_maximize(g, true);
        EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_decay_mode(g, adamx::WeightDecayMode::l2)) {
          o.set_decay_mode(g, adamx::WeightDecayMode::l2);
        }));
        opt.set_weight_decay(g, 1e-2);
        break;
      case Variant::decoupled:
        EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_decay_mode(g, adamx::WeightDecayMode::l2)) {
          o.set_decay_mode(g, adamx::WeightDecayMode::decoupled);
        }));
        opt.set_weight_decay(g, 5e-2);
        break;
      case Variant::betas_eps:
        opt.set_betas(g, 0.8, 0.99);
        EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_eps(g, 0.0)) { o.set_eps(g, 1e-6); }));
        break;
      case Variant::gamma_rates:
        EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_beta_norm(g, 0.0)) {
          o.set_beta3(g, 0.9);
          o.set_beta_norm(g, 0.95);
        }));
        break;
      case Variant::betas_decay_maximize:
        opt.set_betas(g, 0.8, 0.95);
        opt.set_weight_decay(g, 0.5);  // Lion's λ is ~10× AdamW's for the same effective decay
        opt.set_maximize(g, true);
        break;
      case Variant::bounds:  // AdaBound's own setters (only it has them)
        EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_bound_speed(g, 0.0)) {
          o.set_final_lr(g, 0.05);
          o.set_bound_speed(g, 1e-2);
        }));
        break;
      case Variant::step_average:  // AdaMod's own setter
        EXPECT_TRUE(adamx_test::call_if_declared(
            opt, [&](auto& o) -> decltype(o.set_beta_step(g, 0.0)) { o.set_beta_step(g, 0.9); }));
        break;
      case Variant::prox_decay:
      case Variant::no_prox_decay:  // Adan's own options (only it has them)
        if constexpr (has_no_prox<typename Opt::Options>::value) {
          using O = typename Opt::Options;
          if (variant == Variant::prox_decay) {
            opt.set(g, &O::beta3, 0.95);
            opt.set_weight_decay(g, 2e-2);
          } else {
            opt.set(g, &O::no_prox, true);
            opt.set_weight_decay(g, 2e-2);
            opt.set_maximize(g, true);
          }
        } else {
          ADD_FAILURE() << Opt::name() << " has no no_prox option";
        }
        break;
      case Variant::warmup_averaging:  // Schedule-Free AdamW's own options (only it has them)
        if constexpr (has_warmup_steps<typename Opt::Options>::value) {
          using O = typename Opt::Options;
          opt.set(g, &O::warmup_steps, 5.0);
          opt.set(g, &O::r, 1.0);
          opt.set(g, &O::weight_lr_power, 1.0);
          opt.set_weight_decay(g, 5e-2);
        } else {
          ADD_FAILURE() << Opt::name() << " has no warmup_steps option";
        }
        break;
      case Variant::skip_nan: opt.set_nonfinite(g, adamx::NonFinitePolicy::skip); break;
      case Variant::propagate_inf: opt.set_nonfinite(g, adamx::NonFinitePolicy::propagate); break;
    }
  }
}

// One case: an optimizer and its model, stepped one step at a time.
template <class Opt>
class CaseRun {
 public:
  using Scalar = typename Opt::scalar_type;

  CaseRun(Variant variant, int threads) : variant_(variant), model_(model_groups(variant), 20240611) {
    model_.add_groups(opt);
    configure(opt, variant);
    opt.set_threads(threads);
  }

  void step() {
    ++step_;
    if (step_ == kLrChangeStep) opt.set_lr(0, 5e-4);
    model_.draw_gradients();
    if (step_ == kNonFiniteStep && variant_ == Variant::skip_nan)
      model_.grad[0][2][3] = std::numeric_limits<Scalar>::quiet_NaN();
    if (step_ == kNonFiniteStep && variant_ == Variant::propagate_inf)
      model_.grad[0][2][3] = std::numeric_limits<Scalar>::infinity();
    if (step_ >= kZeroFrom && step_ <= kZeroTo)
      for (auto& tensor : model_.grad[1]) std::fill(tensor.begin(), tensor.end(), recorded_model::to_scalar<Scalar>(0.0));
    opt.step(model_.param_views(), model_.grad_views());
  }

  // The digest of every parameter's bytes and every group's state.
  std::uint64_t digest() const { return digest_of(opt.state()); }
  template <class States>
  std::uint64_t digest_of(const States& states) const {
    Fnv1a64 fnv;
    for (std::size_t g = 0; g < model_.theta.size(); ++g) {
      for (const auto& tensor : model_.theta[g]) fnv.add_array(tensor.data(), static_cast<Eigen::Index>(tensor.size()));
      hash_group_state(fnv, states.at(g));
    }
    return fnv.value();
  }

  recorded_model::Model<Scalar>& model() { return model_; }
  Opt opt;

 private:
  Variant variant_;
  recorded_model::Model<Scalar> model_;
  int step_ = 0;
};

struct Record {
  std::string name;  // "<optimizer>.<scalar>.<variant>"
  int step = 0;
  std::uint64_t digest = 0;
};

template <class Opt>
std::string case_name(const char* variant) {
  return std::string(Opt::name()) + "." + recorded_model::scalar_name<typename Opt::scalar_type>() + "." + variant;
}

// Runs every variant that applies to Opt on `threads` threads for `steps`
// steps (only the wide variant, whose group 1 is large enough to use them,
// when threads > 1).
template <class Opt>
void run_cases(int threads, int steps, std::vector<Record>& out) {
  for (const auto& [variant, variant_name] : kVariants) {
    if (!applies<Opt>(variant) || (threads > 1 && variant != Variant::wide)) continue;
    CaseRun<Opt> run(variant, threads);
    std::size_t next = 0;
    for (int step = 1; step <= steps; ++step) {
      run.step();
      if (next < kRecordedSteps.size() && kRecordedSteps[next] == step) {
        out.push_back({case_name<Opt>(variant_name), step, run.digest()});
        ++next;
      }
    }
  }
}

using AllOptimizers = std::tuple<
    adamx::Adam<float>, adamx::Adam<double>, adamx::Adam<Eigen::bfloat16>, adamx::Adam<Eigen::half>,
    adamx::AdamW<float>, adamx::AdamW<double>, adamx::AdamW<Eigen::bfloat16>, adamx::AdamW<Eigen::half>,
    adamx::AdamX<float>, adamx::AdamX<double>, adamx::AdamX<Eigen::bfloat16>, adamx::AdamX<Eigen::half>,
    adamx::RAdam<float>, adamx::RAdam<double>, adamx::RAdam<Eigen::bfloat16>, adamx::RAdam<Eigen::half>,
    adamx::AdaBound<float>, adamx::AdaBound<double>, adamx::AdaBound<Eigen::bfloat16>, adamx::AdaBound<Eigen::half>,
    adamx::AdaMod<float>, adamx::AdaMod<double>, adamx::AdaMod<Eigen::bfloat16>, adamx::AdaMod<Eigen::half>,
    adamx::Lion<float>, adamx::Lion<double>, adamx::Lion<Eigen::bfloat16>, adamx::Lion<Eigen::half>,
    adamx::Adan<float>, adamx::Adan<double>, adamx::Adan<Eigen::bfloat16>, adamx::Adan<Eigen::half>,
    adamx::ScheduleFreeAdamW<float>, adamx::ScheduleFreeAdamW<double>, adamx::ScheduleFreeAdamW<Eigen::bfloat16>,
    adamx::ScheduleFreeAdamW<Eigen::half>>;

template <class... Opts>
std::vector<Record> run_all(std::tuple<Opts...>*, int threads, int steps) {
  std::vector<Record> out;
  (run_cases<Opts>(threads, steps, out), ...);
  return out;
}
std::vector<Record> run_all(int threads, int steps = kSteps) {
  return run_all(static_cast<AllOptimizers*>(nullptr), threads, steps);
}

std::string hex(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::string history_path() { return std::string(ADAMX_TEST_DATA_DIR) + "/bitwise_history.txt"; }

// The recorded digests by (case, step); a malformed line fails the test.
std::map<std::pair<std::string, int>, std::string> read_history() {
  std::ifstream in(history_path());
  EXPECT_TRUE(in.is_open()) << "cannot open " << history_path();
  std::map<std::pair<std::string, int>, std::string> out;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, digest, extra;
    int step = 0;
    if (!(fields >> name >> step >> digest) || (fields >> extra) || digest.size() != 16) {
      ADD_FAILURE() << history_path() << ":" << number << ": malformed line '" << line << "'";
      continue;
    }
    EXPECT_TRUE(out.emplace(std::make_pair(name, step), digest).second)
        << history_path() << ":" << number << ": " << name << " step " << step << " recorded twice";
  }
  return out;
}

void write_history(const char* path, const std::vector<Record>& records) {
  std::ofstream out(path, std::ios::trunc);
  ASSERT_TRUE(out.is_open()) << "cannot write " << path;
  out << "# Digests (FNV-1a 64) of parameters and optimizer state, written by tests/test_bitwise_history.cpp\n"
      << "# with ADAMX_WRITE_BITWISE_HISTORY set; see tests/data/README.md. <case> <step> <digest>\n";
  for (const Record& r : records) out << r.name << ' ' << r.step << ' ' << hex(r.digest) << '\n';
  ASSERT_TRUE(out.good()) << "writing " << path << " failed";
}

// On every instruction set this machine runs (isa.hpp): the digests were
// recorded on one set, and every set must reproduce them bit for bit.
TEST(BitwiseHistory, EveryCaseReproducesItsRecordedDigests) {
  const adamx::InstructionSet before = adamx::instruction_set();
  if (const char* path = std::getenv("ADAMX_WRITE_BITWISE_HISTORY")) {
    const std::vector<Record> records = run_all(1);
    write_history(path, records);
    std::printf("wrote %zu digests to %s (instruction set %s)\n", records.size(), path,
                adamx::instruction_set_name(before));
    return;
  }
  const auto recorded = read_history();
  for (const adamx::InstructionSet set : adamx::supported_instruction_sets()) {
    SCOPED_TRACE(std::string("instruction set ") + adamx::instruction_set_name(set));
    adamx::set_instruction_set(set);
    const std::vector<Record> records = run_all(1);
    std::set<std::pair<std::string, int>> run;
    std::size_t mismatches = 0;
    for (const Record& r : records) {
      run.emplace(r.name, r.step);
      const auto found = recorded.find({r.name, r.step});
      if (found == recorded.end()) {
        ADD_FAILURE() << r.name << " step " << r.step << ": no recorded digest (a case the file does not list)";
      } else if (found->second != hex(r.digest)) {
        ++mismatches;
        ADD_FAILURE() << r.name << " step " << r.step << ": digest " << hex(r.digest) << ", recorded "
                      << found->second;
      }
    }
    for (const auto& entry : recorded)
      if (run.count(entry.first) == 0)
        ADD_FAILURE() << entry.first.first << " step " << entry.first.second
                      << ": recorded, but this test runs no such case";
    EXPECT_EQ(mismatches, 0u);
    std::printf("%s: %zu cases, %zu digests compared\n", adamx::instruction_set_name(set),
                records.size() / kRecordedSteps.size(), records.size());
  }
  adamx::set_instruction_set(before);
}

// The wide cases (group 1 above the size where steps use threads) on two
// threads give the recorded digests of one thread, over the first ten steps
// (digests after steps 1, 2, 3, 7 and 10): each step starts parallel
// regions, which cost milliseconds where OpenMP's spinning threads share a
// loaded machine, and more steps would test the same splitting again.
TEST(BitwiseHistory, TwoThreadsReproduceTheRecordedDigests) {
  ASSERT_TRUE(adamx::detail::kOpenMP) << "this test must be built with ADAMX_OPENMP";
  if (std::getenv("ADAMX_WRITE_BITWISE_HISTORY")) return;  // writing: nothing recorded to compare with
  Eigen::Index group_size = 0;
  const std::vector<GroupSpec> wide = model_groups(Variant::wide);
  for (const auto& tensor : wide[1].tensors) group_size += tensor.size();
  ASSERT_GE(group_size, adamx::detail::kMinParallelElements) << "the wide group would be stepped on one thread";
  const auto recorded = read_history();
  const adamx::InstructionSet before = adamx::instruction_set();
  for (const adamx::InstructionSet set : adamx::supported_instruction_sets()) {
    SCOPED_TRACE(std::string("instruction set ") + adamx::instruction_set_name(set));
    adamx::set_instruction_set(set);
    const std::vector<Record> records = run_all(2, 10);
    // Every optimizer and type, wide variant, 5 recorded steps.
    ASSERT_EQ(records.size(), std::tuple_size<AllOptimizers>::value * 5u);
    for (const Record& r : records) {
      const auto found = recorded.find({r.name, r.step});
      ASSERT_NE(found, recorded.end()) << r.name << " step " << r.step;
      EXPECT_EQ(hex(r.digest), found->second) << r.name << " step " << r.step << " on two threads";
    }
  }
  adamx::set_instruction_set(before);
}

// The comparison can fail: one bit of one parameter, or of one moment, changes
// the digest of a case away from the recorded one.
TEST(BitwiseHistory, OneFlippedBitChangesTheDigest) {
  if (std::getenv("ADAMX_WRITE_BITWISE_HISTORY")) return;
  const auto recorded = read_history();
  const auto expected = recorded.find({"AdamX.float.defaults", 1});
  ASSERT_NE(expected, recorded.end());
  CaseRun<adamx::AdamX<float>> run(Variant::defaults, 1);
  run.step();
  ASSERT_EQ(hex(run.digest()), expected->second);

  auto states = run.opt.state();
  states[1].tensors[0].v[4100] = std::nextafter(states[1].tensors[0].v[4100], 1.0f);  // the last bit of v
  EXPECT_NE(hex(run.digest_of(states)), expected->second);

  float& theta = run.model().theta[0][4][14];  // the last element of the row-major matrix
  std::uint32_t bits;
  std::memcpy(&bits, &theta, sizeof bits);
  bits ^= 1u << 7;
  std::memcpy(&theta, &bits, sizeof bits);
  EXPECT_NE(hex(run.digest()), expected->second);
}

}  // namespace
