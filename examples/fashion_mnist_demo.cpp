// fashion_mnist_demo.cpp - Adam vs AdamX training the same MLP on Fashion-MNIST.
//
// Both optimizers start from the same initial weights, see the same minibatches
// in the same order and use the same learning rate, so the only difference
// between the two runs is AdamX's gamma factor in the second-moment update.
//
//   fashion_mnist_demo [--data DIR] [--epochs N] [--batch N] [--lr X]
//                      [--seed N] [--hidden N]
//
// Exit codes: 0 success, 1 unreadable/corrupt data, 2 bad arguments,
// 77 dataset not installed (Debian package dataset-fashion-mnist).
#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "command_line.hpp"
#include "epoch_table.hpp"
#include "mlp.hpp"

namespace {

using namespace adamx_example;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- options --

struct Config {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int epochs = 10;
  int batch = 128;
  double lr = 1e-3;
  std::uint32_t seed = 1;
  int hidden = 128;
};

Config parse_args(int argc, char** argv) {
  Config c;
  adamx_cli::Parser parser("fashion_mnist_demo", "[options]",
                           "Adam against AdamX on the same MLP, weights and minibatches.");
  parser.add("--data", "DIR", "directory with the four Fashion-MNIST *-ubyte.gz files", c.data_dir)
      .add("--epochs", "N", "passes over the 60000 training images", c.epochs, 1, 1000)
      .add("--batch", "N", "minibatch size", c.batch, 1, 60000)
      .add("--lr", "X", "learning rate, the same for Adam and AdamX", c.lr)
      .add("--seed", "N", "seed for initial weights and batch order", c.seed)
      .add("--hidden", "N", "hidden units", c.hidden, 1, 100000);
  parser.parse(argc, argv);
  return c;
}

// ------------------------------------------------------------------- data --

// The dataset, the model, its forward and backward passes and the evaluation
// are shared with the optimizer comparison (examples/mlp.hpp).


// -------------------------------------------------------------- training --

struct EpochStats {
  double train_loss = 0.0;  // mean over the epoch's samples, each measured before its step
  double seconds = 0.0;     // training only, evaluation excluded
  long skipped_steps = 0;   // steps the optimizer reported as not applied
  std::array<GammaRange, 2> gamma;  // per parameter group: fc1, fc2
};

// One pass over the training set in the order given by `perm`. Templated on
// the optimizer so Adam and AdamX run literally the same code.
template <class Optimizer>
EpochStats train_epoch(Mlp& m, Optimizer& opt, const Dataset& train, const Eigen::VectorXi& perm, Index batch,
                       Workspace& ws) {
  const auto t0 = Clock::now();
  EpochStats st;
  const Index n = perm.size();
  double loss_sum = 0.0;
  for (Index start = 0; start < n; start += batch) {
    const Index len = std::min(batch, n - start);
    const auto idx = perm.segment(start, len);
    ws.x = train.x(Eigen::all, idx);  // gather the shuffled columns into the batch buffer
    ws.y.resize(static_cast<std::size_t>(len));
    for (Index j = 0; j < len; ++j) ws.y[static_cast<std::size_t>(j)] = train.labels[static_cast<std::size_t>(idx[j])];

    forward(m, ws.x, ws);
    loss_sum += softmax_xent(ws, ws.y, 0, true);
    backward(m, ws);

    // One list per parameter group, in the order the groups were added.
    const auto& reports = opt.step({{m.w1, m.b1}, {m.w2, m.b2}}, {{ws.gw1, ws.gb1}, {ws.gw2, ws.gb2}});
    for (std::size_t g = 0; g < st.gamma.size(); ++g) {
      st.gamma[g].add(reports[g].gamma);
      if (!reports[g].applied) ++st.skipped_steps;
    }
  }
  st.train_loss = loss_sum / static_cast<double>(n);
  st.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return st;
}

// Both optimizers get one group per layer, named so their state is readable.
template <class Optimizer>
void add_layer_groups(Optimizer& opt, Mlp& m, double lr) {
  typename Optimizer::Options o;
  o.lr = lr;
  opt.add_group({m.w1, m.b1}, o, "fc1", {"weight", "bias"});
  opt.add_group({m.w2, m.b2}, o, "fc2", {"weight", "bias"});
}

// -------------------------------------------------------------- reporting --

struct RunRecord {
  EpochStats train;
  Evaluation test;
};

void print_header(const Config& c, const Dataset& train, const Dataset& test, Index steps_per_epoch) {
  const adamx::AdamX<float>::Options defaults;
  std::printf("Adam vs AdamX on Fashion-MNIST\n");
  std::printf("  data      %s: %ld train / %ld test images, %ldx%ld, %d classes\n", c.data_dir.c_str(),
              static_cast<long>(train.x.cols()), static_cast<long>(test.x.cols()), static_cast<long>(train.rows),
              static_cast<long>(train.cols), kClasses);
  std::printf("            pixels scaled to [0,1], then standardised with the training set's mean and std\n");
  std::printf("  model     MLP %ld-%d-%d, ReLU, softmax cross-entropy, float32, Kaiming-uniform init\n",
              static_cast<long>(train.x.rows()), c.hidden, kClasses);
  std::printf("  training  %d epochs x %ld steps, batch %d, lr %g for both, seed %u\n", c.epochs,
              static_cast<long>(steps_per_epoch), c.batch, c.lr, c.seed);
  std::printf("            same initial weights and the same shuffled batch order for both optimizers\n");
  std::printf("  groups    fc1 {weight %dx%ld, bias %d}, fc2 {weight %dx%d, bias %d}: one group per layer\n",
              c.hidden, static_cast<long>(train.x.rows()), c.hidden, kClasses, c.hidden, kClasses);
  std::printf("  options   beta1 %g, beta2 %g, eps %g; AdamX also beta3 %g, beta_norm %g (library defaults)\n",
              defaults.beta1, defaults.beta2, defaults.eps, defaults.beta3, defaults.beta_norm);
  std::printf("  threads   %d (Eigen::nbThreads())\n\n", Eigen::nbThreads());
  print_epoch_columns();
}

void print_row(int epoch, const char* name, const RunRecord& r, bool show_gamma) {
  print_epoch_row(epoch, name, r.train.train_loss, r.test.loss, r.test.accuracy, r.train.seconds,
                  show_gamma ? r.train.gamma.data() : nullptr);
}

// Largest epoch-to-epoch change in test accuracy over the second half of the
// run, for either optimizer: how much the final accuracy could move with one
// epoch more or less. Only measured from 6 epochs on: in a short run accuracy
// is still climbing and the change is progress, not noise.
double late_wobble(const std::vector<RunRecord>& a, const std::vector<RunRecord>& b) {
  double w = 0.0;
  if (a.size() < 6) return w;
  for (const auto* runs : {&a, &b}) {
    for (std::size_t e = runs->size() / 2; e < runs->size(); ++e) {
      w = std::max(w, std::abs((*runs)[e].test.accuracy - (*runs)[e - 1].test.accuracy));
    }
  }
  return w;
}

void print_summary(const std::vector<RunRecord>& adam, const std::vector<RunRecord>& adamx, const Dataset& test,
                   double total_seconds) {
  const RunRecord& a = adam.back();
  const RunRecord& x = adamx.back();
  const double d_acc = x.test.accuracy - a.test.accuracy;
  const double d_loss = x.test.loss - a.test.loss;

  std::printf("\nSummary after %zu epochs (total wall time %.1f s)\n", adam.size(), total_seconds);
  std::printf("  Adam    test accuracy %6.2f%%   test loss %.4f   last-epoch train loss %.4f\n", a.test.accuracy,
              a.test.loss, a.train.train_loss);
  std::printf("  AdamX   test accuracy %6.2f%%   test loss %.4f   last-epoch train loss %.4f\n", x.test.accuracy,
              x.test.loss, x.train.train_loss);
  std::printf("  AdamX - Adam: %+.2f points of test accuracy, %+.4f test loss\n", d_acc, d_loss);

  // Is the accuracy gap bigger than the noise in this comparison? Two yardsticks
  // taken from this run; the larger one counts:
  //  - test-set sampling (McNemar): only images the two models classify
  //    differently can move the gap; were each of them a coin flip, the gap
  //    would have a standard deviation of sqrt(#disagreements) images, so
  //    2 sigma is 200 * sqrt(#disagreements) / n points;
  //  - the late epoch-to-epoch wobble of test accuracy (training noise).
  const auto n = static_cast<double>(test.labels.size());
  long only_adam = 0, only_adamx = 0;
  for (std::size_t i = 0; i < test.labels.size(); ++i) {
    const bool ok_a = a.test.predicted[i] == test.labels[i];
    const bool ok_x = x.test.predicted[i] == test.labels[i];
    only_adam += ok_a && !ok_x;
    only_adamx += ok_x && !ok_a;
  }
  const double sampling = 200.0 * std::sqrt(static_cast<double>(only_adam + only_adamx)) / n;
  const double wobble = late_wobble(adam, adamx);
  const double noise = std::max(sampling, wobble);
  std::printf("\n  Noise in this comparison, in points of test accuracy:\n");
  std::printf("    %.2f  test-set sampling, 2 sigma (only Adam is right on %ld test images, only AdamX on %ld)\n",
              sampling, only_adam, only_adamx);
  if (wobble > 0.0) {
    std::printf("    %.2f  largest epoch-to-epoch change in test accuracy from epoch %zu on\n", wobble,
                adam.size() / 2);
  }

  // What gamma did, per layer. v is a running average of gamma * g^2 over
  // roughly 1/(1 - beta2) steps, so late in the run AdamX's v is about Adam's
  // times the recent mean gamma, and its steps about 1/sqrt(that) times Adam's
  // (roughly: the two runs' gradients differ too).
  static const char* const kGroup[] = {"fc1", "fc2"};
  const double horizon = 1.0 / (1.0 - adamx::AdamX<float>::Options{}.beta2);
  std::printf("\n  gamma   range over the run   steps below 1   last-epoch mean   AdamX step / Adam step\n");
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, step_ratio_dev = 0.0;
  for (std::size_t g = 0; g < 2; ++g) {
    GammaRange r;
    for (const auto& e : adamx) r.merge(e.train.gamma[g]);
    lo = std::min(lo, r.min);
    hi = std::max(hi, r.max);
    const double recent = adamx.back().train.gamma[g].mean();
    const double ratio = 1.0 / std::sqrt(recent);
    step_ratio_dev = std::max(step_ratio_dev, std::abs(ratio - 1.0));
    std::printf("  %-5s   [%.3f, %.3f]       %5.1f%%          %.3f             ~%.3f\n", kGroup[g], r.min, r.max,
                100.0 * static_cast<double>(r.below_one) / static_cast<double>(r.steps), recent, ratio);
  }
  std::printf("  gamma < 1: the layer's recent gradient norms were below their running average (falling);\n"
              "  gamma > 1: above it. v averages gamma * g^2 over ~%.0f steps, so the step ratio is\n"
              "  about 1/sqrt(recent mean gamma).\n",
              horizon);

  // The verdict, worded from the numbers above.
  std::printf("\n  ");
  const bool alike = std::abs(d_acc) <= noise;
  if (alike && step_ratio_dev < 0.03) {
    std::printf("On this stationary problem AdamX and Adam behave alike: the %.2f-point accuracy gap is\n"
                "  within the noise (%.2f), and although gamma moved between %.3f and %.3f, by the end it\n"
                "  averages so close to 1 that AdamX's steps are within %.1f%% of Adam's.\n",
                std::abs(d_acc), noise, lo, hi, 100.0 * step_ratio_dev);
  } else if (alike) {
    std::printf("The %.2f-point accuracy gap is within the noise (%.2f), so the two end up alike here, even\n"
                "  though gamma (between %.3f and %.3f) left AdamX's steps up to %.1f%% off Adam's at the end.\n",
                std::abs(d_acc), noise, lo, hi, 100.0 * step_ratio_dev);
  } else {
    std::printf("%s ends ahead by %.2f points of accuracy, more than the noise (%.2f). This is one seed:\n"
                "  rerun with other --seed values before reading much into it.\n",
                d_acc > 0 ? "AdamX" : "Adam", std::abs(d_acc), noise);
  }

  long skipped = 0;
  for (const auto* runs : {&adam, &adamx})
    for (const auto& e : *runs) skipped += e.train.skipped_steps;
  if (skipped > 0) std::printf("  note: %ld group-steps were reported as not applied (non-finite gradients)\n", skipped);
}

int run(const Config& c) {
  require_dataset(c.data_dir, "fashion_mnist_demo");
  const auto t_start = Clock::now();

  Dataset train = load_split(c.data_dir, kFiles[0], kFiles[1]);
  Dataset test = load_split(c.data_dir, kFiles[2], kFiles[3]);
  if (test.x.rows() != train.x.rows()) {
    throw std::runtime_error("train and test images differ in size (" + std::to_string(train.x.rows()) + " vs " +
                             std::to_string(test.x.rows()) + " pixels)");
  }
  standardise(train, test);

  const Index batch = std::min<Index>(c.batch, train.x.cols());
  const Index steps_per_epoch = (train.x.cols() + batch - 1) / batch;
  print_header(c, train, test, steps_per_epoch);

  // Same starting point for both: one initialisation, copied.
  const Mlp init = init_mlp(train.x.rows(), c.hidden, kClasses, c.seed);
  Mlp m_adam = init;
  Mlp m_adamx = init;
  adamx::Adam<float> adam;
  adamx::AdamX<float> adamx_opt;
  add_layer_groups(adam, m_adam, c.lr);
  add_layer_groups(adamx_opt, m_adamx, c.lr);

  // A separate stream for the batch order (seed + 1), so changing the model
  // size does not change the order of the batches.
  std::mt19937 order_rng(c.seed + 1u);
  Eigen::VectorXi perm = Eigen::VectorXi::LinSpaced(train.x.cols(), 0, static_cast<int>(train.x.cols() - 1));
  Workspace train_ws, eval_ws;  // separate, so neither is resized back and forth
  std::vector<RunRecord> hist_adam, hist_adamx;

  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    shuffle(perm, order_rng);  // one permutation per epoch, shared by both optimizers

    RunRecord ra;
    ra.train = train_epoch(m_adam, adam, train, perm, batch, train_ws);
    ra.test = evaluate(m_adam, test, eval_ws);
    hist_adam.push_back(ra);
    print_row(epoch, "Adam", ra, false);

    RunRecord rx;
    rx.train = train_epoch(m_adamx, adamx_opt, train, perm, batch, train_ws);
    rx.test = evaluate(m_adamx, test, eval_ws);
    hist_adamx.push_back(rx);
    print_row(0, "AdamX", rx, true);
  }

  print_summary(hist_adam, hist_adamx, test, std::chrono::duration<double>(Clock::now() - t_start).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Config config = parse_args(argc, argv);
  try {
    return run(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist_demo: %s\n", e.what());
    return 1;
  }
}
