// The optimizer study's protocol (examples/study/study.hpp): the arms, the
// learning-rate grid that grows until it brackets each arm's optimum, the
// tuning and evaluation seeds, and how diverged runs score. A synthetic task
// whose metric has a known optimum in lr stands in for training.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "study.hpp"
#include "temp_dir.hpp"

namespace {

using study::Outcome;
using study::Phase;

using study::Task;
using adamx_test::TempDir;

// metric = (log10 lr − log10 optimum)² + seed / 1000: a bowl in log lr, the
// same shape for every seed (so tuning finds the optimum whatever the seeds).
Task bowl(double optimum) {
  Task t;
  t.name = "bowl";
  t.description = "a bowl in log lr";
  t.metric = "distance";
  t.margin = 0.01;
  t.divergence_value = 50;
  t.base_lr = 1e-3;
  t.eval_seeds = 10;
  t.has_matrices = false;
  t.run = [optimum](const study::Run& r, study::Curves& curves) {
    Outcome o;
    const double d = std::log10(r.lr) - std::log10(optimum);
    o.metric = d * d + r.seed / 1000.0;
    curves.add(1, "metric", o.metric);
    return o;
  };
  return t;
}

struct Row {
  std::string phase, optimizer;
  double lr;
  int seed;
  std::string key;
  double value;
};

std::vector<Row> read_runs(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "task,phase,optimizer,lr,seed,key,value");
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    std::stringstream s(line);
    std::string task, phase, optimizer, lr, seed, key, value;
    std::getline(s, task, ',');
    std::getline(s, phase, ',');
    std::getline(s, optimizer, ',');
    std::getline(s, lr, ',');
    std::getline(s, seed, ',');
    std::getline(s, key, ',');
    std::getline(s, value, ',');
    rows.push_back({phase, optimizer, std::stod(lr), std::stoi(seed), key, std::stod(value)});
  }
  return rows;
}

// The learning rates an optimizer was tuned at, and the one it was evaluated at.
std::set<double> tuned_lrs(const std::vector<Row>& rows, const std::string& optimizer) {
  std::set<double> out;
  for (const auto& r : rows)
    if (r.phase == "tune" && r.optimizer == optimizer) out.insert(r.lr);
  return out;
}
double evaluated_lr(const std::vector<Row>& rows, const std::string& optimizer) {
  for (const auto& r : rows)
    if (r.phase == "eval" && r.optimizer == optimizer) return r.lr;
  return 0;
}

TEST(StudyGrid, TheCentreIsExactAndNeighboursAreACubeRootOfTenApart) {
  EXPECT_EQ(study::grid_lr(1e-3, 0), 1e-3);
  EXPECT_EQ(study::grid_lr(1e-3, 3), 1e-2);
  EXPECT_EQ(study::grid_lr(1e-3, -3), 1e-4);
  EXPECT_EQ(study::grid_lr(1e-3, 1), 0.002154);  // 10^(1/3) = 2.15443..., 4 significant digits
  EXPECT_EQ(study::grid_lr(1e-3, -1), 0.0004642);
}

TEST(StudyProtocol, AnOptimumInsideTheFirstGridIsChosenWithoutGrowingIt) {
  TempDir dir;
  study::run_protocol(bowl(study::grid_lr(1e-3, 1)), (dir / "").string(), false, {"Adam"});
  const auto rows = read_runs(dir / "bowl.runs.csv");
  EXPECT_EQ(tuned_lrs(rows, "Adam").size(), 7u);
  EXPECT_EQ(evaluated_lr(rows, "Adam"), study::grid_lr(1e-3, 1));
}

