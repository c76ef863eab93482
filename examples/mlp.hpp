// mlp.hpp - the pieces the Fashion-MNIST demo, the optimizer comparison and
// the MPI data-parallel example share: a dataset as a matrix with one sample
// per column, reproducible randomness, a one-hidden-layer ReLU network, its
// softmax cross-entropy loss, backpropagation and evaluation. Plain Eigen;
// nothing here knows about optimizers.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "idx_reader.hpp"

namespace adamx_example {

using Matrix = Eigen::MatrixXf;  // column-major: one sample per column
using Vector = Eigen::VectorXf;
using Index = Eigen::Index;

constexpr int kClasses = 10;
constexpr Index kEvalChunk = 2000;  // samples per forward pass when evaluating

struct Dataset {
  Matrix x;                 // pixels x samples, standardised
  std::vector<int> labels;  // one class index in [0, 10) per column of x
  Index rows = 0, cols = 0;  // image geometry, for the header
};

inline const char* const kFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

/// The exit code of an example whose dataset is not installed (ctest reports
/// it as skipped); 77 is the usual "skipped" status, distinct from the usage
/// error's 2 (command_line.hpp).
constexpr int kMissingDatasetExit = 77;

/// A missing dataset is an installation problem, not a bug: say exactly what
/// to install and exit with kMissingDatasetExit so scripts can skip `program`.
inline void require_dataset(const std::string& dir, const char* program) {
  std::vector<std::string> missing;
  for (const char* f : kFiles) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(std::filesystem::path(dir) / f, ec)) missing.push_back(f);
  }
  if (missing.empty()) return;
  std::fprintf(stderr, "%s: Fashion-MNIST not found in %s (missing:", program, dir.c_str());
  for (const auto& f : missing) std::fprintf(stderr, " %s", f.c_str());
  std::fprintf(stderr,
               ").\n"
               "The Debian package dataset-fashion-mnist provides it:\n"
               "    apt-get install dataset-fashion-mnist\n"
               "or pass --data DIR pointing at a directory holding the four files.\n");
  std::exit(kMissingDatasetExit);
}

inline Dataset load_split(const std::string& dir, const char* images_file, const char* labels_file) {
  const std::string images_path = (std::filesystem::path(dir) / images_file).string();
  const std::string labels_path = (std::filesystem::path(dir) / labels_file).string();
  const idx::Images img = idx::read_images(images_path);
  const std::vector<std::uint8_t> lab = idx::read_labels(labels_path);
  if (lab.size() != img.count) {
    throw std::runtime_error(labels_path + ": has " + std::to_string(lab.size()) + " labels but " + images_path +
                             " has " + std::to_string(img.count) + " images");
  }

  Dataset d;
  d.rows = static_cast<Index>(img.rows);
  d.cols = static_cast<Index>(img.cols);
  // IDX stores each image as rows*cols consecutive bytes, which is exactly one
  // column of a column-major pixels x samples matrix.
  const Index n_pix = static_cast<Index>(img.pixels_per_image());
  const Index n = static_cast<Index>(img.count);
  using ByteMatrix = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic>;
  d.x = Eigen::Map<const ByteMatrix>(img.pixels.data(), n_pix, n).cast<float>() * (1.0f / 255.0f);

  d.labels.resize(lab.size());
  for (std::size_t i = 0; i < lab.size(); ++i) {
    if (lab[i] >= kClasses) {
      throw std::runtime_error(labels_path + ": label " + std::to_string(lab[i]) + " at index " + std::to_string(i) +
                               " is outside [0, " + std::to_string(kClasses) + ")");
    }
    d.labels[i] = lab[i];
  }
  return d;
}

// Standardise with the training set's global pixel mean and standard
// deviation (one scalar each, applied to train and test alike). Inputs centred
// on zero make the first layer's gradients better conditioned for both
// optimizers; it does not favour either.
inline void standardise(Dataset& train, Dataset& test) {
  const double mean = train.x.cast<double>().mean();
  const double var = (train.x.cast<double>().array() - mean).square().mean();
  const float m = static_cast<float>(mean);
  const float inv_sd = var > 0.0 ? static_cast<float>(1.0 / std::sqrt(var)) : 1.0f;  // blank images: only centre
  train.x = (train.x.array() - m) * inv_sd;
  test.x = (test.x.array() - m) * inv_sd;
}

// ------------------------------------------------------------- randomness --
// std::mt19937's output sequence is fixed by the C++ standard, but the
// algorithms behind std::uniform_*_distribution and std::shuffle are
// implementation-defined. Deriving floats and indices from the raw engine
// output ourselves keeps a given --seed reproducible across standard
// libraries (libstdc++, libc++), not just on this platform.

inline float uniform_pm(std::mt19937& rng, float bound) {  // uniform in [-bound, bound)
  const float u = static_cast<float>(static_cast<std::uint32_t>(rng()) >> 8) * (1.0f / 16777216.0f);
  return (2.0f * u - 1.0f) * bound;
}

inline std::uint32_t uniform_below(std::mt19937& rng, std::uint32_t n) {  // unbiased in [0, n)
  const std::uint64_t span = std::uint64_t{1} << 32;
  const std::uint64_t limit = span - span % n;  // largest multiple of n that fits
  std::uint64_t r = 0;
  do {
    r = static_cast<std::uint32_t>(rng());
  } while (r >= limit);
  return static_cast<std::uint32_t>(r % n);
}

