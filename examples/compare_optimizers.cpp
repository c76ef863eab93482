// compare_optimizers.cpp - does AdamX help? Every optimizer adamx has, over
// several seeds, on four problems, written as one tidy CSV per problem.
//
//   compare_optimizers --problem NAME --out DIR [--seeds N] [--data DIR]
//                      [--digits FILE] [--epochs N]
//
// Problems (docs/results.md describes each and why it is there):
//   fashion        Fashion-MNIST, the demo's MLP (784-128-10), batch 128
//   digits         UCI digits, softmax regression (64-10), batch 32
//   quadratic      a noisy ill-conditioned quadratic (condition number 10^4)
//   nonstationary  the same quadratic whose gradient noise jumps ×100 and back
// Each runs every optimizer of the library (and AMSGrad) with its default
// hyperparameters at the problem's base learning rate, and Adam and AdamX
// also at a third and three times that rate (the learning-rate sweep). Muon
// steps the weight matrices (at that rate) and its AdamW steps the biases
// (at the authors' 3e-4); it needs matrices, so the quadratics leave it out.
// Within a seed every optimizer starts from the same parameters and sees the
// same minibatches or noise, so the optimizer is the only difference.
//
// Output: DIR/NAME.csv with the columns
//   problem,optimizer,lr,seed,step,loss,test_loss,test_accuracy,gamma_group0,gamma_group1
// (one row per logged step; test columns only where evaluated; γ is 1 for
// every optimizer but AdamX). A progress line goes to stderr.
//
// Exit codes: 0 success, 1 unreadable data, 2 bad arguments, 77 Fashion-MNIST
// not installed (Debian package dataset-fashion-mnist).
#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "command_line.hpp"
#include "mlp.hpp"

