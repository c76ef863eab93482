// Run checkpoints (include/adamx/run_checkpoint.hpp): parameters, optimizer,
// schedules and counters saved together. Resuming a run is exact for every
// optimizer and every schedule; the bytes follow docs/checkpoints.md; and
// every bad file or call is refused with everything (parameters, optimizer,
// schedules, counters, files) exactly as it was.
#include "checkpoint_layout.hpp"
#include "checkpoint_model.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

using adamx_test::CheckpointModel;
using adamx_test::Contains;

// ---- the schedules every test runs --------------------------------------------

// The metric ReduceLROnPlateau sees at step i: it improves for three steps,
// then stays, so with patience 2 and cooldown 2 the lr is cut at steps 6
// and 11 and the saves below fall inside a cooldown (after 8 steps) and
// among bad epochs (after 10).
double plateau_metric(std::int64_t step) { return 1.0 - 0.1 * static_cast<double>(std::min<std::int64_t>(step, 3)); }
adamx::PlateauOptions plateau_options() {
  adamx::PlateauOptions o;
  o.factor = 0.5;
  o.patience = 2;
  o.cooldown = 2;
  return o;
}

// One line per schedule: how the test constructs it (a run is resumed into a
// fresh one built the same way). A new schedule joins every test by adding
// a line here and its name to ScheduleCases.
struct Fixed { static adamx::FixedLR make() { return adamx::FixedLR(3e-3); } };
struct Step { static adamx::StepLR make() { return adamx::StepLR(3e-3, 3, 0.5); } };
struct Exponential { static adamx::ExponentialLR make() { return adamx::ExponentialLR(3e-3, 0.9); } };
struct Cosine { static adamx::CosineAnnealingLR make() { return adamx::CosineAnnealingLR(3e-3, 7, 1e-4); } };
struct WarmupCosine {
  static adamx::LinearWarmup<adamx::CosineAnnealingLR> make() { return {adamx::CosineAnnealingLR(3e-3, 6), 9, 0.25}; }
};
struct Plateau { static adamx::ReduceLROnPlateau make() { return adamx::ReduceLROnPlateau(3e-3, plateau_options()); } };
struct MultiStep { static adamx::MultiStepLR make() { return adamx::MultiStepLR(3e-3, {2, 5, 5, 13}, 0.5); } };
struct Constant { static adamx::ConstantLR make() { return adamx::ConstantLR(3e-3, 0.25, 11); } };
struct Linear { static adamx::LinearLR make() { return adamx::LinearLR(3e-3, 0.2, 0.9, 14); } };
struct Polynomial { static adamx::PolynomialLR make() { return adamx::PolynomialLR(3e-3, 15, 2.5); } };
// The callable is not saved: the resumed run passes the same one again.
struct Lambda {
  static adamx::LambdaLR make() {
    return adamx::LambdaLR(3e-3, [](std::int64_t e) { return 1.0 / (1.0 + 0.3 * static_cast<double>(e)); });
  }
};
// 2k <= 20 steps, so OneCycleLR's 24 steps are never exceeded.
struct OneCycle {
  static adamx::OneCycleLR make() {
    adamx::OneCycleOptions o;
    o.three_phase = true;
    o.anneal_strategy = adamx::OneCycleAnneal::linear;
    return adamx::OneCycleLR(3e-3, 24, o);
  }
};
struct Cyclic {
  static adamx::CyclicLR make() {
    adamx::CyclicOptions o;
    o.step_size_up = 3;
    o.step_size_down = 4;
    o.mode = adamx::CyclicMode::exp_range;
    o.gamma = 0.97;
    return adamx::CyclicLR(1e-4, 3e-3, o);
  }
};
struct Sequential {
  static adamx::SequentialLR<adamx::LinearLR, adamx::CosineAnnealingLR, adamx::StepLR> make() {
    return {{4, 12}, adamx::LinearLR(3e-3, 0.25, 1.0, 4), adamx::CosineAnnealingLR(3e-3, 8, 1e-4),
            adamx::StepLR(3e-3, 2, 0.7)};
  }
};
struct Chained {
  static adamx::ChainedScheduler<adamx::ConstantLR, adamx::ExponentialLR> make() {
    return adamx::ChainedScheduler<adamx::ConstantLR, adamx::ExponentialLR>(adamx::ConstantLR(3e-3, 0.5, 6),
                                                                           adamx::ExponentialLR(3e-3, 0.93));
  }
};
using ScheduleCases = std::tuple<Fixed, Step, Exponential, Cosine, WarmupCosine, Plateau, MultiStep, Constant,
                                 Linear, Polynomial, Lambda, OneCycle, Cyclic, Sequential, Chained>;