TEST(StudyProtocol, TheGridGrowsPastAnEdgeUntilItBracketsTheOptimum) {
  TempDir dir;
  // 100× the centre: three grid steps past the first grid's top (k = 3).
  study::run_protocol(bowl(1e-1), (dir / "").string(), false, {"Adam", "Lion"});
  const auto rows = read_runs(dir / "bowl.runs.csv");
  // Adam: k = -3..3, then 4, 5, 6 (best, at the edge), 7 (past it): 11 points.
  const auto adam = tuned_lrs(rows, "Adam");
  EXPECT_EQ(adam.size(), 11u);
  EXPECT_EQ(*adam.rbegin(), study::grid_lr(1e-3, 7));
  EXPECT_EQ(evaluated_lr(rows, "Adam"), study::grid_lr(1e-3, 6));
  // Lion's grid is centred at 0.2× Adam's: its best point nearest 0.1.
  const double lion = evaluated_lr(rows, "Lion");
  EXPECT_GT(lion, 0.1 / std::cbrt(10.0));
  EXPECT_LT(lion, 0.1 * std::cbrt(10.0));
  EXPECT_LT(lion, *tuned_lrs(rows, "Lion").rbegin());  // bracketed from above
}

TEST(StudyProtocol, TheGridStopsGrowingAfterTheMaximumNumberOfExtensions) {
  TempDir dir;
  study::run_protocol(bowl(1e3), (dir / "").string(), false, {"Adam"});
  const auto rows = read_runs(dir / "bowl.runs.csv");
  EXPECT_EQ(tuned_lrs(rows, "Adam").size(), static_cast<std::size_t>(study::kGridPoints + study::kMaxExtensions));
  EXPECT_EQ(evaluated_lr(rows, "Adam"), study::grid_lr(1e-3, 3 + study::kMaxExtensions));
}

TEST(StudyProtocol, EvaluationSeedsAreFreshAndTheSameForEveryOptimizer) {
  TempDir dir;
  study::run_protocol(bowl(1e-3), (dir / "").string(), false, {});
  const auto rows = read_runs(dir / "bowl.runs.csv");
  std::map<std::string, std::set<int>> tune, eval;
  for (const auto& r : rows) (r.phase == "tune" ? tune : eval)[r.optimizer].insert(r.seed);
  const std::set<int> tune_seeds = {1, 2};
  std::set<int> eval_seeds;
  for (int s = 101; s <= 110; ++s) eval_seeds.insert(s);
  // Every arm but Muon (the task has no matrices), each tuned and evaluated
  // on the same seeds, none used for both.
  EXPECT_EQ(eval.size(), study::arms().size() - 1);
  EXPECT_EQ(eval.count("Muon"), 0u);
  for (const auto& [optimizer, seeds] : eval) {
    EXPECT_EQ(seeds, eval_seeds) << optimizer;
    EXPECT_EQ(tune[optimizer], tune_seeds) << optimizer;
  }
}

TEST(StudyProtocol, CurvesAreKeptForEvaluationRunsOnly) {
  TempDir dir;
  study::run_protocol(bowl(1e-3), (dir / "").string(), true, {"Adam"});
  std::ifstream in(dir / "bowl.curves.csv");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "task,optimizer,lr,seed,step,key,value");
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  EXPECT_EQ(lines, study::quick_scale().eval_seeds);  // one point per evaluation run
}

TEST(StudyProtocol, ADivergedRunScoresTheDivergenceValueAndWorseRunsAreClampedToIt) {
  Task t = bowl(1e-3);
  // Non-finite metric above 1e-2, a thrown non-finite gradient above 3e-3,
  // a metric far worse than the divergence value above 1.5e-3.
  t.run = [](const study::Run& r, study::Curves&) {
    Outcome o;
    if (r.lr > 1e-2) {
      o.metric = std::nan("");
    } else if (r.lr > 3e-3) {
      throw adamx::NonFiniteGradientError("non-finite gradient", 0, 0);
    } else {
      o.metric = r.lr > 1.5e-3 ? 1e9 : 1.0;
    }
    return o;
  };
  const study::Arm& adam = study::arms().front();
  study::Curves none(false);
  const Outcome nan_run = study::run_once(t, study::Run{&adam, 2e-2, 1, Phase::tune, false}, none);
  EXPECT_TRUE(nan_run.diverged);
  EXPECT_EQ(nan_run.metric, 50);
  const Outcome thrown = study::run_once(t, study::Run{&adam, 5e-3, 1, Phase::tune, false}, none);
  EXPECT_TRUE(thrown.diverged);
  EXPECT_EQ(thrown.metric, 50);
  const Outcome bad = study::run_once(t, study::Run{&adam, 2e-3, 1, Phase::tune, false}, none);
  EXPECT_FALSE(bad.diverged);
  EXPECT_EQ(bad.metric, 50);
  t.higher_is_better = true;
  t.divergence_value = 5;
  const Outcome low = study::run_once(t, study::Run{&adam, 1e-3, 1, Phase::tune, false}, none);
  EXPECT_EQ(low.metric, 5);
}

