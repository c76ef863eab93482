// study.hpp - the protocol of the optimizer study (scripts/results,
// docs/results.md): which optimizers take part (the arms), how each one's
// learning rate is tuned, which seeds evaluate it, and what a run records.
// A task (one problem: a model, its data, its metric) only says how to train
// once for a given arm, learning rate and seed; everything that makes the
// comparison fair lives here, once, for every task.
//
// The protocol (after DeepOBS, Schneider et al. 2019, and MLCommons AlgoPerf,
// Dahl et al. 2023):
//  - every arm gets the same tuning budget: a log grid of kGridPoints
//    learning rates, kGridRatio apart, centred on the task's base lr times
//    the arm's own scale; each lr is scored by the mean validation metric
//    over the tuning seeds (ties go to the smaller lr, so a grid on which
//    every lr diverges grows downwards); while the best lr is at an edge of
//    the grid the grid grows by one point past that edge (at most
//    kMaxExtensions times);
//  - the chosen lr is then run on fresh evaluation seeds (none of them used
//    for tuning) and scored on test data;
//  - seeds are paired: within a seed every arm starts from the same
//    initialisation and sees the same batches, noise and environment.
//
// Output, for task T in the output directory (tidy CSV, one value per row):
//   T.runs.csv    task,phase,optimizer,lr,seed,key,value   every run's results
//   T.curves.csv  task,optimizer,lr,seed,step,key,value    evaluation runs' curves
//   T.meta.csv    key,value                                 the task's metric
#pragma once

#include <adamx/adamx.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace study {

// ------------------------------------------------------------------ arms --

/// One optimizer configuration of the study. `optimizer` names the library's
/// optimizer (adamx::<optimizer>); the other fields change its defaults.
struct Arm {
  std::string name;        ///< as the tables print it
  std::string optimizer;   ///< Adam, AdamW, AdamX, RAdam, AdaBound, AdaMod, Lion, Adan, ScheduleFreeAdamW, Muon
  double beta2 = 0;        ///< > 0: β2 instead of the default
  double beta_norm = 0;    ///< > 0: AdamX's β_n instead of its default
  double beta3 = 0;        ///< > 0: AdamX's β3 instead of its default
  bool amsgrad = false;    ///< Adam's AMSGrad variant
  bool one_group = false;  ///< every parameter in one group (AdamX: one global γ, not one per layer)
  double lr_scale = 1;     ///< centre of its lr grid, relative to the task's base lr (Adam's centre)
};

/// Every arm, in the tables' order: the baselines, the mechanism baseline
/// (Adam with β2 = 0.99: a shorter second-moment memory, which is what γ
/// would amount to if it only shortened Adam's horizon), AdamX with its
/// defaults (β_n = β3 = 0.99) and AdamX's ablations.
///
/// The grid centres follow the authors' recommendations relative to Adam's
/// lr: Lion 3-10x smaller (Chen et al. 2023), Muon 0.02 where Adam uses
/// 1e-3 (Jordan et al. 2024), Schedule-Free AdamW and Adan somewhat larger
/// (Defazio et al. 2024; Xie et al. 2022). A centre only places the first
/// grid; the grid grows until it brackets each arm's optimum.
inline const std::vector<Arm>& arms() {
  static const std::vector<Arm> all = [] {
    std::vector<Arm> a;
    a.push_back({"Adam", "Adam"});
    a.push_back({"AdamW", "AdamW"});
    Arm short_memory{"Adam(beta2=0.99)", "Adam"};
    short_memory.beta2 = 0.99;
    a.push_back(short_memory);
    Arm amsgrad{"AMSGrad", "Adam"};
    amsgrad.amsgrad = true;
    a.push_back(amsgrad);
    a.push_back({"RAdam", "RAdam"});
    a.push_back({"AdaBound", "AdaBound"});
    a.push_back({"AdaMod", "AdaMod"});
    Arm lion{"Lion", "Lion"};
    lion.lr_scale = 0.2;
    a.push_back(lion);
    Arm schedule_free{"ScheduleFreeAdamW", "ScheduleFreeAdamW"};
    schedule_free.lr_scale = 2;
    a.push_back(schedule_free);
    Arm muon{"Muon", "Muon"};
    muon.lr_scale = 20;
    a.push_back(muon);
    Arm adan{"Adan", "Adan"};
    adan.lr_scale = 2;
    a.push_back(adan);
    a.push_back({"AdamX", "AdamX"});
    // AdamX with one of its rates changed, named "AdamX(<field>=<value>)".
    const auto ablation = [&](const char* field, double Arm::*rate, double value) {
      Arm x{"", "AdamX"};
      std::ostringstream name;
      name << "AdamX(" << field << "=" << value << ")";
      x.name = name.str();
      x.*rate = value;
      a.push_back(x);
    };
    for (const double b : {0.9, 0.999}) ablation("beta_norm", &Arm::beta_norm, b);
    for (const double b : {0.9, 0.999}) ablation("beta3", &Arm::beta3, b);
    Arm global{"AdamX(one group)", "AdamX"};
    global.one_group = true;
    a.push_back(global);
    return a;
  }();
  return all;
}