template <class Schedule, class = void>
struct metric_driven : std::false_type {};
template <class Schedule>
struct metric_driven<Schedule, std::void_t<decltype(std::declval<Schedule&>().step(0.0))>> : std::true_type {};

template <class Schedule>
void advance(Schedule& schedule, std::int64_t step) {
  if constexpr (metric_driven<Schedule>::value)
    schedule.step(plateau_metric(step));
  else
    schedule.step();
}

template <class... Cases, class Body>
void for_each_schedule(std::tuple<Cases...>*, Body&& body) {
  (body(Cases{}), ...);
}
template <class Body>
void for_each_schedule(Body&& body) {
  for_each_schedule(static_cast<ScheduleCases*>(nullptr), std::forward<Body>(body));
}

// ---- comparisons -------------------------------------------------------------

// Bitwise equality of two schedule states, naming the first difference.
::testing::AssertionResult SameScheduleState(const adamx::ScheduleState& a, const adamx::ScheduleState& b) {
  const auto same_fields = [](const auto& x, const auto& y) {
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i].first != y[i].first || std::memcmp(&x[i].second, &y[i].second, sizeof x[i].second) != 0)
        return false;
    return true;
  };
  if (a.kind != b.kind) return ::testing::AssertionFailure() << "kind " << a.kind << " vs " << b.kind;
  if (!same_fields(a.settings, b.settings)) return ::testing::AssertionFailure() << a.kind << ": settings differ";
  if (!same_fields(a.values, b.values)) return ::testing::AssertionFailure() << a.kind << ": values differ";
  if (!same_fields(a.counters, b.counters)) return ::testing::AssertionFailure() << a.kind << ": counters differ";
  if (a.children.size() != b.children.size()) return ::testing::AssertionFailure() << a.kind << ": children differ";
  for (std::size_t i = 0; i < a.children.size(); ++i) {
    auto child = SameScheduleState(a.children[i], b.children[i]);
    if (!child) return child;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SameLrs(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " lrs";
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!adamx_test::same_bits(a[i], b[i]))
      return ::testing::AssertionFailure() << "lr " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// ---- a training run ------------------------------------------------------------

// The two-group model of the checkpoint tests, an optimizer, one schedule
// under "lr" and the loop's counters "step" and "epoch" (three steps an
// epoch). Each step: the schedule sets the lr, the optimizer steps with the
// gradients of `step` (so the resumed run must get the counter back to see
// the right ones), the schedule advances.
template <class Opt, class Schedule>
struct Run {
  CheckpointModel<Opt> model;
  Opt opt;
  Schedule schedule;
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  std::vector<double> lrs;  ///< the lr used at each step of this object

  Run(Schedule s, const typename Opt::Options& first, const typename Opt::Options& second)
      : schedule(std::move(s)) {
    model.add_groups(opt, first, second);
  }

  void train(int steps) {
    for (int i = 0; i < steps; ++i) {
      schedule.apply(opt);
      lrs.push_back(schedule.lr());
      model.step(opt, static_cast<int>(step));
      advance(schedule, step);
      ++step;
      epoch = step / 3;
    }
  }

  std::vector<adamx::RunSchedule> schedules() { return {{"lr", schedule}}; }
  std::vector<adamx::RunCounter> counters() { return {{"step", step}, {"epoch", epoch}}; }

  template <class Target>
  void save(Target&& target) {
    adamx::save_run(opt, {{model.w1, model.b1}, {model.w2}}, schedules(), counters(), std::forward<Target>(target));
  }
  template <class Source>
  void load(Source&& source) {
    adamx::load_run(opt, {{model.w1, model.b1}, {model.w2}}, schedules(), counters(), std::forward<Source>(source));
  }
  std::string saved() {
    std::ostringstream out(std::ios::binary);
    save(out);
    return out.str();
  }
  void load_bytes(const std::string& bytes) {
    std::istringstream in(bytes, std::ios::binary);
    load(in);
  }
};

template <class Opt>
class RunCheckpoint : public ::testing::Test {};
// Every optimizer over float and double, and bfloat16 and half parameters,
// which the run stores in their own two bytes.
using RunTypes = ::testing::Types<adamx::Adam<float>, adamx::Adam<double>, adamx::AdamW<float>, adamx::AdamW<double>,
                                  adamx::AdamX<float>, adamx::AdamX<double>, adamx::AdamX<Eigen::bfloat16>,
                                  adamx::AdamX<Eigen::half>, adamx::RAdam<float>, adamx::RAdam<double>,
                                  adamx::AdaBound<float>, adamx::AdaBound<double>, adamx::AdaMod<float>,
                                  adamx::AdaMod<double>, adamx::AdaMod<Eigen::bfloat16>, adamx::Lion<float>,
                                  adamx::Lion<double>, adamx::Lion<Eigen::bfloat16>, adamx::Adan<float>,
                                  adamx::Adan<double>, adamx::Adan<Eigen::bfloat16>,
                                  adamx::ScheduleFreeAdamW<float>, adamx::ScheduleFreeAdamW<double>,
                                  adamx::ScheduleFreeAdamW<Eigen::bfloat16>>;
struct RunTypeName {
  template <class T>
  static std::string GetName(int) {
    using S = typename T::scalar_type;
    return std::string(T::name()) + (std::is_same<S, float>::value    ? "_float"
                                     : std::is_same<S, double>::value ? "_double"
                                     : std::is_same<S, Eigen::half>::value ? "_half"
                                                                           : "_bfloat16");
  }
};
TYPED_TEST_SUITE(RunCheckpoint, RunTypes, RunTypeName);

// k steps, save_run, a new "process" (fresh optimizer with default options,
// parameters holding other values, a freshly built schedule at epoch 0,
// counters at other values), load_run, k more steps: bitwise the run of 2k
// steps without a break, in parameters, optimizer state, the lr of every
// step, the schedule's state and the counters.
TYPED_TEST(RunCheckpoint, ResumeIsExactForEverySchedule) {
  using Opt = TypeParam;
  const auto first_options = CheckpointModel<Opt>::busy_options(true);
  const auto second_options = CheckpointModel<Opt>::busy_options(false);
  bool saved_in_cooldown = false, saved_among_bad_epochs = false;
  for_each_schedule([&](auto schedule_case) {
    using Case = decltype(schedule_case);
    using Schedule = decltype(Case::make());
    for (const int k : {8, 10}) {
      SCOPED_TRACE(Case::make().state().kind + ", k = " + std::to_string(k));
      Run<Opt, Schedule> straight(Case::make(), first_options, second_options);
      straight.train(2 * k);

      Run<Opt, Schedule> first(Case::make(), first_options, second_options);
      first.train(k);
      if constexpr (std::is_same<Schedule, adamx::ReduceLROnPlateau>::value) {
        saved_in_cooldown |= first.schedule.cooldown_counter() > 0;
        saved_among_bad_epochs |= first.schedule.num_bad_epochs() > 0;
      }
      const std::string bytes = first.saved();

      Run<Opt, Schedule> resumed(Case::make(), typename Opt::Options{}, typename Opt::Options{});
      adamx_test::fill(resumed.model.w1, 901);
      adamx_test::fill(resumed.model.b1, 902);
      adamx_test::fill(resumed.model.w2, 903);
      resumed.step = -7;
      resumed.epoch = 99;
      ASSERT_FALSE(resumed.model.SameParameters(first.model));
      resumed.load_bytes(bytes);
      EXPECT_TRUE(resumed.model.SameParameters(first.model)) << "parameters after loading";
      EXPECT_EQ(resumed.step, k);
      EXPECT_EQ(resumed.epoch, k / 3);
      resumed.train(k);

      EXPECT_TRUE(resumed.model.SameParameters(straight.model));
      for (std::size_t g = 0; g < straight.opt.state().size(); ++g)
        EXPECT_TRUE(resumed.opt.state()[g] == straight.opt.state()[g]) << "group " << g;
      EXPECT_TRUE(SameScheduleState(resumed.schedule.state(), straight.schedule.state()));
      std::vector<double> joined = first.lrs;
      joined.insert(joined.end(), resumed.lrs.begin(), resumed.lrs.end());
      EXPECT_TRUE(SameLrs(joined, straight.lrs));
      EXPECT_EQ(resumed.step, straight.step);
      EXPECT_EQ(resumed.epoch, straight.epoch);
      // And the lr did change during the run, except for FixedLR: the
      // comparison above would pass for a schedule that never moved.
      if (!std::is_same<Schedule, adamx::FixedLR>::value) {
        EXPECT_NE(straight.lrs.front(), straight.lrs.back());
      }
    }
  });
  EXPECT_TRUE(saved_in_cooldown) << "no save fell inside ReduceLROnPlateau's cooldown";
  EXPECT_TRUE(saved_among_bad_epochs) << "no save fell among ReduceLROnPlateau's bad epochs";
}

// The same through a file, and what is loaded saves to the same bytes.
TYPED_TEST(RunCheckpoint, FileRoundTripIsExact) {
  using Opt = TypeParam;
  const auto options = CheckpointModel<Opt>::busy_options(true);
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("adamx_run_" + std::to_string(::getpid()) + "_" + RunTypeName::GetName<Opt>(0) + ".ckpt");
  Run<Opt, adamx::ReduceLROnPlateau> first(Plateau::make(), options, options);
  first.train(9);
  first.save(path);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
  Run<Opt, adamx::ReduceLROnPlateau> resumed(Plateau::make(), {}, {});
  resumed.load(path);
  EXPECT_EQ(resumed.saved(), first.saved());
  std::filesystem::remove(path);
}

// README.md's two lines, as written, in a scratch directory (the path is
// relative): the model of its schedule example, then a fresh one resumed.
TEST(RunCheckpointReadme, TheReadmeCallsWorkAsWritten) {
  const std::filesystem::path directory =
      std::filesystem::temp_directory_path() / ("adamx_run_readme_" + std::to_string(::getpid()));
  std::filesystem::create_directories(directory);
  const std::filesystem::path previous = std::filesystem::current_path();
  std::filesystem::current_path(directory);
  Eigen::MatrixXf W1(4, 3), W2(4, 3), gW1(4, 3), gW2(4, 3);
  Eigen::VectorXf b1(4), b2(4), gb1(4), gb2(4);
  const auto build = [&](adamx::AdamW<float>& opt) {
    opt.add_group({W1, W2}, {}, "weights");
    opt.add_group({b1, b2}, {}, "biases");
  };
  adamx::AdamW<float> opt;
  adamx::LinearWarmup<adamx::CosineAnnealingLR> schedule(adamx::CosineAnnealingLR(1e-2, 20), 5, 0.1);
  build(opt);
  for (auto* x : {&W1, &W2}) adamx_test::fill(*x, 1);
  for (auto* x : {&b1, &b2}) adamx_test::fill(*x, 2);
  for (int i = 0; i < 7; ++i) {
    for (auto* g : {&gW1, &gW2}) adamx_test::fill(*g, 10 + static_cast<std::uint64_t>(i));
    for (auto* g : {&gb1, &gb2}) adamx_test::fill(*g, 20 + static_cast<std::uint64_t>(i));
    schedule.apply(opt);
    opt.step({{W1, W2}, {b1, b2}}, {{gW1, gW2}, {gb1, gb2}});
    schedule.step();
  }
  {
    std::int64_t step = 7, epoch = 1;
    adamx::save_run(opt, {{W1, W2}, {b1, b2}}, {{"lr", schedule}}, {{"step", step}, {"epoch", epoch}}, "run.ckpt");
  }
  const Eigen::MatrixXf saved_W1 = W1;
  const auto saved_state = opt.state();
  const adamx::ScheduleState saved_schedule = schedule.state();
  W1.setZero();
  {
    adamx::AdamW<float> opt;
    build(opt);
    adamx::LinearWarmup<adamx::CosineAnnealingLR> schedule(adamx::CosineAnnealingLR(1e-2, 20), 5, 0.1);
    std::int64_t step = 0, epoch = 0;
    adamx::load_run(opt, {{W1, W2}, {b1, b2}}, {{"lr", schedule}}, {{"step", step}, {"epoch", epoch}}, "run.ckpt");
    EXPECT_TRUE(adamx_test::BitwiseEqual(W1, saved_W1));
    EXPECT_TRUE(opt.state() == saved_state);
    EXPECT_TRUE(SameScheduleState(schedule.state(), saved_schedule));
    EXPECT_EQ(step, 7);
    EXPECT_EQ(epoch, 1);
  }
  std::filesystem::current_path(previous);
  std::filesystem::remove_all(directory);
}

// ---- the documented layout -----------------------------------------------------

std::uint64_t read_le(const std::string& bytes, std::size_t at, std::size_t size) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < size; ++i)
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes.at(at + i))) << (8 * i);
  return value;
}