TEST(StudyArms, EveryOptimizerOfTheLibraryTakesPart) {
  std::set<std::string> in_study;
  for (const auto& a : study::arms()) in_study.insert(a.optimizer);
#define STUDY_EXPECT_ARM(Name) EXPECT_EQ(in_study.count(#Name), 1u) << #Name;
  ADAMX_FOR_EACH_OPTIMIZER(STUDY_EXPECT_ARM)
#undef STUDY_EXPECT_ARM
}

TEST(StudyArms, EachArmChangesOnlyWhatItsNameSays) {
  std::map<std::string, const study::Arm*> by_name;
  for (const auto& a : study::arms()) by_name[a.name] = &a;
  ASSERT_EQ(by_name.size(), study::arms().size()) << "arm names must be unique";
  const auto options_of = [](const study::Arm& arm) {
    adamx::AdamXOptions x;
    adamx::AdamOptions adam;
    study::with_options(arm, 0.5, [&](auto o) {
      if constexpr (std::is_same<decltype(o), adamx::AdamXOptions>::value) x = o;
      if constexpr (std::is_same<decltype(o), adamx::AdamOptions>::value) adam = o;
    });
    return std::make_tuple(x, adam);
  };
  const auto [x_default, unused0] = options_of(*by_name.at("AdamX"));
  EXPECT_EQ(x_default.lr, 0.5);
  EXPECT_EQ(x_default.beta3, 0.99);
  EXPECT_EQ(x_default.beta_norm, 0.99);
  adamx::AdamXOptions expected = x_default;
  expected.beta_norm = 0.9;
  EXPECT_EQ(std::get<0>(options_of(*by_name.at("AdamX(beta_norm=0.9)"))), expected);
  expected = x_default;
  expected.beta3 = 0.999;
  EXPECT_EQ(std::get<0>(options_of(*by_name.at("AdamX(beta3=0.999)"))), expected);
  EXPECT_EQ(std::get<0>(options_of(*by_name.at("AdamX(one group)"))), x_default);
  EXPECT_TRUE(by_name.at("AdamX(one group)")->one_group);
  const auto [unused1, adam_default] = options_of(*by_name.at("Adam"));
  adamx::AdamOptions short_memory = adam_default;
  short_memory.beta2 = 0.99;
  EXPECT_EQ(std::get<1>(options_of(*by_name.at("Adam(beta2=0.99)"))), short_memory);
  adamx::AdamOptions amsgrad = adam_default;
  amsgrad.amsgrad = true;
  EXPECT_EQ(std::get<1>(options_of(*by_name.at("AMSGrad"))), amsgrad);
  (void)unused0;
  (void)unused1;
}

TEST(StudyArms, MuonsCompanionKeepsTheAuthorsRatioOfLearningRates) {
  const adamx::MuonOptions companion = study::muon_companion_options(0.02);
  EXPECT_FALSE(companion.muon);
  EXPECT_DOUBLE_EQ(companion.lr, adamx::muon_adamw_options().lr);
  EXPECT_DOUBLE_EQ(study::muon_companion_options(0.2).lr, 10 * adamx::muon_adamw_options().lr);
}

}  // namespace