/// Whether the arm steps whole matrices (Muon), which a task without weight
/// matrices cannot offer it.
inline bool steps_matrices(const Arm& arm) { return arm.optimizer == "Muon"; }

namespace detail {
template <class O>
auto set_beta2(O& o, double b, int) -> decltype(o.set_betas(o.beta1, b), void()) {
  o.set_betas(o.beta1, b);
}
template <class O>
void set_beta2(O&, double, long) {
  throw std::logic_error("this optimizer has no beta2");
}
template <class O>
auto set_amsgrad(O& o, int) -> decltype(o.amsgrad = true, void()) {
  o.amsgrad = true;
}
template <class O>
void set_amsgrad(O&, long) {
  throw std::logic_error("this optimizer has no AMSGrad variant");
}
template <class O>
auto set_gamma_rates(O& o, double beta_norm, double beta3, int)
    -> decltype(o.beta_norm = beta_norm, o.beta3 = beta3, void()) {
  if (beta_norm > 0) o.beta_norm = beta_norm;
  if (beta3 > 0) o.beta3 = beta3;
}
template <class O>
void set_gamma_rates(O&, double, double, long) {
  throw std::logic_error("this optimizer has no γ");
}
}  // namespace detail

/// The flavour of an optimizer's options (decltype(flavour_of(options))).
template <class Flavour>
Flavour flavour_of(const adamx::BasicOptions<Flavour>&);