// An independent reading of docs/checkpoints.md, "Run checkpoints": the
// preamble, the record's CRC, the parameters in order and in their own type,
// the second CRC, and then exactly the bytes save_checkpoint writes.
TYPED_TEST(RunCheckpoint, BytesFollowTheDocumentedLayout) {
  using Opt = TypeParam;
  using Scalar = typename Opt::scalar_type;
  Run<Opt, adamx::StepLR> run(Step::make(), CheckpointModel<Opt>::busy_options(true), {});
  run.train(4);
  const std::string bytes = run.saved();
  const auto* raw = reinterpret_cast<const unsigned char*>(bytes.data());
  EXPECT_EQ(bytes.substr(0, 8), "ADAMXRUN");
  EXPECT_EQ(read_le(bytes, 8, 4), 1u);
  const std::size_t record = read_le(bytes, 12, 4);
  const std::size_t record_crc = 16 + record;
  EXPECT_EQ(read_le(bytes, record_crc, 4), adamx_test::bitwise_crc32(raw, record_crc));
  // The record starts with the parameter type code and the group count.
  const std::uint64_t code = std::is_same<Scalar, float>::value    ? 1
                             : std::is_same<Scalar, double>::value ? 2
                             : std::is_same<Scalar, Eigen::half>::value ? 4
                                                                        : 3;
  EXPECT_EQ(read_le(bytes, 16, 1), code);
  EXPECT_EQ(read_le(bytes, 17, 4), 2u);
  std::size_t at = record_crc + 4;
  for (const auto* tensor : {run.model.w1.data(), run.model.b1.data(), run.model.w2.data()}) {
    const std::size_t size = tensor == run.model.w1.data() ? 15 : tensor == run.model.b1.data() ? 5 : 20;
    EXPECT_EQ(std::memcmp(bytes.data() + at, static_cast<const void*>(tensor), size * sizeof(Scalar)), 0) << "at byte " << at;
    at += size * sizeof(Scalar);
  }
  EXPECT_EQ(read_le(bytes, at, 4), adamx_test::bitwise_crc32(raw, at));
  EXPECT_EQ(bytes.substr(at + 4), adamx_test::saved(run.opt));
}