namespace {

using namespace adamx_example;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- options --

struct Config {
  std::string problem;
  std::string out_dir;
  int seeds = 5;
  int epochs = 3;  // Fashion-MNIST only
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";
  std::string digits_file = "data/digits.csv.gz";
};

Config parse(int argc, char** argv) {
  Config c;
  adamx_cli::Parser parser("compare_optimizers", "--problem NAME --out DIR [options]",
                           "Every optimizer over seeds on one problem, one CSV (DIR/NAME.csv).");
  parser.add("--problem", "NAME", "the problem", c.problem, {"fashion", "digits", "quadratic", "nonstationary"})
      .required()
      .add("--out", "DIR", "directory for the CSV", c.out_dir)
      .required()
      .add("--seeds", "N", "seeds per optimizer", c.seeds, 1, 1000)
      .add("--epochs", "N", "epochs (Fashion-MNIST only)", c.epochs, 1, 1000)
      .add("--data", "DIR", "Fashion-MNIST directory", c.fashion_dir)
      .add("--digits", "FILE", "the digits CSV", c.digits_file);
  parser.parse(argc, argv);
  return c;
}

// ------------------------------------------------------------- the runs --

// One configuration: an optimizer at a learning rate.
struct Arm {
  std::string optimizer;
  double lr;
};

std::vector<Arm> arms(double base_lr, bool with_matrices) {
  std::vector<Arm> out;
  // Every optimizer of the library (rules.hpp's list, so an optimizer
  // added there is compared here), and Adam with AMSGrad after Adam; one
  // that steps whole matrices only on a problem that has them.
#define ADAMX_ARM(Name)                                                      \
  if (with_matrices || !adamx::Name<float>::matrix_rule) out.push_back({#Name, base_lr}); \
  if (std::string(#Name) == "Adam") out.push_back({"AMSGrad", base_lr});
  ADAMX_FOR_EACH_OPTIMIZER(ADAMX_ARM)
#undef ADAMX_ARM
  for (const double factor : {1.0 / 3.0, 3.0})
    for (const char* name : {"Adam", "AdamX"}) out.push_back({name, base_lr * factor});
  return out;
}

// Calls body(optimizer) with a fresh float optimizer of the named kind; its
// options (defaults, at `lr`) are handed to add_groups(optimizer, options).
template <class Body>
void with_optimizer(const Arm& arm, Body body) {
  const auto run = [&](auto optimizer, auto options) {
    options.lr = arm.lr;
    body(optimizer, options);
  };
  if (arm.optimizer == "AMSGrad") {
    adamx::AdamOptions o;
    o.amsgrad = true;
    return run(adamx::Adam<float>{}, o);
  }
#define ADAMX_RUN_ARM(Name) \
  if (arm.optimizer == #Name) return run(adamx::Name<float>{}, adamx::Name##Options{});
  ADAMX_FOR_EACH_OPTIMIZER(ADAMX_RUN_ARM)
#undef ADAMX_RUN_ARM
  throw std::logic_error("unknown optimizer " + arm.optimizer);
}

// An optimizer whose parameters hold a training point other than the point
// to evaluate (Schedule-Free AdamW: y, and x) is evaluated at x: eval() for
// the lifetime of this object, train() after. Others are evaluated as they are.
template <class Opt, class Params>
auto switch_point(Opt& opt, Params& params, bool evaluate, int) -> decltype(opt.eval(params), void()) {
  if (evaluate) {
    opt.eval(params);
  } else {
    opt.train(params);
  }
}
template <class Opt, class Params>
void switch_point(Opt&, Params&, bool, long) {}

template <class Opt>
class EvaluationPointOf {
 public:
  template <class Model>
  EvaluationPointOf(Opt& opt, Model& model) : opt_(opt) {
    if (model.linear) {
      params_ = {{model.m.w2, model.m.b2}};
    } else {
      params_ = {{model.m.w1, model.m.b1}, {model.m.w2, model.m.b2}};
    }
    switch_point(opt_, params_, true, 0);
  }
  ~EvaluationPointOf() { switch_point(opt_, params_, false, 0); }
  EvaluationPointOf(const EvaluationPointOf&) = delete;
  EvaluationPointOf& operator=(const EvaluationPointOf&) = delete;

 private:
  Opt& opt_;
  std::vector<std::vector<adamx::TensorRef<float>>> params_;
};

// The CSV and the progress line.
class Recorder {
 public:
  Recorder(const Config& c, std::size_t total_runs)
      : problem_(c.problem), total_(total_runs), start_(Clock::now()) {
    std::filesystem::create_directories(c.out_dir);
    path_ = (std::filesystem::path(c.out_dir) / (c.problem + ".csv")).string();
    out_.open(path_);
    if (!out_) throw std::runtime_error("cannot write " + path_);
    out_ << "problem,optimizer,lr,seed,step,loss,test_loss,test_accuracy,gamma_group0,gamma_group1\n";
  }
  void begin(const Arm& arm, int seed) {
    arm_ = arm;
    seed_ = seed;
    ++done_;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    std::fprintf(stderr, "\r%-13s run %3zu/%zu  %-8s lr %-8.3g seed %d  %6.0f s elapsed ", problem_.c_str(),
                 done_, total_, arm.optimizer.c_str(), arm.lr, seed, elapsed);
    std::fflush(stderr);
  }
  // test_loss < 0: not evaluated at this step.
  void row(long step, double loss, double test_loss, double test_accuracy, double gamma0, double gamma1) {
    out_ << problem_ << ',' << arm_.optimizer << ',' << arm_.lr << ',' << seed_ << ',' << step << ','
         << loss << ',';
    if (test_loss >= 0) out_ << test_loss << ',' << test_accuracy;
    else out_ << ',';
    out_ << ',' << gamma0 << ',' << gamma1 << '\n';
  }
  void finish() {
    out_.close();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    std::fprintf(stderr, "\n%s: %zu runs in %.0f s -> %s\n", problem_.c_str(), total_, elapsed, path_.c_str());
    if (!out_) throw std::runtime_error("writing " + path_ + " failed");
  }

 private:
  std::string problem_, path_;
  std::size_t total_, done_ = 0;
  Clock::time_point start_;
  std::ofstream out_;
  Arm arm_;
  int seed_ = 0;
};

// ------------------------------------------------- classification problems --

// A classifier: the MLP, or with `linear` the softmax regression W x + b
// (w1, b1 unused then, w2 is classes x inputs).
struct Classifier {
  Mlp m;
  bool linear = false;
};

void classifier_forward(const Classifier& c, const Eigen::Ref<const Matrix>& x, Workspace& ws) {
  if (!c.linear) return forward(c.m, x, ws);
  ws.logits.resize(c.m.w2.rows(), x.cols());
  ws.logits.noalias() = c.m.w2 * x;
  ws.logits.colwise() += c.m.b2;
}

Evaluation classifier_evaluate(const Classifier& c, const Dataset& data, Workspace& ws) {
  if (!c.linear) return evaluate(c.m, data, ws);
  classifier_forward(c, data.x, ws);
  Evaluation ev;
  long correct = 0;
  for (Index j = 0; j < data.x.cols(); ++j) {
    Index k = 0;
    ws.logits.col(j).maxCoeff(&k);
    if (static_cast<int>(k) == data.labels[static_cast<std::size_t>(j)]) ++correct;
  }
  ev.loss = softmax_xent(ws, data.labels, 0, false) / static_cast<double>(data.x.cols());
  ev.accuracy = 100.0 * static_cast<double>(correct) / static_cast<double>(data.x.cols());
  return ev;
}

struct ClassificationSetup {
  Dataset train, test;
  Index hidden = 0;  // 0: softmax regression
  Index batch = 0;
  int epochs = 0;
  long log_every = 0;  // steps per logged training-loss row
  double base_lr = 0;
};

void run_classification(const Config& c, const ClassificationSetup& s) {
  const std::vector<Arm> all = arms(s.base_lr, true);
  Recorder rec(c, all.size() * static_cast<std::size_t>(c.seeds));
  Workspace ws;
  for (int seed = 1; seed <= c.seeds; ++seed) {
    for (const Arm& arm : all) {
      rec.begin(arm, seed);
      Classifier model;
      model.linear = s.hidden == 0;
      const Index n_in = s.train.x.rows();
      if (model.linear) {
        model.m = init_mlp(n_in, kClasses, kClasses, static_cast<std::uint32_t>(seed));
        // Use the first layer's initialisation scale for the single layer.
        model.m.w2 = model.m.w1.topRows(kClasses) / std::sqrt(2.0f);
      } else {
        model.m = init_mlp(n_in, s.hidden, kClasses, static_cast<std::uint32_t>(seed));
      }
      with_optimizer(arm, [&](auto opt, auto options) {
        // An optimizer that steps whole matrices (Muon) gets the weights in
        // one group and the biases in another, its AdamW's; any other one
        // group per layer.
        constexpr bool by_kind = decltype(opt)::matrix_rule;
        if constexpr (by_kind) {
          if (model.linear) {
            opt.add_group({model.m.w2}, options, "weights", {"linear.weight"});
            opt.add_group({model.m.b2}, adamx::muon_adamw_options(), "biases", {"linear.bias"});
          } else {
            opt.add_group({model.m.w1, model.m.w2}, options, "weights", {"fc1.weight", "fc2.weight"});
            opt.add_group({model.m.b1, model.m.b2}, adamx::muon_adamw_options(), "biases", {"fc1.bias", "fc2.bias"});
          }
        } else if (model.linear) {
          opt.add_group({model.m.w2, model.m.b2}, options, "linear", {"weight", "bias"});
        } else {
          opt.add_group({model.m.w1, model.m.b1}, options, "fc1", {"weight", "bias"});
          opt.add_group({model.m.w2, model.m.b2}, options, "fc2", {"weight", "bias"});
        }
        std::mt19937 order(1000u + static_cast<std::uint32_t>(seed));  // same batches for every arm
        Eigen::VectorXi perm = Eigen::VectorXi::LinSpaced(s.train.x.cols(), 0, static_cast<int>(s.train.x.cols()) - 1);
        long step = 0;
        double loss_sum = 0;
        long loss_count = 0;
        double gamma[2] = {1.0, 1.0};
        for (int epoch = 0; epoch < s.epochs; ++epoch) {
          shuffle(perm, order);
          const Index n = perm.size();
          for (Index start = 0; start < n; start += s.batch) {
            const Index len = std::min(s.batch, n - start);
            const auto idx = perm.segment(start, len);
            ws.x = s.train.x(Eigen::all, idx);
            ws.y.resize(static_cast<std::size_t>(len));
            for (Index j = 0; j < len; ++j)
              ws.y[static_cast<std::size_t>(j)] = s.train.labels[static_cast<std::size_t>(idx[j])];
            classifier_forward(model, ws.x, ws);
            loss_sum += softmax_xent(ws, ws.y, 0, true) / static_cast<double>(len);
            ++loss_count;
            if (model.linear) {
              ws.gw2.noalias() = ws.logits * ws.x.transpose();
              ws.gb2 = ws.logits.rowwise().sum();
              if constexpr (by_kind) {
                const auto& reports = opt.step({{model.m.w2}, {model.m.b2}}, {{ws.gw2}, {ws.gb2}});
                gamma[0] = reports[0].gamma;
                gamma[1] = reports[1].gamma;
              } else {
                gamma[0] = opt.step({{model.m.w2, model.m.b2}}, {{ws.gw2, ws.gb2}})[0].gamma;
              }
            } else {
              backward(model.m, ws);
              const auto& reports =
                  by_kind ? opt.step({{model.m.w1, model.m.w2}, {model.m.b1, model.m.b2}},
                                     {{ws.gw1, ws.gw2}, {ws.gb1, ws.gb2}})
                          : opt.step({{model.m.w1, model.m.b1}, {model.m.w2, model.m.b2}},
                                     {{ws.gw1, ws.gb1}, {ws.gw2, ws.gb2}});
              gamma[0] = reports[0].gamma;
              gamma[1] = reports[1].gamma;
            }
            ++step;
            const bool epoch_end = start + s.batch >= n;
            if (step % s.log_every == 0 || epoch_end) {
              double test_loss = -1, test_accuracy = 0;
              if (epoch_end) {
                const EvaluationPointOf<std::decay_t<decltype(opt)>> at_x(opt, model);
                const Evaluation ev = classifier_evaluate(model, s.test, ws);
                test_loss = ev.loss;
                test_accuracy = ev.accuracy;
              }
              rec.row(step, loss_sum / static_cast<double>(loss_count), test_loss, test_accuracy, gamma[0],
                      gamma[1]);
              loss_sum = 0;
              loss_count = 0;
            }
          }
        }
      });
    }
  }
  rec.finish();
}

// UCI digits: 1797 rows of 64 pixels (0..16) and a label. The first 1297 rows
// train, the last 500 test; pixels are standardised as in the demo.
void load_digits(const std::string& path, Dataset& train, Dataset& test) {
  // The file is gzip-compressed: read it with zlib through idx_reader's helper.
  const std::vector<std::uint8_t> bytes = idx::read_gzip(path);
  std::istringstream text(std::string(bytes.begin(), bytes.end()));
  std::vector<std::vector<float>> rows;
  std::vector<int> labels;
  std::string line;
  while (std::getline(text, line)) {
    if (line.empty()) continue;
    std::vector<float> values;
    std::stringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) values.push_back(std::stof(field));
    if (values.size() != 65) throw std::runtime_error(path + ": a row without 65 fields");
    const int label = static_cast<int>(values.back());
    if (label < 0 || label >= kClasses) throw std::runtime_error(path + ": label out of range");
    values.pop_back();
    rows.push_back(values);
    labels.push_back(label);
  }
  if (rows.size() != 1797) throw std::runtime_error(path + ": expected 1797 rows, got " + std::to_string(rows.size()));
  const Index n_train = 1297;
  const auto fill = [&](Dataset& d, Index from, Index to) {
    d.x.resize(64, to - from);
    for (Index j = from; j < to; ++j) {
      for (Index i = 0; i < 64; ++i) d.x(i, j - from) = rows[static_cast<std::size_t>(j)][static_cast<std::size_t>(i)] / 16.0f;
      d.labels.push_back(labels[static_cast<std::size_t>(j)]);
    }
    d.rows = d.cols = 8;
  };
  fill(train, 0, n_train);
  fill(test, n_train, static_cast<Index>(rows.size()));
  standardise(train, test);
}

// ---------------------------------------------------- quadratic problems --

// f(x) = ½ Σ λ_i x_i², λ log-spaced over [1e-4, 1] (condition number 10^4),
// 200 coordinates in two groups of 100, like two layers of different
// curvature: "half0" holds λ from 1 down to 1e-2, "half1" from 1e-2 to 1e-4.
// The gradient is λ⊙x + σ_t ξ with ξ standard normal; the loss logged is the
// exact f. "nonstationary": σ jumps from 0.01 to 1 (×100) for steps
// [700, 1400) and back.
void run_quadratic(const Config& c, bool nonstationary) {
  constexpr Index kDim = 100;
  constexpr long kSteps = 2000;
  constexpr long kLogEvery = 10;
  const double base_lr = 1e-2;
  Eigen::VectorXf lambda(2 * kDim);
  for (Index i = 0; i < 2 * kDim; ++i)
    lambda[i] = static_cast<float>(std::pow(10.0, -4.0 * static_cast<double>(i / 2) / static_cast<double>(kDim - 1)));
  const auto sigma = [&](long step) {
    if (!nonstationary) return 0.05f;
    return (step >= 700 && step < 1400) ? 1.0f : 0.01f;
  };
  const std::vector<Arm> all = arms(base_lr, false);
  Recorder rec(c, all.size() * static_cast<std::size_t>(c.seeds));
  for (int seed = 1; seed <= c.seeds; ++seed) {
    for (const Arm& arm : all) {
      rec.begin(arm, seed);
      std::mt19937 rng(static_cast<std::uint32_t>(seed));
      Eigen::VectorXf x0(2 * kDim);
      for (Index i = 0; i < x0.size(); ++i) x0[i] = uniform_pm(rng, 1.0f);
      Eigen::VectorXf a = x0.head(kDim), b = x0.tail(kDim), ga(kDim), gb(kDim);
      const auto la = lambda.head(kDim), lb = lambda.tail(kDim);
      std::mt19937 noise(5000u + static_cast<std::uint32_t>(seed));  // same noise for every arm
      std::normal_distribution<float> normal(0.0f, 1.0f);
      with_optimizer(arm, [&](auto opt, auto options) {
        opt.add_group({a}, options, "half0");
        opt.add_group({b}, options, "half1");
        for (long step = 1; step <= kSteps; ++step) {
          const float s = sigma(step);
          for (Index i = 0; i < kDim; ++i) ga[i] = la[i] * a[i] + s * normal(noise);
          for (Index i = 0; i < kDim; ++i) gb[i] = lb[i] * b[i] + s * normal(noise);
          const auto& reports = opt.step({{a}, {b}}, {{ga}, {gb}});
          if (step % kLogEvery == 0) {
            const double f = 0.5 * ((la.array() * a.array().square()).cast<double>().sum() +
                                    (lb.array() * b.array().square()).cast<double>().sum());
            rec.row(step, f, -1, 0, reports[0].gamma, reports[1].gamma);
          }
        }
      });
    }
  }
  rec.finish();
}

int run(const Config& c) {
  if (c.problem == "quadratic" || c.problem == "nonstationary") {
    run_quadratic(c, c.problem == "nonstationary");
    return 0;
  }
  ClassificationSetup s;
  if (c.problem == "digits") {
    load_digits(c.digits_file, s.train, s.test);
    s.batch = 32;
    s.epochs = 20;
    s.log_every = 10;
    s.base_lr = 1e-2;
  } else {
    for (const char* f : kFiles)
      if (!std::filesystem::is_regular_file(std::filesystem::path(c.fashion_dir) / f)) {
        std::fprintf(stderr,
                     "compare_optimizers: Fashion-MNIST not found in %s (apt-get install "
                     "dataset-fashion-mnist, or --data DIR)\n",
                     c.fashion_dir.c_str());
        return kMissingDatasetExit;
      }
    s.train = load_split(c.fashion_dir, kFiles[0], kFiles[1]);
    s.test = load_split(c.fashion_dir, kFiles[2], kFiles[3]);
    standardise(s.train, s.test);
    s.hidden = 128;
    s.batch = 128;
    s.epochs = c.epochs;
    s.log_every = 20;
    s.base_lr = 1e-3;
  }
  run_classification(c, s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\ncompare_optimizers: %s\n", e.what());
    return 1;
  }
}