inline void shuffle(Eigen::VectorXi& perm, std::mt19937& rng) {  // Fisher-Yates
  for (Index i = perm.size() - 1; i > 0; --i) {
    const Index j = uniform_below(rng, static_cast<std::uint32_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
}

// ------------------------------------------------------------------ model --

struct Mlp {
  Matrix w1;  // hidden x inputs
  Vector b1;  // hidden
  Matrix w2;  // classes x hidden
  Vector b2;  // classes
};

// Kaiming-uniform initialisation: U(-b, b) with b = gain * sqrt(3 / fan_in)
// keeps activations at a similar scale layer to layer. Gain sqrt(2) for the
// ReLU layer, 1 for the linear output layer. Biases start at zero.
inline Mlp init_mlp(Index n_in, Index n_hidden, Index n_out, std::uint32_t seed) {
  std::mt19937 rng(seed);
  auto fill = [&rng](Matrix& w, double gain) {
    const float bound = static_cast<float>(gain * std::sqrt(3.0 / static_cast<double>(w.cols())));
    for (Index i = 0; i < w.size(); ++i) w.data()[i] = uniform_pm(rng, bound);
  };
  Mlp m;
  m.w1.resize(n_hidden, n_in);
  m.w2.resize(n_out, n_hidden);
  fill(m.w1, std::sqrt(2.0));
  fill(m.w2, 1.0);
  m.b1 = Vector::Zero(n_hidden);
  m.b2 = Vector::Zero(n_out);
  return m;
}

// Buffers for one minibatch, allocated once and reused: Eigen's resize() is a
// no-op when the size is unchanged, so only the short last batch of an epoch
// reallocates.
struct Workspace {
  Matrix x;          // inputs x batch
  std::vector<int> y;
  Matrix h;          // hidden activations after ReLU, hidden x batch
  Matrix logits;     // classes x batch; overwritten in place by d(loss)/d(logits)
  Matrix dh;         // d(loss)/d(h), hidden x batch
  Eigen::RowVectorXf col_max, col_sum;
  Matrix gw1, gw2;   // gradients, same shapes as the parameters
  Vector gb1, gb2;
};

// h = relu(W1 x + b1), logits = W2 h + b2.
inline void forward(const Mlp& m, const Eigen::Ref<const Matrix>& x, Workspace& ws) {
  ws.h.resize(m.w1.rows(), x.cols());
  ws.h.noalias() = m.w1 * x;
  ws.h.colwise() += m.b1;
  ws.h = ws.h.cwiseMax(0.0f);
  ws.logits.resize(m.w2.rows(), x.cols());
  ws.logits.noalias() = m.w2 * ws.h;
  ws.logits.colwise() += m.b2;
}

// Softmax cross-entropy for each column of ws.logits, computed stably as
// log(sum exp(z - max)) - (z_y - max). Returns the loss summed over the batch.
// With `to_gradient`, ws.logits is overwritten with
// d(mean loss)/d(logits) = (softmax - onehot) / B, ready for backward().
inline double softmax_xent(Workspace& ws, const std::vector<int>& y, std::size_t y_offset, bool to_gradient) {
  const Index b = ws.logits.cols();
  ws.col_max = ws.logits.colwise().maxCoeff();
  ws.logits.rowwise() -= ws.col_max;  // every column now has max 0, so exp() cannot overflow
  double loss = 0.0;
  for (Index j = 0; j < b; ++j) loss -= static_cast<double>(ws.logits(y[y_offset + static_cast<std::size_t>(j)], j));
  ws.logits = ws.logits.array().exp();  // unnormalised probabilities
  ws.col_sum = ws.logits.colwise().sum();
  loss += ws.col_sum.array().log().cast<double>().sum();
  if (to_gradient) {
    ws.logits.array().rowwise() /= ws.col_sum.array();
    for (Index j = 0; j < b; ++j) ws.logits(y[y_offset + static_cast<std::size_t>(j)], j) -= 1.0f;
    ws.logits /= static_cast<float>(b);
  }
  return loss;
}

// Backpropagation through the two layers, given ws.logits = d(loss)/d(logits).
inline void backward(const Mlp& m, Workspace& ws) {
  ws.gw2.noalias() = ws.logits * ws.h.transpose();
  ws.gb2 = ws.logits.rowwise().sum();
  ws.dh.noalias() = m.w2.transpose() * ws.logits;
  ws.dh = (ws.h.array() > 0.0f).select(ws.dh, 0.0f);  // ReLU passes gradient only where it was active
  ws.gw1.noalias() = ws.dh * ws.x.transpose();
  ws.gb1 = ws.dh.rowwise().sum();
}

struct Evaluation {
  double loss = 0.0;           // mean cross-entropy
  double accuracy = 0.0;       // percent
  std::vector<int> predicted;  // predicted class per test image
};

// Test-set evaluation in large chunks: big matrix products are far faster than
// many small ones, and columns of a column-major matrix are contiguous, so
// middleCols() needs no copy.
inline Evaluation evaluate(const Mlp& m, const Dataset& data, Workspace& ws) {
  const Index n = data.x.cols();
  Evaluation ev;
  ev.predicted.resize(static_cast<std::size_t>(n));
  long correct = 0;
  for (Index start = 0; start < n; start += kEvalChunk) {
    const Index len = std::min(kEvalChunk, n - start);
    forward(m, data.x.middleCols(start, len), ws);
    for (Index j = 0; j < len; ++j) {
      Index k = 0;
      ws.logits.col(j).maxCoeff(&k);
      const auto i = static_cast<std::size_t>(start + j);
      ev.predicted[i] = static_cast<int>(k);
      if (ev.predicted[i] == data.labels[i]) ++correct;
    }
    ev.loss += softmax_xent(ws, data.labels, static_cast<std::size_t>(start), false);
  }
  ev.loss /= static_cast<double>(n);
  ev.accuracy = 100.0 * static_cast<double>(correct) / static_cast<double>(n);
  return ev;
}
}  // namespace adamx_example