/// Calls body(options) with the arm's options at learning rate `lr`: an
/// adamx::BasicOptions<Flavour> of the arm's optimizer, its defaults changed
/// as the arm says; decltype(flavour_of(options)) is the flavour a task
/// builds its optimizer from.
template <class Body>
void with_options(const Arm& arm, double lr, Body&& body) {
  const auto configure = [&](auto options) {
    options.lr = lr;
    if (arm.beta2 > 0) detail::set_beta2(options, arm.beta2, 0);
    if (arm.amsgrad) detail::set_amsgrad(options, 0);
    if (arm.beta_norm > 0 || arm.beta3 > 0) detail::set_gamma_rates(options, arm.beta_norm, arm.beta3, 0);
    body(options);
  };
#define STUDY_OPTIONS_OF(Name) \
  if (arm.optimizer == #Name) return configure(adamx::Name##Options{});
  ADAMX_FOR_EACH_OPTIMIZER(STUDY_OPTIONS_OF)
#undef STUDY_OPTIONS_OF
  throw std::logic_error("unknown optimizer " + arm.optimizer);
}

/// Muon steps the hidden weight matrices only; its authors step everything
/// else (embeddings, output layers, biases, gains) with AdamW, at lr 3e-4
/// where Muon's is 0.02. The study tunes Muon with one knob: the AdamW part
/// keeps that ratio to Muon's lr.
inline adamx::MuonOptions muon_companion_options(double muon_lr) {
  adamx::MuonOptions o = adamx::muon_adamw_options();
  o.lr = muon_lr * (adamx::muon_adamw_options().lr / adamx::MuonOptions{}.lr);
  return o;
}

// ------------------------------------------------------------------ runs --

enum class Phase { tune, eval };
inline const char* phase_name(Phase p) { return p == Phase::tune ? "tune" : "eval"; }

/// One training run, as a task receives it.
struct Run {
  const Arm* arm = nullptr;
  double lr = 0;
  int seed = 0;
  Phase phase = Phase::tune;  ///< tune: score on validation data; eval: on test data
  bool quick = false;         ///< --quick: a smoke run, a fraction of the full length
};

/// What a run gives back: its metric (validation when tuning, test when
/// evaluating) and other named results (e.g. accuracy, steps to a target).
/// A run whose loss or parameters became non-finite is `diverged`; its
/// metric is then the task's divergence value.
struct Outcome {
  double metric = std::numeric_limits<double>::quiet_NaN();
  bool diverged = false;
  std::vector<std::pair<std::string, double>> extras;
};

/// A run's curves: named values at training steps. Evaluation runs keep
/// them (T.curves.csv); tuning runs discard them.
class Curves {
 public:
  explicit Curves(bool keep) : keep_(keep) {}
  bool keep() const { return keep_; }
  void add(long step, const std::string& key, double value) {
    if (keep_) points_.push_back({step, key, value});
  }
  struct Point {
    long step;
    std::string key;
    double value;
  };
  const std::vector<Point>& points() const { return points_; }

 private:
  bool keep_;
  std::vector<Point> points_;
};

/// A problem of the study.
struct Task {
  std::string name;                ///< file names and tables
  std::string description;         ///< one line: model, data, length
  std::string metric;              ///< what Outcome::metric is, e.g. "test loss"
  std::string curve;               ///< what the "metric" curve shows, if not the metric itself
  bool higher_is_better = false;
  /// The equivalence margin: two optimizers whose difference is shown to be
  /// within ±margin (relative: ±margin × the baseline's mean) are a tie.
  double margin = 0;
  bool margin_relative = true;
  double divergence_value = 0;     ///< the metric of a diverged run (the worst it can sensibly be)
  double base_lr = 1e-3;           ///< Adam's grid centre
  int eval_seeds = 10;
  bool has_matrices = true;        ///< offers Muon
  std::function<Outcome(const Run&, Curves&)> run;
};

// -------------------------------------------------------------- protocol --

constexpr int kGridPoints = 7;
/// 10^(1/3): three points a decade, seven span two decades.
inline double grid_ratio() { return std::cbrt(10.0); }
constexpr int kMaxExtensions = 6;
constexpr int kTuneSeeds = 2;
constexpr int kFirstEvalSeed = 101;

/// --quick keeps every step of the protocol but shrinks it.
struct Scale {
  int grid_points = kGridPoints;
  int max_extensions = kMaxExtensions;
  int tune_seeds = kTuneSeeds;
  int eval_seeds = 0;  ///< 0: the task's own count
};
inline Scale quick_scale() { return {3, 1, 1, 2}; }

/// The learning rate `k` grid steps from the centre (exactly the centre at
/// k = 0), rounded to 4 significant digits so that the CSVs, the tables and
/// a re-run all name the same rate.
inline double grid_lr(double centre, int k) {
  const double lr = centre * std::pow(grid_ratio(), k);
  std::ostringstream s;
  s << std::setprecision(4) << lr;
  return std::stod(s.str());
}

inline std::string format_value(double v) {
  if (std::isnan(v)) return "nan";
  std::ostringstream s;
  s << std::setprecision(10) << v;
  return s.str();
}

/// Writes T.runs.csv, T.curves.csv and T.meta.csv, and the progress lines.
class Recorder {
 public:
  Recorder(const Task& task, const std::string& dir, std::size_t planned_runs)
      : task_(task), planned_(planned_runs), start_(std::chrono::steady_clock::now()) {
    std::filesystem::create_directories(dir);
    const auto path = [&](const char* suffix) {
      return (std::filesystem::path(dir) / (task.name + suffix)).string();
    };
    open(runs_, path(".runs.csv"), "task,phase,optimizer,lr,seed,key,value\n");
    open(curves_, path(".curves.csv"), "task,optimizer,lr,seed,step,key,value\n");
    std::ofstream meta;
    open(meta, path(".meta.csv"), "key,value\n");
    meta << "name," << task.name << "\n"
         << "description,\"" << task.description << "\"\n"
         << "metric," << task.metric << "\n"
         << "higher_is_better," << (task.higher_is_better ? 1 : 0) << "\n"
         << "margin," << format_value(task.margin) << "\n"
         << "margin_relative," << (task.margin_relative ? 1 : 0) << "\n"
         << "divergence_value," << format_value(task.divergence_value) << "\n"
         << "base_lr," << format_value(task.base_lr) << "\n"
         << "curve," << (task.curve.empty() ? task.metric : task.curve) << "\n";
    meta.close();
    if (!meta) throw std::runtime_error("writing " + path(".meta.csv") + " failed");
  }

  void record(const Run& r, const Outcome& o, const Curves& curves) {
    const std::string prefix = task_.name + "," + phase_name(r.phase) + "," + r.arm->name + "," +
                               format_value(r.lr) + "," + std::to_string(r.seed) + ",";
    runs_ << prefix << "metric," << format_value(o.metric) << "\n";
    runs_ << prefix << "diverged," << (o.diverged ? 1 : 0) << "\n";
    for (const auto& [key, value] : o.extras) runs_ << prefix << key << "," << format_value(value) << "\n";
    runs_.flush();
    const std::string curve_prefix =
        task_.name + "," + r.arm->name + "," + format_value(r.lr) + "," + std::to_string(r.seed) + ",";
    for (const auto& p : curves.points())
      curves_ << curve_prefix << p.step << "," << p.key << "," << format_value(p.value) << "\n";
    if (!runs_ || !curves_) throw std::runtime_error("writing the results of " + task_.name + " failed");
    ++done_;
    progress(false, r);
  }

  /// A run more than planned (the grid grew).
  void plan_one_more() { ++planned_; }

  void progress(bool force, const Run& r) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    if (!force && std::chrono::duration<double>(now - last_print_).count() < 20) return;
    last_print_ = now;
    const double left = done_ == 0 ? 0 : elapsed / static_cast<double>(done_) *
                                             static_cast<double>(planned_ > done_ ? planned_ - done_ : 0);
    std::fprintf(stderr, "%s: run %zu/%zu (%s, %s, lr %.4g), %.0f s elapsed, about %.0f s left\n",
                 task_.name.c_str(), done_, planned_, r.arm->name.c_str(), phase_name(r.phase), r.lr,
                 elapsed, left);
    std::fflush(stderr);
  }

  void finish() {
    runs_.close();
    curves_.close();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, "%s: %zu runs in %.0f s\n", task_.name.c_str(), done_, elapsed);
    if (!runs_ || !curves_) throw std::runtime_error("writing the results of " + task_.name + " failed");
  }

 private:
  template <class Stream>
  static void open(Stream& s, const std::string& path, const char* header) {
    s.open(path);
    if (!s) throw std::runtime_error("cannot write " + path);
    s << header;
  }

  const Task& task_;
  std::ofstream runs_, curves_;
  std::size_t planned_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_print_{};
};

