// study_eigen.cpp - the optimizer study's problems written with Eigen:
//
//   quadratic       a noisy ill-conditioned quadratic (condition number 10^4)
//   nonstationary   the same quadratic whose gradient noise jumps ×100 and back
//   digits          UCI optical digits, an MLP 64-32-10, batch 32
//   breast_cancer   UCI breast cancer Wisconsin (diagnostic), an MLP 30-32-2,
//                   batch 16: a tabular problem no setting was tuned on before
//
// Run by scripts/results; study_main.hpp describes the command line, study.hpp
// the protocol. docs/results.md describes each problem and why it is there.
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "idx_reader.hpp"
#include "mlp.hpp"
#include "study_eigen.hpp"
#include "study_main.hpp"

namespace {

using namespace adamx_example;
using study::Curves;
using study::Outcome;
using study::Run;
using study::Task;

// These problems train in a fraction of a second, so they afford twice the
// study's minimum of evaluation seeds: narrower intervals, and ties that can
// be shown within tighter margins.
constexpr int kEvalSeeds = 20;

// ------------------------------------------------------------ quadratics --

// f(x) = ½ Σ λ_i x_i², λ log-spaced over [1e-4, 1] (condition number 10^4),
// 200 coordinates in two groups of 100, like two layers of different
// curvature: "steep" holds the larger half of the λ (1 down to 1e-2), "flat"
// the smaller (1e-2 down to 1e-4). The gradient is λ⊙x + σ_t ξ,
// ξ standard normal; the metric is the exact f, averaged over the last 10 %
// of the steps (the noise floor the optimizer settles at). The start x0 and
// the noise come from the seed alone. "nonstationary": σ = 0.01, except ×100
// (σ = 1) for the middle 35 % of the run. A synthetic problem has no
// held-out data: tuning and evaluation differ by their seeds (start and
// noise), which is what generalising means here.
Task quadratic_task(bool nonstationary) {
  Task t;
  t.name = nonstationary ? "nonstationary" : "quadratic";
  t.description = nonstationary
                      ? "quadratic, 200 coordinates in 2 groups, condition number 1e4, gradient noise 0.01 "
                        "except x100 on steps 700-1399 of 2000"
                      : "quadratic, 200 coordinates in 2 groups, condition number 1e4, gradient noise 0.05, "
                        "2000 steps";
  t.metric = "mean loss over the last 10% of steps";
  t.curve = "loss f(x)";
  t.higher_is_better = false;
  // 5 %: the spread of the final loss between seeds of one optimizer is
  // about 10 % (its noise floor is a random variable); differences well
  // inside that do not change which optimizer a user should pick.
  t.margin = 0.05;
  t.margin_relative = true;
  t.divergence_value = 4;  // about f(x0) = ½ Σ λ E[x0²] = 3.6: no progress at all
  t.base_lr = 1e-2;
  t.eval_seeds = kEvalSeeds;
  t.has_matrices = false;
  t.run = [nonstationary](const Run& r, Curves& curves) {
    constexpr Index kDim = 100;
    const long steps = r.quick ? 400 : 2000;
    const long log_every = steps / 40;
    const long burst_begin = steps * 35 / 100, burst_end = steps * 70 / 100;
    Eigen::VectorXf lambda(2 * kDim);
    for (Index i = 0; i < 2 * kDim; ++i)
      lambda[i] = static_cast<float>(std::pow(10.0, -4.0 * static_cast<double>(i) / static_cast<double>(2 * kDim - 1)));
    const Eigen::VectorXf la = lambda.head(kDim), lb = lambda.tail(kDim);
    std::mt19937 rng(static_cast<std::uint32_t>(r.seed));
    Eigen::VectorXf a(kDim), b(kDim), ga(kDim), gb(kDim);
    for (Index i = 0; i < kDim; ++i) a[i] = uniform_pm(rng, 1.0f);
    for (Index i = 0; i < kDim; ++i) b[i] = uniform_pm(rng, 1.0f);
    std::mt19937 noise(5000u + static_cast<std::uint32_t>(r.seed));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const auto sigma = [&](long step) {
      if (!nonstationary) return 0.05f;
      return (step >= burst_begin && step < burst_end) ? 1.0f : 0.01f;
    };
    const auto f = [&] {
      return 0.5 * ((la.array() * a.array().square()).cast<double>().sum() +
                    (lb.array() * b.array().square()).cast<double>().sum());
    };
    std::vector<study::EigenLayer> layers = {{"steep", {a}, {ga}, true}, {"flat", {b}, {gb}, true}};
    const study::EigenGroups groups = study::group_layers(*r.arm, layers);
    study::EigenStepMeter meter(layers);
    Outcome out;
    const long tail_begin = steps - steps / 10;
    double tail_sum = 0, burst_sum = 0;
    long burst_count = 0;
    study::with_eigen_optimizer(*r.arm, r.lr, groups, [&](auto& opt) {
      for (long step = 1; step <= steps; ++step) {
        const float s = sigma(step);
        for (Index i = 0; i < kDim; ++i) ga[i] = la[i] * a[i] + s * normal(noise);
        for (Index i = 0; i < kDim; ++i) gb[i] = lb[i] * b[i] + s * normal(noise);
        const bool log = curves.keep() && step % log_every == 0;
        if (log) meter.take();
        const auto& reports = opt.step(groups.params, groups.grads);
        const double loss = f();
        if (!std::isfinite(loss)) {
          out.diverged = true;
          return;
        }
        if (step > tail_begin) tail_sum += loss;
        // The last tenth of the burst: how high the loss got while the noise
        // was high (the optimizer's step under the burst).
        if (step >= burst_end - (burst_end - burst_begin) / 10 && step < burst_end) {
          burst_sum += loss;
          ++burst_count;
        }
        if (log) {
          curves.add(step, "metric", loss);
          curves.add(step, "train_loss", loss);
          meter.record(step, r.lr, curves);
          study::record_gammas(reports, groups, step, curves);
        }
      }
    });
    if (out.diverged) return out;
    out.metric = tail_sum / static_cast<double>(steps - tail_begin);
    if (nonstationary) out.extras.push_back({"burst_loss", burst_sum / static_cast<double>(burst_count)});
    return out;
  };
  return t;
}

// ------------------------------------------------------- classification --

struct Splits {
  Dataset train, validation, test;
  Index classes = 0;
};

// Standardises every feature by the training rows' mean and deviation
// (tabular features have unrelated scales; pixels share one, see
// mlp.hpp's standardise()).
void standardise_features(Splits& s) {
  const Eigen::VectorXd mean = s.train.x.cast<double>().rowwise().mean();
  const Eigen::VectorXd sd =
      ((s.train.x.cast<double>().colwise() - mean).array().square().rowwise().mean()).sqrt();
  for (Dataset* d : {&s.train, &s.validation, &s.test})
    for (Index i = 0; i < d->x.rows(); ++i) {
      const double scale = sd[i] > 0 ? 1.0 / sd[i] : 1.0;
      d->x.row(i) = ((d->x.row(i).cast<double>().array() - mean[i]) * scale).cast<float>();
    }
}

struct ClassificationSpec {
  std::string name, description;
  Index hidden = 32;
  Index batch = 32;
  int epochs = 20;
  int quick_epochs = 2;
  double base_lr = 1e-3;
  double margin = 0.02;  // relative, on the test cross-entropy
};

// An MLP (mlp.hpp: ReLU hidden layer, Kaiming-uniform initialisation from the
// seed) trained with minibatches in an order drawn from the seed; the metric
// is the mean cross-entropy on the held-out split, accuracy an extra.
Task classification_task(const ClassificationSpec& spec, std::shared_ptr<const Splits> data) {
  Task t;
  t.name = spec.name;
  t.description = spec.description;
  t.metric = "validation/test cross-entropy";
  t.higher_is_better = false;
  t.margin = spec.margin;
  t.margin_relative = true;
  t.divergence_value = std::log(static_cast<double>(data->classes));  // a uniform prediction
  t.base_lr = spec.base_lr;
  t.eval_seeds = kEvalSeeds;
  t.has_matrices = true;
  t.run = [spec, data](const Run& r, Curves& curves) {
    const Dataset& held_out = r.phase == study::Phase::tune ? data->validation : data->test;
    Mlp m = init_mlp(data->train.x.rows(), spec.hidden, data->classes, static_cast<std::uint32_t>(r.seed));
    Workspace ws;
    // Gradients get their final shapes now: the optimizer's groups view them.
    ws.gw1.resize(m.w1.rows(), m.w1.cols());
    ws.gb1.resize(m.b1.size());
    ws.gw2.resize(m.w2.rows(), m.w2.cols());
    ws.gb2.resize(m.b2.size());
    // Muon steps both weight matrices: a one-hidden-layer MLP has no
    // hidden-to-hidden matrix, and leaving Muon nothing would not test it.
    std::vector<study::EigenLayer> layers = {{"fc1", {m.w1, m.b1}, {ws.gw1, ws.gb1}, true},
                                             {"fc2", {m.w2, m.b2}, {ws.gw2, ws.gb2}, true}};
    const study::EigenGroups groups = study::group_layers(*r.arm, layers);
    study::EigenStepMeter meter(layers);
    const int epochs = r.quick ? spec.quick_epochs : spec.epochs;
    const Index n = data->train.x.cols();
    const long steps_per_epoch = static_cast<long>((n + spec.batch - 1) / spec.batch);
    const long total_steps = steps_per_epoch * epochs;
    const long log_every = std::max(1L, total_steps / 30);
    Outcome out;
    Workspace eval_ws;
    study::with_eigen_optimizer(*r.arm, r.lr, groups, [&](auto& opt) {
      std::mt19937 order(1000u + static_cast<std::uint32_t>(r.seed));
      Eigen::VectorXi perm = Eigen::VectorXi::LinSpaced(n, 0, static_cast<int>(n) - 1);
      long step = 0;
      double loss_sum = 0;
      long loss_count = 0;
      const auto evaluate_held_out = [&] {
        const study::EvaluationPoint<std::decay_t<decltype(opt)>> at_x(opt, groups);
        return evaluate(m, held_out, eval_ws);
      };
      for (int epoch = 0; epoch < epochs; ++epoch) {
        shuffle(perm, order);
        for (Index start = 0; start < n; start += spec.batch) {
          const Index len = std::min(spec.batch, n - start);
          const auto idx = perm.segment(start, len);
          ws.x = data->train.x(Eigen::all, idx);
          ws.y.resize(static_cast<std::size_t>(len));
          for (Index j = 0; j < len; ++j)
            ws.y[static_cast<std::size_t>(j)] = data->train.labels[static_cast<std::size_t>(idx[j])];
          forward(m, ws.x, ws);
          const double loss = softmax_xent(ws, ws.y, 0, true) / static_cast<double>(len);
          if (!std::isfinite(loss)) {
            out.diverged = true;
            return;
          }
          loss_sum += loss;
          ++loss_count;
          backward(m, ws);
          ++step;
          const bool log = curves.keep() && (step % log_every == 0 || step == total_steps);
          if (log) meter.take();
          const auto& reports = opt.step(groups.params, groups.grads);
          if (log) {
            curves.add(step, "metric", evaluate_held_out().loss);
            curves.add(step, "train_loss", loss_sum / static_cast<double>(loss_count));
            loss_sum = 0;
            loss_count = 0;
            meter.record(step, r.lr, curves);
            study::record_gammas(reports, groups, step, curves);
          }
        }
      }
      const Evaluation ev = evaluate_held_out();
      out.metric = ev.loss;
      out.extras.push_back({"accuracy", ev.accuracy});
    });
    return out;
  };
  return t;
}

// Rows of comma-separated numbers whose last field is a class label in
// [0, classes): the features as floats and the labels.
struct LabelledRows {
  std::vector<std::vector<float>> features;
  std::vector<int> labels;
};

LabelledRows read_labelled_rows(std::istream& text, const std::string& path, std::size_t features,
                                int classes, std::size_t expected_rows) {
  LabelledRows out;
  std::string line;
  while (std::getline(text, line)) {
    if (line.empty()) continue;
    std::vector<float> values;
    std::stringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) values.push_back(std::stof(field));
    if (values.size() != features + 1)
      throw std::runtime_error(path + ": a row without " + std::to_string(features + 1) + " fields");
    const int label = static_cast<int>(values.back());
    if (label < 0 || label >= classes) throw std::runtime_error(path + ": label out of range");
    values.pop_back();
    out.features.push_back(std::move(values));
    out.labels.push_back(label);
  }
  if (out.features.size() != expected_rows)
    throw std::runtime_error(path + ": expected " + std::to_string(expected_rows) + " rows, got " +
                             std::to_string(out.features.size()));
  return out;
}

