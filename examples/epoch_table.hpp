// The per-epoch table that fashion_mnist_demo.cpp and mpi_data_parallel.cpp
// print, so the two runs can be compared line by line, and the γ statistics
// behind its last two columns.
#pragma once

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>

namespace adamx_example {

// What one group's gamma did over a stretch of steps.
struct GammaRange {
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double last = 1.0;
  double sum = 0.0;
  long steps = 0;
  long below_one = 0;
  void add(double g) {
    min = std::min(min, g);
    max = std::max(max, g);
    last = g;
    sum += g;
    ++steps;
    if (g < 1.0) ++below_one;
  }
  double mean() const { return steps > 0 ? sum / static_cast<double>(steps) : 1.0; }
  void merge(const GammaRange& o) {  // o covers the steps after ours
    min = std::min(min, o.min);
    max = std::max(max, o.max);
    last = o.last;
    sum += o.sum;
    steps += o.steps;
    below_one += o.below_one;
  }
};

// The legend and column titles.
inline void print_epoch_columns() {
  std::printf("time s: training time of the epoch, evaluation excluded\n");
  std::printf("gamma: value at the end of the epoch [min, max during the epoch]\n");
  std::printf("%5s  %-5s  %10s  %9s  %8s  %7s  %-24s  %s\n", "epoch", "opt", "train loss", "test loss",
              "test acc", "time s", "gamma fc1", "gamma fc2");
}

inline std::string gamma_cell(const GammaRange& g) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f [%.3f, %.3f]", g.last, g.min, g.max);
  return buf;
}

// One row; `gamma` points at the two layers' ranges, or is null for an
// optimizer without γ (printed as "-"). Epoch 0 leaves the epoch cell blank.
inline void print_epoch_row(int epoch, const char* name, double train_loss, double test_loss, double accuracy,
                            double seconds, const GammaRange* gamma) {
  const std::string g1 = gamma ? gamma_cell(gamma[0]) : "-";
  const std::string g2 = gamma ? gamma_cell(gamma[1]) : "-";
  char ep[16] = "";
  if (epoch > 0) std::snprintf(ep, sizeof ep, "%d", epoch);
  std::printf("%5s  %-5s  %10.4f  %9.4f  %7.2f%%  %7.2f  %-24s  %s\n", ep, name, train_loss, test_loss, accuracy,
              seconds, g1.c_str(), g2.c_str());
  std::fflush(stdout);
}

}  // namespace adamx_example