/// Runs one run and catches what a diverging optimizer throws (a non-finite
/// gradient), so that it counts as a diverged run instead of ending the study.
inline Outcome run_once(const Task& task, const Run& r, Curves& curves) {
  Outcome o;
  try {
    o = task.run(r, curves);
  } catch (const adamx::NonFiniteGradientError&) {
    o = Outcome{};
    o.diverged = true;
  }
  if (o.diverged || !std::isfinite(o.metric)) {
    o.diverged = true;
    o.metric = task.divergence_value;
  }
  // Anything worse than the divergence value scores as that value: a run
  // that ends worse than where it started has failed, however badly.
  o.metric = task.higher_is_better ? std::max(o.metric, task.divergence_value)
                                   : std::min(o.metric, task.divergence_value);
  return o;
}

/// The arms a task runs: every arm, less Muon where there are no matrices,
/// less any not in `only` (when it is not empty).
inline std::vector<const Arm*> arms_of(const Task& task, const std::vector<std::string>& only) {
  std::vector<const Arm*> out;
  for (const Arm& a : arms()) {
    if (steps_matrices(a) && !task.has_matrices) continue;
    if (!only.empty() && std::find(only.begin(), only.end(), a.name) == only.end()) continue;
    out.push_back(&a);
  }
  return out;
}