// ---- bad input -------------------------------------------------------------------

using BadOpt = adamx::AdamX<float>;
using Warmup = adamx::LinearWarmup<adamx::CosineAnnealingLR>;

// A schedule of the user's own: anything with state() and restore() can be
// saved. Its restore() refuses a negative x, which no adamx schedule's
// state() can be made to hold, so the test can reach the commit's one
// fallible step.
struct Picky {
  double x = 1.0;
  adamx::ScheduleState state() const {
    adamx::ScheduleState s;
    s.kind = "Picky";
    s.values = {{"x", x}};
    return s;
  }
  void restore(const adamx::ScheduleState& s) {
    adamx::detail::require_schedule_state(s, state());
    if (s.values[0].second < 0) throw std::invalid_argument("Picky::restore: x < 0");
    x = s.values[0].second;
  }
};

// Everything a load can change, with its own history so "unchanged" cannot
// pass by accident: the model, the optimizer, a warm-up schedule "lr", a
// plateau schedule "plateau", a Picky "picky" and counters "step", "epoch".
struct Target {
  CheckpointModel<BadOpt> model;
  BadOpt opt;
  Warmup lr = WarmupCosine::make();
  adamx::ReduceLROnPlateau plateau = Plateau::make();
  Picky picky;
  std::int64_t step = 0, epoch = 0;

