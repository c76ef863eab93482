// task_fashion_cnn.hpp - the study's image classification tasks: a small
// convolutional network on Fashion-MNIST, at batch 8 (small, noisy
// gradients: the regime where an optimizer's handling of gradient noise
// matters most) and at batch 128 (the usual regime).
//
// Data: Fashion-MNIST, Han Xiao, Kashif Rasul and Roland Vollgraf,
// "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
// Algorithms", arXiv:1708.07747, 2017. MIT licence. Debian package
// dataset-fashion-mnist (the four gzip IDX files in DataPaths::fashion_dir).
//
// Model: two 3x3 convolutions with ReLU and 2x2 max pooling, then a linear
// classifier, the classic LeNet shape (LeCun, Bottou, Bengio and Haffner,
// "Gradient-based learning applied to document recognition", Proc. IEEE,
// 1998) shrunk to fit the study's budget of a few seconds per run on one
// core.
//
// Splits: of the 60000 official training images the first 50000 train and
// the last 10000 are the validation set (fixed, never trained on); the
// official 10000 test images are the test set. Tuning runs report validation
// accuracy, evaluation runs test accuracy.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "curve_log.hpp"
#include "mlp.hpp"
#include "study_main.hpp"
#include "study_torch.hpp"

namespace study {
namespace fashion_cnn {

constexpr std::int64_t kTrainImages = 50000;       ///< the first 50000 training images train
constexpr std::int64_t kValidationImages = 10000;  ///< the last 10000 validate
/// Images per forward pass when evaluating: faster than larger chunks, whose
/// activations fall out of the cache.
constexpr std::int64_t kEvalChunk = 250;

/// How long a run is and how much of the held-out set it evaluates.
/// Evaluating all 10000 held-out images costs ~0.6 s, so the ~20 "metric"
/// curve points use a fixed subset, the first 1000 images of the same
/// held-out set (20 x 10000 would cost more than the training); the final
/// metric and loss use all of it. --quick evaluates less so that a smoke
/// run stays well under a second.
struct Length {
  long steps;
  int curve_points;
  std::int64_t curve_images;
  std::int64_t final_images;  ///< 0: the whole held-out set
};

struct Split {
  torch::Tensor x;  ///< N x 1 x 28 x 28, float32, standardised
  torch::Tensor y;  ///< N, int64 class indices
};

/// The three splits, loaded once per task and shared by all its runs.
struct Data {
  Split train, validation, test;
};

/// Fashion-MNIST as libtorch tensors. The images are read by the examples'
/// own loader (mlp.hpp: one image per column of a column-major matrix, which
/// is exactly one image per row of a row-major N x 784 tensor) and
/// standardised with the training images' pixel mean and standard deviation.
inline std::shared_ptr<const Data> load(const std::string& dir) {
  for (const char* file : adamx_example::kFiles) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(std::filesystem::path(dir) / file, ec))
      throw MissingData("Fashion-MNIST not found in " + dir + " (apt-get install dataset-fashion-mnist)");
  }
  const auto to_split = [](const adamx_example::Dataset& d, std::int64_t first, std::int64_t count) {
    const std::int64_t n = static_cast<std::int64_t>(d.labels.size());
    const torch::Tensor x =
        torch::from_blob(const_cast<float*>(d.x.data()), {n, 1, d.rows, d.cols}, torch::kFloat32);
    const torch::Tensor y = torch::from_blob(const_cast<int*>(d.labels.data()), {n}, torch::kInt32);
    return Split{x.narrow(0, first, count).clone(), y.narrow(0, first, count).to(torch::kInt64)};
  };
  const adamx_example::Dataset official_train =
      adamx_example::load_split(dir, adamx_example::kFiles[0], adamx_example::kFiles[1]);
  const adamx_example::Dataset official_test =
      adamx_example::load_split(dir, adamx_example::kFiles[2], adamx_example::kFiles[3]);
  if (static_cast<std::int64_t>(official_train.labels.size()) != kTrainImages + kValidationImages)
    throw std::runtime_error(dir + ": expected 60000 training images");
  auto data = std::make_shared<Data>();
  data->train = to_split(official_train, 0, kTrainImages);
  data->validation = to_split(official_train, kTrainImages, kValidationImages);
  data->test = to_split(official_test, 0, static_cast<std::int64_t>(official_test.labels.size()));
  // One scalar mean and deviation from the training images only, so that
  // nothing about the held-out images leaks into the inputs.
  const double mean = data->train.x.mean().item<double>();
  const double sd = data->train.x.std().item<double>();
  for (Split* s : {&data->train, &data->validation, &data->test}) s->x.sub_(mean).div_(sd);
  return data;
}

/// conv1 (1→8, 3x3) → ReLU → max pool 2 → conv2 (8→16, 3x3) → ReLU → max pool 2
/// → fc (16·7·7 → 10): 9.1k parameters, 0.29 M multiply-adds per image.
struct Cnn {
  // Declaration order is construction order, so the initial weights drawn
  // from libtorch's generator depend only on the seed.
  torch::nn::Conv2d conv1{torch::nn::Conv2dOptions(1, 8, 3).padding(1)};
  torch::nn::Conv2d conv2{torch::nn::Conv2dOptions(8, 16, 3).padding(1)};
  torch::nn::Linear fc{16 * 7 * 7, 10};

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    h = torch::max_pool2d(torch::relu(conv2->forward(h)), 2);
    return fc->forward(h.flatten(1));
  }

  /// Muon's authors step the first layer and the classifier with AdamW, so
  /// only conv2 is hidden.
  std::vector<TorchLayer> layers() {
    return {{"conv1", conv1->parameters(), false},
            {"conv2", conv2->parameters(), true},
            {"fc", fc->parameters(), false}};
  }
};