/// The whole protocol for one task: tune every arm, then evaluate it.
inline void run_protocol(const Task& task, const std::string& dir, bool quick,
                         const std::vector<std::string>& only) {
  Scale scale = quick ? quick_scale() : Scale{};
  if (scale.eval_seeds == 0) scale.eval_seeds = task.eval_seeds;
  const std::vector<const Arm*> chosen_arms = arms_of(task, only);
  if (chosen_arms.empty()) throw std::runtime_error("no arm of " + task.name + " matches --only");
  Recorder rec(task, dir,
               chosen_arms.size() *
                   static_cast<std::size_t>(scale.grid_points * scale.tune_seeds + scale.eval_seeds));
  const bool better_higher = task.higher_is_better;
  for (const Arm* arm : chosen_arms) {
    const double centre = task.base_lr * arm->lr_scale;
    // Grid offsets k (lr = centre · ratio^k) and their mean validation score.
    std::map<int, double> score;
    const auto tune_at = [&](int k) {
      double sum = 0;
      for (int seed = 1; seed <= scale.tune_seeds; ++seed) {
        Run r{arm, grid_lr(centre, k), seed, Phase::tune, quick};
        Curves none(false);
        const Outcome o = run_once(task, r, none);
        rec.record(r, o, none);
        sum += o.metric;
      }
      score[k] = sum / scale.tune_seeds;
    };
    const int half = scale.grid_points / 2;
    for (int k = -half; k <= scale.grid_points - 1 - half; ++k) tune_at(k);
    const auto best_k = [&] {
      int best = score.begin()->first;
      for (const auto& [k, s] : score)
        if (better_higher ? s > score[best] : s < score[best]) best = k;
      return best;
    };
    for (int extension = 0; extension < scale.max_extensions; ++extension) {
      const int b = best_k();
      int next;
      if (b == score.begin()->first) {
        next = b - 1;
      } else if (b == score.rbegin()->first) {
        next = b + 1;
      } else {
        break;
      }
      for (int s = 0; s < scale.tune_seeds; ++s) rec.plan_one_more();
      tune_at(next);
    }
    const double lr = grid_lr(centre, best_k());
    for (int i = 0; i < scale.eval_seeds; ++i) {
      Run r{arm, lr, kFirstEvalSeed + i, Phase::eval, quick};
      Curves curves(true);
      const Outcome o = run_once(task, r, curves);
      rec.record(r, o, curves);
    }
    rec.progress(true, Run{arm, lr, 0, Phase::eval, quick});
  }
  rec.finish();
}

}  // namespace study