// Splits rows order[0, n_train), [n_train, n_train + n_validation) and the
// rest into train, validation and test, each feature multiplied by `scale`,
// then standardised by the training rows.
Splits split_rows(const LabelledRows& data, const Eigen::VectorXi& order, Index n_train, Index n_validation,
                  int classes, float scale) {
  Splits s;
  s.classes = classes;
  const auto n_features = static_cast<Index>(data.features.front().size());
  const auto fill = [&](Dataset& d, Index from, Index to) {
    d.x.resize(n_features, to - from);
    for (Index j = from; j < to; ++j) {
      const auto row = static_cast<std::size_t>(order[j]);
      for (Index i = 0; i < n_features; ++i) d.x(i, j - from) = data.features[row][static_cast<std::size_t>(i)] * scale;
      d.labels.push_back(data.labels[row]);
    }
  };
  fill(s.train, 0, n_train);
  fill(s.validation, n_train, n_train + n_validation);
  fill(s.test, n_train + n_validation, order.size());
  standardise_features(s);
  return s;
}

// UCI optical recognition of handwritten digits (Alpaydin & Kaynak 1998;
// CC BY 4.0; data/digits.csv.gz): 1797 rows of 64 pixels (0..16) and a label.
// Rows 0-1046 train, 1047-1296 validate, 1297-1796 test; every pixel
// standardised by the training rows.
Splits load_digits(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    throw study::MissingData("digits data not found at " + path + " (it ships in the repository's data/)");
  const std::vector<std::uint8_t> bytes = idx::read_gzip(path);
  std::istringstream text(std::string(bytes.begin(), bytes.end()));
  const LabelledRows rows = read_labelled_rows(text, path, 64, kClasses, 1797);
  return split_rows(rows, Eigen::VectorXi::LinSpaced(1797, 0, 1796), 1047, 250, kClasses, 1.0f / 16.0f);
}