  explicit Target(int steps = 5, std::uint64_t seed = 50) {
    model.add_groups(opt, CheckpointModel<BadOpt>::busy_options(true), {});
    for (int i = 0; i < steps; ++i) {
      lr.apply(opt);
      model.step(opt, static_cast<int>(seed) + i);
      lr.step();
      plateau.step(plateau_metric(i));
      ++step;
    }
    epoch = step / 2;
    picky.x = static_cast<double>(seed);
  }
  // The order puts "lr" and "picky" behind "plateau", so a refusal of theirs
  // comes after a schedule has already been restored.
  std::vector<adamx::RunSchedule> schedules() { return {{"plateau", plateau}, {"lr", lr}, {"picky", picky}}; }
  std::vector<adamx::RunCounter> counters() { return {{"step", step}, {"epoch", epoch}}; }
  std::string saved() {
    std::ostringstream out(std::ios::binary);
    adamx::save_run(opt, {{model.w1, model.b1}, {model.w2}}, schedules(), counters(), out);
    return out.str();
  }
  void load(const std::string& bytes) {
    std::istringstream in(bytes, std::ios::binary);
    adamx::load_run(opt, {{model.w1, model.b1}, {model.w2}}, schedules(), counters(), in);
  }
};

// A copy of everything a Target's load could change.
struct TargetSnapshot {
  CheckpointModel<BadOpt> model;
  std::vector<BadOpt::State> opt;
  adamx::ScheduleState lr, plateau, picky;
  std::int64_t step, epoch;
  explicit TargetSnapshot(const Target& t)
      : model(t.model), opt(t.opt.state()), lr(t.lr.state()), plateau(t.plateau.state()), picky(t.picky.state()),
        step(t.step), epoch(t.epoch) {}
  ::testing::AssertionResult Same(const Target& t) const {
    if (!t.model.SameParameters(model)) return ::testing::AssertionFailure() << "parameters changed";
    if (!(t.opt.state() == opt)) return ::testing::AssertionFailure() << "optimizer state changed";
    for (const auto& [now, before] : {std::pair{t.lr.state(), lr}, std::pair{t.plateau.state(), plateau},
                                      std::pair{t.picky.state(), picky}}) {
      auto same = SameScheduleState(now, before);
      if (!same) return same << " (a schedule changed)";
    }
    if (t.step != step || t.epoch != epoch) return ::testing::AssertionFailure() << "counters changed";
    return ::testing::AssertionSuccess();
  }
};

