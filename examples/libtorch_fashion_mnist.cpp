// A libtorch MLP on Fashion-MNIST, trained twice from the same initial
// weights on the same batches: once with torch::optim::Adam, once with
// adamx's AdamX through adamx::torch_optim (the one-line swap). Prints, per
// epoch and optimizer, the mean training loss, test accuracy and the time
// spent in optimizer.step().
//
//   libtorch_fashion_mnist [--data DIR] [--epochs N] [--batch N] [--lr X] [--train-limit N]
//
// Exit codes: 0 done, 1 unreadable data, 2 bad arguments, 77 dataset not
// installed (Debian package dataset-fashion-mnist).
#include <adamx/torch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "command_line.hpp"
#include "idx_reader.hpp"

namespace {

constexpr int kMissingDatasetExit = 77;  // as examples/mlp.hpp

struct Config {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int epochs = 5;
  std::int64_t batch = 128;
  double lr = 1e-3;
  std::int64_t train_limit = 60000;  // use only the first N training images (quick runs)
};

Config parse_args(int argc, char** argv) {
  Config c;
  adamx_cli::Parser parser("libtorch_fashion_mnist", "[options]",
                           "torch::optim::Adam against adamx's AdamX (adamx::torch_optim) on one libtorch MLP.");
  parser.add("--data", "DIR", "directory with the four Fashion-MNIST *-ubyte.gz files", c.data_dir)
      .add("--epochs", "N", "passes over the training images", c.epochs, 1, 1000)
      .add("--batch", "N", "minibatch size", c.batch, 1, 60000)
      .add("--lr", "X", "learning rate", c.lr)
      .add("--train-limit", "N", "use only the first N training images", c.train_limit, 1);
  parser.parse(argc, argv);
  return c;
}

struct Split {
  torch::Tensor x;  // N x 784, float in [0, 1]
  torch::Tensor y;  // N, int64
};

Split load(const std::string& dir, const char* images, const char* labels, std::int64_t limit) {
  const auto img = idx::read_images((std::filesystem::path(dir) / images).string());
  const auto lab = idx::read_labels((std::filesystem::path(dir) / labels).string());
  const auto n = std::min<std::int64_t>(limit, static_cast<std::int64_t>(img.count));
  const auto pixels = static_cast<std::int64_t>(img.pixels_per_image());
  Split s;
  s.x = torch::from_blob(const_cast<std::uint8_t*>(img.pixels.data()), {n, pixels}, torch::kUInt8)
            .to(torch::kFloat32)
            .div_(255.0);
  s.y = torch::from_blob(const_cast<std::uint8_t*>(lab.data()), {n}, torch::kUInt8).to(torch::kInt64);
  return s;
}

torch::nn::Sequential make_mlp() {
  return torch::nn::Sequential(torch::nn::Linear(784, 256), torch::nn::ReLU(), torch::nn::Linear(256, 10));
}

struct Run {
  std::string name;
  torch::nn::Sequential model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  double step_seconds = 0.0;
};

double accuracy(torch::nn::Sequential& model, const Split& test) {
  torch::NoGradGuard no_grad;
  const auto predicted = model->forward(test.x).argmax(1);
  return predicted.eq(test.y).to(torch::kFloat64).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse_args(argc, argv);
  for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
    if (!std::filesystem::is_regular_file(std::filesystem::path(c.data_dir) / f)) {
      std::fprintf(stderr,
                   "libtorch_fashion_mnist: %s not found in %s.\n"
                   "The Debian package dataset-fashion-mnist provides it (apt-get install "
                   "dataset-fashion-mnist), or pass --data DIR.\n",
                   f, c.data_dir.c_str());
      return kMissingDatasetExit;
    }
  }
  Split train, test;
  try {
    train = load(c.data_dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", c.train_limit);
    test = load(c.data_dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_fashion_mnist: %s\n", e.what());
    return 1;
  }

  torch::manual_seed(0);
  torch::set_num_threads(1);  // one thread for both: the comparison is per core
  std::vector<Run> runs(2);
  runs[0].name = "torch::optim::Adam";
  runs[0].model = make_mlp();
  runs[1].name = "adamx AdamX";
  runs[1].model = torch::nn::Sequential(
      std::dynamic_pointer_cast<torch::nn::SequentialImpl>(runs[0].model->clone()));  // same initial weights
  runs[0].optimizer = std::make_unique<torch::optim::Adam>(runs[0].model->parameters(),
                                                           torch::optim::AdamOptions(c.lr));
  // The swap: the same call with adamx's type and options.
  runs[1].optimizer = std::make_unique<adamx::torch_optim::AdamX>(runs[1].model->parameters(),
                                                                  adamx::torch_optim::AdamXOptions(c.lr));

  const std::int64_t n = train.x.size(0);
  const std::int64_t steps = (n + c.batch - 1) / c.batch;
  std::printf("libtorch %s, MLP 784-256-10, %lld training images, batch %lld, lr %g, 1 thread\n",
              TORCH_VERSION, static_cast<long long>(n), static_cast<long long>(c.batch), c.lr);
  std::printf("%-5s  %-20s  %10s  %9s  %14s\n", "epoch", "optimizer", "train loss", "test acc",
              "step time (ms)");
  std::mt19937_64 shuffle_rng(42);
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), shuffle_rng);  // the same batches for both
    const torch::Tensor perm = torch::tensor(order, torch::kInt64);
    for (Run& run : runs) {
      double loss_sum = 0.0;
      run.step_seconds = 0.0;
      for (std::int64_t s = 0; s < steps; ++s) {
        const auto idx = perm.slice(0, s * c.batch, std::min(n, (s + 1) * c.batch));
        run.optimizer->zero_grad();
        const auto loss = torch::nn::functional::cross_entropy(run.model->forward(train.x.index_select(0, idx)),
                                                               train.y.index_select(0, idx));
        loss.backward();
        const auto start = std::chrono::steady_clock::now();
        run.optimizer->step();
        run.step_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        loss_sum += loss.item<double>();
      }
      std::printf("%5d  %-20s  %10.4f  %8.2f%%  %14.1f\n", epoch, run.name.c_str(),
                  loss_sum / static_cast<double>(steps), 100.0 * accuracy(run.model, test),
                  1e3 * run.step_seconds);
    }
  }
  std::printf("step time is the total over the epoch's %lld optimizer.step() calls\n",
              static_cast<long long>(steps));
  return 0;
}