struct Evaluation {
  double accuracy = 0;  ///< percent
  double loss = 0;      ///< mean cross-entropy (nats)
};

/// Accuracy and mean cross-entropy on the first `count` images of `split`,
/// at the point the optimizer says to evaluate (Schedule-Free AdamW's x).
inline Evaluation evaluate(Cnn& model, TorchOptimizer& opt, const Split& split, std::int64_t count) {
  TorchOptimizer::EvalGuard guard(opt);
  torch::NoGradGuard no_grad;
  double correct = 0, loss = 0;
  for (std::int64_t start = 0; start < count; start += kEvalChunk) {
    const std::int64_t len = std::min(kEvalChunk, count - start);
    const torch::Tensor logits = model.forward(split.x.narrow(0, start, len));
    const torch::Tensor y = split.y.narrow(0, start, len);
    correct += logits.argmax(1).eq(y).sum().item<double>();
    loss += torch::nn::functional::cross_entropy(
                logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
  }
  return {100.0 * correct / static_cast<double>(count), loss / static_cast<double>(count)};
}

/// One training run: `steps` updates on minibatches of `batch` images drawn
/// without replacement, reshuffled every epoch, in an order fixed by the seed.
inline Outcome train(const Data& data, std::int64_t batch, const Length& length, const Run& run,
                     Curves& curves) {
  const long steps = length.steps;
  torch::manual_seed(static_cast<std::uint64_t>(run.seed));
  Cnn model;
  const std::vector<TorchLayer> layers = model.layers();
  TorchOptimizer opt(*run.arm, run.lr, layers);
  CurveLog curve_log(curves, layers, steps, length.curve_points);

  // The batch order: the examples' portable Fisher-Yates shuffle (mlp.hpp)
  // on a generator of its own, so that it is the same on every platform and
  // for every arm.
  std::mt19937 order_rng(static_cast<std::uint32_t>(run.seed));
  Eigen::VectorXi order = Eigen::VectorXi::LinSpaced(kTrainImages, 0, static_cast<int>(kTrainImages - 1));
  std::int64_t next = kTrainImages;  // forces a shuffle before the first batch

  const Split& held_out = run.phase == Phase::tune ? data.validation : data.test;
  Outcome out;
  for (long step = 1; step <= steps; ++step) {
    if (next + batch > kTrainImages) {
      adamx_example::shuffle(order, order_rng);
      next = 0;
    }
    const torch::Tensor index =
        torch::from_blob(order.data() + next, {batch}, torch::kInt32).to(torch::kInt64);
    next += batch;
    opt.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(
        model.forward(data.train.x.index_select(0, index)), data.train.y.index_select(0, index));
    const double loss_value = loss.item<double>();
    if (!std::isfinite(loss_value)) {
      out.diverged = true;
      return out;
    }
    loss.backward();
    curve_log.step(step, loss_value, opt,
                   [&] { return evaluate(model, opt, held_out, length.curve_images).accuracy; });
  }
  if (!all_finite(layers)) {
    out.diverged = true;
    return out;
  }
  const Evaluation final_eval =
      evaluate(model, opt, held_out, length.final_images > 0 ? length.final_images : held_out.x.size(0));
  out.metric = final_eval.accuracy;
  out.extras.push_back({"loss", final_eval.loss});
  return out;
}

/// A task at one batch size, `steps` long (--quick: `quick_steps`).
inline TaskEntry entry(const std::string& name, std::int64_t batch, long steps, long quick_steps) {
  return {name, [=](const DataPaths& paths) -> Task {
            const std::shared_ptr<const Data> data = load(paths.fashion_dir);
            Task t;
            t.name = name;
            t.description =
                "CNN conv(1-8,3x3)-pool-conv(8-16,3x3)-pool-linear(784-10) on Fashion-MNIST, 50000 train / "
                "10000 validation / 10000 test images, " +
                std::to_string(steps) + " steps of batch " + std::to_string(batch) + " (" +
                std::to_string(steps * batch) + " images seen)";
            t.metric = "validation/test accuracy (%)";
            t.higher_is_better = true;
            // 0.5 percentage points, absolute: a 10000-image held-out set
            // measures an accuracy near 85% (where these runs end) with a
            // binomial standard error of 0.36 points, so smaller differences
            // are within what the test set itself can resolve, and they are
            // far below what would change anyone's choice of optimizer for
            // such a model.
            t.margin = 0.5;
            t.margin_relative = false;
            t.divergence_value = 10;  // chance: ten balanced classes
            t.base_lr = 1e-3;
            t.eval_seeds = 10;
            t.has_matrices = true;
            const Length full{steps, 20, 1000, 0}, quick{quick_steps, 5, 200, 1000};
            t.run = [data, batch, full, quick](const Run& run, Curves& curves) {
              return train(*data, batch, run.quick ? quick : full, run, curves);
            };
            return t;
          }};
}

}  // namespace fashion_cnn

// The lengths fit the budget of 8 s per run on one core, evaluation
// included (about 6.5 s measured for either): batch 8 takes 5000 steps
// (40000 images, 0.8 epoch), batch 128 takes 400 steps (51200 images, one
// epoch). A step of batch 8 costs about a thirteenth of one of batch 128, so the
// small batch sees fewer images in the same time, as it would in practice.
inline study::TaskEntry fashion_cnn_b8_task() {
  return study::fashion_cnn::entry("fashion_cnn_b8", 8, 5000, 100);
}
inline study::TaskEntry fashion_cnn_b128_task() {
  return study::fashion_cnn::entry("fashion_cnn_b128", 128, 400, 15);
}

}  // namespace study