// Loading `bytes` into a fresh Target throws CheckpointError and changes
// nothing; the message goes to `message`.
::testing::AssertionResult RefusedUnchanged(const std::string& bytes, std::string* message = nullptr) {
  Target target;
  const TargetSnapshot before(target);
  try {
    target.load(bytes);
  } catch (const adamx::CheckpointError& error) {
    if (message) *message = error.what();
    return before.Same(target);
  } catch (const std::exception& error) {
    return ::testing::AssertionFailure() << "threw something else: " << error.what();
  }
  return ::testing::AssertionFailure() << "loaded";
}

std::string valid_run() { return Target(7, 10).saved(); }

TEST(RunCheckpointBadInput, TheValidFileLoads) {
  // The baseline for every case below: the same bytes, unmodified, load.
  Target target;
  const std::string bytes = valid_run();
  target.load(bytes);
  EXPECT_EQ(target.step, 7);
  EXPECT_EQ(target.saved(), bytes);
}

TEST(RunCheckpointBadInput, EveryTruncationIsRefused) {
  const std::string bytes = valid_run();
  for (std::size_t size = 0; size < bytes.size(); ++size) {
    std::string message;
    ASSERT_TRUE(RefusedUnchanged(bytes.substr(0, size), &message)) << "cut to " << size << " bytes";
    ASSERT_TRUE(Contains(message, "truncated")) << "cut to " << size << " bytes";
  }
}

// Every byte of the run's own part (record, parameters, checksums) flipped:
// refused as corrupt; every byte of the optimizer checkpoint after it: refused
// by its own checks.
TEST(RunCheckpointBadInput, EveryFlippedByteIsRefused) {
  const std::string bytes = valid_run();
  const std::size_t run_end = bytes.find("ADAMXCKP");
  ASSERT_NE(run_end, std::string::npos);
  for (std::size_t at = 0; at < bytes.size(); ++at) {
    std::string bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x20);
    std::string message;
    ASSERT_TRUE(RefusedUnchanged(bad, &message)) << "byte " << at;
    if (at < 8) {
      EXPECT_TRUE(Contains(message, "bad magic bytes")) << "byte " << at;
    } else if (at >= 16 && at < run_end) {
      EXPECT_TRUE(Contains(message, "checksum mismatch")) << "byte " << at;
    }
  }
}

TEST(RunCheckpointBadInput, TrailingBytesAndOtherFilesAreRefused) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("adamx_run_bad_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return dir / name;
  };
  const auto refused = [&](const std::filesystem::path& path, const std::string& expected) {
    Target target;
    const TargetSnapshot before(target);
    const std::string message = adamx_test::thrown_message<adamx::CheckpointError>([&] {
      adamx::load_run(target.opt, {{target.model.w1, target.model.b1}, {target.model.w2}}, target.schedules(),
                      target.counters(), path);
    });
    EXPECT_TRUE(Contains(message, expected));
    EXPECT_TRUE(Contains(message, path.string()));
    EXPECT_TRUE(before.Same(target));
  };
  refused(write("trailing", valid_run() + "x"), "unexpected bytes");
  refused(write("optimizer_only", adamx_test::saved(Target().opt)), "load it with load_checkpoint");
  refused(dir / "missing", std::strerror(ENOENT));
  std::filesystem::remove_all(dir);
}

// The file must fit the objects passed: group and tensor names and shapes,
// the parameter type, and every schedule and counter name.
TEST(RunCheckpointBadInput, MismatchedModelsAreRefused) {
  CheckpointModel<BadOpt> m;
  const auto save_with = [&](const std::string& group, const std::string& tensor) {
    BadOpt opt;
    opt.add_group({m.w1, m.b1}, {}, group, {"weight", tensor});
    opt.add_group({m.w2}, {}, "layer2", {"weight"});
    std::ostringstream out(std::ios::binary);
    adamx::save_run(opt, {{m.w1, m.b1}, {m.w2}}, {}, {}, out);
    return out.str();
  };
  // The target also has schedules and counters the files lack; the message
  // lists every difference at once.
  std::string message;
  EXPECT_TRUE(RefusedUnchanged(save_with("layer0", "bias"), &message));
  EXPECT_TRUE(Contains(message, "'layer0'"));
  EXPECT_TRUE(Contains(message, "schedule 'plateau' is not in the file"));
  EXPECT_TRUE(Contains(message, "counter 'epoch' is not in the file"));
  EXPECT_TRUE(RefusedUnchanged(save_with("layer1", "offset"), &message));
  EXPECT_TRUE(Contains(message, "'offset'"));

  {  // a transposed weight
    Eigen::MatrixXf w1t(3, 5);
    adamx_test::fill(w1t, 5);
    BadOpt opt;
    opt.add_group({w1t, m.b1}, {}, "layer1", {"weight", "bias"});
    opt.add_group({m.w2}, {}, "layer2", {"weight"});
    std::ostringstream out(std::ios::binary);
    adamx::save_run(opt, {{w1t, m.b1}, {m.w2}}, {}, {}, out);
    EXPECT_TRUE(RefusedUnchanged(out.str(), &message));
    EXPECT_TRUE(adamx_test::MentionsShape(message, 3, 5));
  }
  {  // double parameters
    CheckpointModel<adamx::AdamX<double>> d;
    adamx::AdamX<double> opt;
    d.add_groups(opt);
    std::ostringstream out(std::ios::binary);
    adamx::save_run(opt, {{d.w1, d.b1}, {d.w2}}, {}, {}, out);
    EXPECT_TRUE(RefusedUnchanged(out.str(), &message));
    EXPECT_TRUE(Contains(message, "scalar type mismatch"));
  }
}

