// train_loop.cpp - a complete small training loop, written the way a PyTorch
// user would write it, with adamx in place of torch.optim:
//
//   data      three interleaved spirals in the plane (synthetic, 3 classes)
//   model     MLP 2-64-3, ReLU, softmax cross-entropy; forward and backward by hand in Eigen
//   optimizer AdamW with two parameter groups: weights with weight decay, biases without
//   clipping  the global gradient norm across both groups to 0.3 (clip_grad_norm_)
//   schedule  linear warm-up for 50 steps, then cosine annealing to the end
//   logging   train loss, validation loss and accuracy, lr, pre-clip gradient norm
//
// The PyTorch it mirrors:
//   opt = torch.optim.AdamW([{"params": [fc1.weight, fc2.weight], "weight_decay": 1e-2},
//                            {"params": [fc1.bias, fc2.bias], "weight_decay": 0.0}], lr=1e-2)
//   sched = SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=50),
//                              CosineAnnealingLR(opt, T_max=steps - 50, eta_min=1e-4)], [50])
//   for each batch: loss.backward(); norm = clip_grad_norm_(params, 0.3); opt.step(); sched.step()
//
// Exits with 1 unless training reduced the loss to less than a third of its
// starting value (the example doubles as a test).
#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "command_line.hpp"

namespace {

using Matrix = Eigen::MatrixXf;
using Vector = Eigen::VectorXf;

constexpr int kClasses = 3;
constexpr int kHidden = 64;

// Uniform in [0, 1) from the generator's raw bits: the same numbers on every
// platform (std::uniform_real_distribution's are implementation-defined).
float uniform(std::mt19937& rng) { return static_cast<float>(rng() >> 8) * (1.0f / 16777216.0f); }

struct Dataset {
  Matrix x;                 // 2 × n, one sample per column
  std::vector<int> labels;  // n
};

// Three spirals of `per_class` points each; noise makes them overlap a little.
Dataset spirals(int per_class, std::mt19937& rng) {
  Dataset d;
  d.x.resize(2, kClasses * per_class);
  for (int c = 0; c < kClasses; ++c)
    for (int i = 0; i < per_class; ++i) {
      const float r = static_cast<float>(i + 1) / static_cast<float>(per_class);
      const float angle = 2.1f * static_cast<float>(c) + 4.0f * r + 0.3f * (uniform(rng) - 0.5f);
      const int k = c * per_class + i;
      d.x(0, k) = r * std::cos(angle);
      d.x(1, k) = r * std::sin(angle);
      d.labels.push_back(c);
    }
  return d;
}

struct Model {
  Matrix w1{kHidden, 2}, w2{kClasses, kHidden};
  Vector b1{Vector::Zero(kHidden)}, b2{Vector::Zero(kClasses)};
};

struct Gradients {
  Matrix w1{kHidden, 2}, w2{kClasses, kHidden};
  Vector b1{kHidden}, b2{kClasses};
};

// Kaiming-uniform weights (PyTorch's nn.Linear default bound 1/sqrt(fan_in)).
void initialise(Model& m, std::mt19937& rng) {
  for (Matrix* w : {&m.w1, &m.w2}) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(w->cols()));
    for (Eigen::Index i = 0; i < w->size(); ++i) w->data()[i] = bound * (2.0f * uniform(rng) - 1.0f);
  }
}

// Mean cross-entropy over the columns of x; fills g with its gradient when given.
float loss_and_gradient(const Model& m, const Matrix& x, const std::vector<int>& labels,
                        Gradients* g, float* accuracy = nullptr) {
  const Eigen::Index n = x.cols();
  const Matrix z1 = (m.w1 * x).colwise() + m.b1;
  const Matrix a1 = z1.cwiseMax(0.0f);
  Matrix z2 = (m.w2 * a1).colwise() + m.b2;
  // Softmax per column, shifted by the column maximum for stability.
  float loss = 0;
  int correct = 0;
  for (Eigen::Index k = 0; k < n; ++k) {
    Eigen::Index predicted;
    const float top = z2.col(k).maxCoeff(&predicted);
    z2.col(k) = (z2.col(k).array() - top).exp();
    const float sum = z2.col(k).sum();
    z2.col(k) /= sum;
    loss -= std::log(z2(labels[static_cast<std::size_t>(k)], k));
    correct += predicted == labels[static_cast<std::size_t>(k)];
  }
  if (accuracy != nullptr) *accuracy = static_cast<float>(correct) / static_cast<float>(n);
  if (g != nullptr) {
    Matrix dz2 = z2;  // ∂loss/∂z2 = (softmax − one-hot) / n
    for (Eigen::Index k = 0; k < n; ++k) dz2(labels[static_cast<std::size_t>(k)], k) -= 1.0f;
    dz2 /= static_cast<float>(n);
    g->w2 = dz2 * a1.transpose();
    g->b2 = dz2.rowwise().sum();
    const Matrix dz1 = ((m.w2.transpose() * dz2).array() * (z1.array() > 0.0f).cast<float>()).matrix();
    g->w1 = dz1 * x.transpose();
    g->b1 = dz1.rowwise().sum();
  }
  return loss / static_cast<float>(n);
}

}  // namespace

