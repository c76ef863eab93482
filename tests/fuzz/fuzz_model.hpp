// The optimizers the checkpoint fuzzer loads into, shared with the seed
// generator so that the seeds are checkpoints these optimizers accept (the
// fuzzer then starts from inputs that reach the deepest checks).
#pragma once

#include <adamx/adamx.hpp>
#include <adamx/shard.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <cstdint>
#include <istream>
#include <ostream>
#include <utility>
#include <vector>

namespace adamx_fuzz {

// Two groups, both storage orders, a vector and amsgrad in one group: every
// part of the format is present. AdamX over float, Adam over double and
// AdaMod over float (the one optimizer with a third state array), so the
// optimizer- and type-mismatch paths are reached from every seed.
template <class OptType>
struct Model {
  using Opt = OptType;
  using Scalar = typename Opt::scalar_type;
  Eigen::Matrix<Scalar, 3, 2> w1;
  Eigen::Matrix<Scalar, 3, 1> b1;
  Eigen::Matrix<Scalar, 2, 3, Eigen::RowMajor> w2;
  OptType opt;

  Model() {
    w1.setConstant(Scalar(0.5));
    b1.setConstant(Scalar(-0.5));
    w2.setConstant(Scalar(0.25));
    typename Opt::Options with_amsgrad;
    with_amsgrad.amsgrad = true;
    opt.add_group({w1, b1}, with_amsgrad, "layer1", {"weight", "bias"});
    opt.add_group({w2}, typename Opt::Options{}, "layer2", {"weight"});
  }

  /// `steps` steps with gradients of alternating scale, so γ, h and the
  /// moments all hold non-trivial values.
  void train(int steps) {
    Eigen::Matrix<Scalar, 3, 2> g1;
    Eigen::Matrix<Scalar, 3, 1> gb;
    Eigen::Matrix<Scalar, 2, 3, Eigen::RowMajor> g2;
    for (int k = 0; k < steps; ++k) {
      const Scalar scale = Scalar(k % 2 == 0 ? 1.0 : 1e-3);
      g1.setConstant(scale * Scalar(0.3 + k));
      gb.setConstant(scale * Scalar(-0.2));
      g2.setConstant(scale * Scalar(0.1 * k - 0.4));
      opt.step({{w1, b1}, {w2}}, {{g1, gb}, {g2}});
    }
  }
};

using AdamXModel = Model<adamx::AdamX<float>>;
using AdamModel = Model<adamx::Adam<double>>;
using AdaModModel = Model<adamx::AdaMod<float>>;

// One rank's shard optimizer for the sharded-checkpoint loader: AdamXModel's
// groups on 2 ranks, rank 0's part (each tensor is one block, so rank 0
// holds the first half of every group's tensors), holding AdamXModel's
// state after `steps` steps.
struct ShardModel {
  adamx::ShardLayout layout;
  adamx::AdamX<float> opt;

  explicit ShardModel(int steps = 3) {
    AdamXModel full;
    full.train(steps);
    layout.ranks = 2;
    std::vector<AdamXModel::Opt::State> states;
    for (std::size_t g = 0; g < full.opt.num_groups(); ++g) {
      const auto& whole = full.opt.state(g);
      std::vector<adamx::ShardLayout::Tensor> tensors;
      std::vector<std::string> names;
      for (const auto& ts : whole.tensors) {
        tensors.push_back({ts.name, ts.rows, ts.cols, ts.row_major});
        names.push_back(ts.name);
      }
      layout.groups.push_back(adamx::make_shard_layout_group(whole.name, tensors, layout.ranks));
      std::vector<Eigen::Index> sizes;
      for (const auto& t : tensors) sizes.push_back(t.size());
      const adamx::GroupShard mine = adamx::shard_group(sizes, layout.ranks)[0];
      adamx::add_shard_group(opt, mine, whole.options, whole.name, names);
      // Each piece's state is its part of the full optimizer's.
      auto shard = whole.without_tensors();
      for (std::size_t k = 0; k < mine.pieces.size(); ++k) {
        const adamx::ShardPiece& p = mine.pieces[k];
        const auto& from = whole.tensors[p.tensor];
        auto piece = opt.state(g).tensors[k];
        piece.m = from.m.segment(p.start, p.length);
        piece.v = from.v.segment(p.start, p.length);
        if (from.v_max.size() != 0) piece.v_max = from.v_max.segment(p.start, p.length);
        shard.tensors.push_back(std::move(piece));
      }
      states.push_back(std::move(shard));
    }
    opt.restore(states);
  }
};

// A training run for the run-checkpoint loader (run_checkpoint.hpp):
// AdamXModel's parameters and optimizer, a warm-up schedule (a composed
// state), a plateau schedule (±inf best before its first step) and two
// counters.
struct RunModel {
  AdamXModel model;
  adamx::LinearWarmup<adamx::CosineAnnealingLR> lr{adamx::CosineAnnealingLR(1e-2, 4), 3, 0.5};
  adamx::ReduceLROnPlateau plateau{1e-2};
  std::int64_t step = 0;
  std::int64_t epoch = 0;

  void train(int steps) {
    for (int k = 0; k < steps; ++k) {
      lr.apply(model.opt);
      model.train(1);
      lr.step();
      plateau.step(1.0 / static_cast<double>(1 + k % 3));
      ++step;
    }
    epoch = step / 2;
  }
  std::vector<adamx::RunSchedule> schedules() { return {{"lr", lr}, {"plateau", plateau}}; }
  std::vector<adamx::RunCounter> counters() { return {{"step", step}, {"epoch", epoch}}; }
  void save(std::ostream& out) {
    adamx::save_run(model.opt, {{model.w1, model.b1}, {model.w2}}, schedules(), counters(), out);
  }
  void load(std::istream& in) {
    adamx::load_run(model.opt, {{model.w1, model.b1}, {model.w2}}, schedules(), counters(), in);
  }
};

}  // namespace adamx_fuzz