// Schedules and counters by name: missing, extra, of another kind, with
// other settings, or with a state the schedule's own restore() refuses.
TEST(RunCheckpointBadInput, MismatchedSchedulesAndCountersAreRefused) {
  std::string message;
  const auto save_target_with = [](auto&& edit) {
    Target source(7, 10);
    std::vector<adamx::RunSchedule> schedules = source.schedules();
    std::vector<adamx::RunCounter> counters = source.counters();
    edit(source, schedules, counters);
    std::ostringstream out(std::ios::binary);
    adamx::save_run(source.opt, {{source.model.w1, source.model.b1}, {source.model.w2}}, schedules, counters, out);
    return out.str();
  };
  // Missing and extra names.
  EXPECT_TRUE(RefusedUnchanged(save_target_with([](Target&, auto& s, auto&) { s.pop_back(); }), &message));
  EXPECT_TRUE(Contains(message, "schedule 'picky' is not in the file"));
  std::int64_t samples = 640;
  EXPECT_TRUE(RefusedUnchanged(
      save_target_with([&](Target&, auto&, auto& c) { c.push_back({"samples", samples}); }), &message));
  EXPECT_TRUE(Contains(message, "the file has counter 'samples'"));
  EXPECT_TRUE(RefusedUnchanged(save_target_with([](Target&, auto&, auto& c) { c.erase(c.begin()); }), &message));
  EXPECT_TRUE(Contains(message, "counter 'step' is not in the file"));

  // Another kind and other settings under "lr", which comes after "plateau":
  // plateau must be rolled back too.
  adamx::StepLR step_lr = Step::make();
  EXPECT_TRUE(RefusedUnchanged(save_target_with([&](Target&, auto& s, auto&) { s[1] = {"lr", step_lr}; }), &message));
  EXPECT_TRUE(Contains(message, "schedule 'lr'"));
  EXPECT_TRUE(Contains(message, "StepLR"));
  Warmup longer(adamx::CosineAnnealingLR(3e-3, 6), 10, 0.25);
  EXPECT_TRUE(RefusedUnchanged(save_target_with([&](Target&, auto& s, auto&) { s[1] = {"lr", longer}; }), &message));
  EXPECT_TRUE(adamx_test::NamesFieldAndValue(message, "epochs", 10));
  Warmup other_cosine(adamx::CosineAnnealingLR(3e-3, 8), 9, 0.25);
  EXPECT_TRUE(
      RefusedUnchanged(save_target_with([&](Target&, auto& s, auto&) { s[1] = {"lr", other_cosine}; }), &message));
  EXPECT_TRUE(adamx_test::NamesFieldAndValue(message, "T_max", 8));

  // A state with the right layout that restore() refuses, after "plateau"
  // and "lr" were restored: both are put back.
  EXPECT_TRUE(RefusedUnchanged(save_target_with([](Target& t, auto&, auto&) { t.picky.x = -1.0; }), &message));
  EXPECT_TRUE(Contains(message, "schedule 'picky' refuses its saved state"));
}