int main(int argc, char** argv) {
  // No options: --help says what the program does, anything else is an error.
  adamx_cli::Parser("train_loop", "",
                    "AdamW with two parameter groups, gradient clipping and a warm-up + cosine\n"
                    "schedule training an MLP on three spirals; exits 1 unless the loss fell below\n"
                    "a third of its start.")
      .parse(argc, argv);
  std::mt19937 rng(7);
  const Dataset train = spirals(200, rng);
  const Dataset validation = spirals(100, rng);
  const int n = static_cast<int>(train.labels.size());
  constexpr int kBatch = 32;
  constexpr int kEpochs = 40;
  const int steps_per_epoch = (n + kBatch - 1) / kBatch;
  const int total_steps = kEpochs * steps_per_epoch;
  constexpr int kWarmup = 50;
  constexpr double kMaxNorm = 0.3;

  Model model;
  initialise(model, rng);
  Gradients grads;

  // Two groups with their own options: decay on the weights, none on the biases.
  adamx::AdamW<float> opt;
  adamx::AdamW<float>::Options weights;  // AdamW defaults: weight_decay 1e-2, decoupled
  weights.lr = 1e-2;
  adamx::AdamW<float>::Options biases = weights;
  biases.weight_decay = 0.0;
  opt.add_group({model.w1, model.w2}, weights, "weights", {"fc1.weight", "fc2.weight"});
  opt.add_group({model.b1, model.b2}, biases, "biases", {"fc1.bias", "fc2.bias"});

  // Warm-up then cosine, stepped once per optimizer step, driving both groups.
  adamx::LinearWarmup<adamx::CosineAnnealingLR> schedule(
      adamx::CosineAnnealingLR(1e-2, total_steps - kWarmup, 1e-4), kWarmup, 0.1);

  std::printf("train_loop: 3-spiral classification, MLP 2-%d-3, AdamW, %d train / %d validation points\n",
              kHidden, n, static_cast<int>(validation.labels.size()));
  std::printf("  groups: weights (weight_decay %g), biases (weight_decay %g); clip_grad_norm %g\n",
              opt.options(0).weight_decay, opt.options(1).weight_decay, kMaxNorm);
  std::printf("  lr: linear warm-up from 1e-3 over %d steps, cosine to 1e-4 over %d steps\n\n", kWarmup,
              total_steps - kWarmup);
  std::printf("epoch  train loss  val loss  val acc        lr  max grad norm  steps clipped\n");

  const float initial_loss = loss_and_gradient(model, train.x, train.labels, nullptr);
  std::vector<int> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Matrix batch_x;
  std::vector<int> batch_labels;
  float last_loss = initial_loss;
  for (int epoch = 1; epoch <= kEpochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double epoch_loss = 0, max_norm_seen = 0;
    int clipped = 0;
    for (int start = 0; start < n; start += kBatch) {
      const int size = std::min(kBatch, n - start);
      batch_x.resize(2, size);
      batch_labels.resize(static_cast<std::size_t>(size));
      for (int k = 0; k < size; ++k) {
        const int i = order[static_cast<std::size_t>(start + k)];
        batch_x.col(k) = train.x.col(i);
        batch_labels[static_cast<std::size_t>(k)] = train.labels[static_cast<std::size_t>(i)];
      }
      epoch_loss += loss_and_gradient(model, batch_x, batch_labels, &grads) * size;  // forward + backward
      // Returns the norm before clipping, like clip_grad_norm_.
      const double norm = adamx::clip_grad_norm<float>({{grads.w1, grads.w2}, {grads.b1, grads.b2}}, kMaxNorm);
      max_norm_seen = std::max(max_norm_seen, norm);
      clipped += norm > kMaxNorm;
      schedule.apply(opt);  // the lr for this step, on every group
      opt.step({{model.w1, model.w2}, {model.b1, model.b2}}, {{grads.w1, grads.w2}, {grads.b1, grads.b2}});
      schedule.step();
    }
    last_loss = static_cast<float>(epoch_loss / n);
    if (epoch == 1 || epoch % 5 == 0) {
      float accuracy = 0;
      const float val_loss = loss_and_gradient(model, validation.x, validation.labels, nullptr, &accuracy);
      std::printf("%5d  %10.4f  %8.4f  %6.1f%%  %.2e  %13.3f  %6d / %d\n", epoch, last_loss, val_loss,
                  100.0f * accuracy, opt.options(0).lr, max_norm_seen, clipped, steps_per_epoch);
    }
  }
  const float final_loss = loss_and_gradient(model, train.x, train.labels, nullptr);
  std::printf("\ntrain loss %.4f -> %.4f\n", initial_loss, final_loss);
  if (!(final_loss < initial_loss / 3)) {
    std::printf("FAILED: the loss did not fall below a third of its initial value\n");
    return 1;
  }
  return 0;
}