// UCI breast cancer Wisconsin (diagnostic) (Wolberg, Street & Mangasarian
// 1995; CC BY 4.0), as Debian's python3-sklearn ships it: a header line
// "569,30,..." then 569 rows of 30 features and a label (0 malignant, 1
// benign). The rows are split once, by a fixed shuffle independent of any
// run's seed, into 341 train, 114 validation and 114 test; features are
// standardised by the training rows.
Splits load_breast_cancer(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw study::MissingData("breast cancer data not found at " + path + " (apt-get install python3-sklearn)");
  std::string header;
  std::getline(in, header);
  const LabelledRows rows = read_labelled_rows(in, path, 30, 2, 569);
  Eigen::VectorXi order = Eigen::VectorXi::LinSpaced(569, 0, 568);
  std::mt19937 split_rng(19950101u);  // fixed: the split is part of the task, not of a run
  shuffle(order, split_rng);
  return split_rows(rows, order, 341, 114, 2, 1.0f);
}

study::TaskEntry digits_entry() {
  return {"digits", [](const study::DataPaths& paths) {
            ClassificationSpec spec;
            spec.name = "digits";
            spec.description = "UCI digits (1047 train, 250 validation, 500 test), MLP 64-32-10, batch 32, 20 epochs";
            spec.hidden = 32;
            spec.batch = 32;
            spec.epochs = 20;
            spec.base_lr = 1e-2;
            // 2 %: on 500 test images one image more or less correct moves
            // the cross-entropy by about that much.
            spec.margin = 0.02;
            return classification_task(spec, std::make_shared<const Splits>(load_digits(paths.digits_file)));
          }};
}

study::TaskEntry breast_cancer_entry() {
  return {"breast_cancer", [](const study::DataPaths& paths) {
            ClassificationSpec spec;
            spec.name = "breast_cancer";
            spec.description =
                "UCI breast cancer Wisconsin (341 train, 114 validation, 114 test), MLP 30-32-2, batch 16, 40 epochs";
            spec.hidden = 32;
            spec.batch = 16;
            spec.epochs = 40;
            spec.quick_epochs = 4;
            spec.base_lr = 1e-3;
            // 5 %: 114 test rows make the cross-entropy of one seed move by
            // several percent with a single borderline case.
            spec.margin = 0.05;
            return classification_task(spec,
                                       std::make_shared<const Splits>(load_breast_cancer(paths.breast_cancer_file)));
          }};
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<study::TaskEntry> tasks = {
      {"quadratic", [](const study::DataPaths&) { return quadratic_task(false); }},
      {"nonstationary", [](const study::DataPaths&) { return quadratic_task(true); }},
      digits_entry(),
      breast_cancer_entry(),
  };
  return study::study_main(argc, argv, "study_eigen", tasks);
}