// Bad calls are std::invalid_argument, before any file is opened or written.
TEST(RunCheckpointBadInput, BadCallsChangeNothing) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("adamx_run_call_" + std::to_string(::getpid()) + ".ckpt");
  Target target;
  target.lr.step();
  const std::string before_file = Target(3, 7).saved();
  std::ofstream(path, std::ios::binary) << before_file;
  const TargetSnapshot before(target);
  auto& m = target.model;
  adamx::StepLR other = Step::make();
  std::int64_t other_counter = 1;
  const std::vector<adamx::RunSchedule> twice = {{"lr", target.lr}, {"lr", other}};
  const std::vector<adamx::RunCounter> twice_counters = {{"n", target.step}, {"n", other_counter}};
  Eigen::MatrixXf wrong(3, 5);
  const auto file_bytes = [&] {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto check = [&](auto&& action, const std::string& expected) {
    const std::string message = adamx_test::thrown_message<std::invalid_argument>(action);
    EXPECT_TRUE(Contains(message, expected));
    EXPECT_TRUE(before.Same(target));
    EXPECT_EQ(file_bytes(), before_file);
    EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
  };
  check([&] { adamx::save_run(target.opt, {{m.w1, m.b1}, {m.w2}}, twice, {}, path); }, "two schedules are named 'lr'");
  check([&] { adamx::load_run(target.opt, {{m.w1, m.b1}, {m.w2}}, twice, {}, path); }, "two schedules are named 'lr'");
  check([&] { adamx::save_run(target.opt, {{m.w1, m.b1}, {m.w2}}, {}, twice_counters, path); },
        "two counters are named 'n'");
  check([&] { adamx::save_run(target.opt, {{wrong, m.b1}, {m.w2}}, {}, {}, path); }, "layer1.weight");
  check([&] { adamx::load_run(target.opt, {{m.w1, m.b1}}, {}, {}, path); }, "1 parameter groups");
  check([&] { adamx::load_run(target.opt, {{m.w1}, {m.w2}}, {}, {}, path); }, "group 'layer1'");
  std::filesystem::remove(path);
}

// A save that cannot write leaves no file behind; one that fails midway
// leaves the previous file as it was.
TEST(RunCheckpointBadInput, FailedSavesChangeNoFile) {
  Target target;
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("adamx_run_notdir_" + std::to_string(::getpid()));
  std::ofstream(file) << "a file, not a directory";
  const std::string message = adamx_test::thrown_message<adamx::CheckpointError>([&] {
    adamx::save_run(target.opt, {{target.model.w1, target.model.b1}, {target.model.w2}}, target.schedules(),
                    target.counters(), file / "run.ckpt");
  });
  EXPECT_TRUE(Contains(message, "adamx::save_run"));
  EXPECT_TRUE(std::filesystem::is_regular_file(file));
  std::filesystem::remove(file);

  std::ostringstream failing;
  failing.setstate(std::ios::badbit);
  EXPECT_TRUE(Contains(adamx_test::thrown_message<adamx::CheckpointError>([&] {
                         adamx::save_run(target.opt, {{target.model.w1, target.model.b1}, {target.model.w2}},
                                         target.schedules(), target.counters(), failing);
                       }),
                       "writing to the stream failed"));
}

// ---- schedules' own restore() ---------------------------------------------------

// Values that stepping cannot produce are refused, naming them, and the
// schedule keeps its state; the same state with valid values is taken.
TEST(ScheduleRestore, ImpossibleValuesAreRefused) {
  const auto refused = [](auto schedule, auto&& edit, const std::string& field, double value) {
    for (int i = 0; i < 3; ++i) advance(schedule, i);
    const adamx::ScheduleState before = schedule.state();
    adamx::ScheduleState bad = before;
    edit(bad);
    const std::string message =
        adamx_test::thrown_message<std::invalid_argument>([&] { schedule.restore(bad); });
    EXPECT_TRUE(adamx_test::NamesFieldAndValue(message, field, value));
    EXPECT_TRUE(SameScheduleState(schedule.state(), before));
    schedule.restore(before);
    EXPECT_TRUE(SameScheduleState(schedule.state(), before));
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  refused(Step::make(), [](auto& s) { s.values[0].second = -1.0; }, "lr", -1.0);
  refused(Cosine::make(), [](auto& s) { s.counters[0].second = -2; }, "epoch", -2);
  refused(Exponential::make(), [&](auto& s) { s.values[0].second = nan; }, "lr", nan);
  // The warm-up's own values, then its inner schedule's.
  refused(WarmupCosine::make(), [](auto& s) { s.counters[0].second = -3; }, "epoch", -3);
  refused(WarmupCosine::make(), [](auto& s) { s.children[0].values[0].second = -4.0; }, "lr", -4.0);
  refused(Plateau::make(), [&](auto& s) { s.values[1].second = nan; }, "best", nan);
  refused(Plateau::make(), [](auto& s) { s.counters[1].second = 3; }, "num_bad_epochs", 3);
  refused(Plateau::make(), [](auto& s) { s.counters[2].second = 3; }, "cooldown_counter", 3);
  refused(Plateau::make(), [](auto& s) { s.counters[2].second = -1; }, "cooldown_counter", -1);
}

}  // namespace
