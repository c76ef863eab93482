// A small multi-group model shared by the sharded-stepping tests (thread-
// simulated ranks in test_shard.cpp, MPI ranks in test_mpi.cpp): group sizes
// that are not multiples of the block or of the rank count, several tensors
// per group, a group smaller than one block (so ranks ≥ 1 hold an empty
// shard), amsgrad, weight decay, and a NaN at one step that the skip group
// must skip on every rank at once.
#pragma once

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/shard.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace shard_model {

using Index = Eigen::Index;

struct GroupSpec {
  std::string name;
  std::vector<Index> sizes;
  std::vector<std::string> tensor_names;
  bool amsgrad = false;
  double weight_decay = 0.0;
  adamx::NonFinitePolicy nonfinite = adamx::NonFinitePolicy::propagate;
};

constexpr Index B = adamx::detail::kNormBlock;
constexpr int kNaNStep = 137;  // the step whose gradient holds a NaN (group "mixed")

inline std::vector<GroupSpec> groups() {
  return {
      {"mixed", {3 * B + 17, 5, 2 * B, B + 1}, {"w1", "b1", "w2", "b2"}, false, 1e-2,
       adamx::NonFinitePolicy::skip},
      {"small", {100}, {"bias"}, false, 0.0, adamx::NonFinitePolicy::propagate},
      {"amsgrad", {5 * B + 1, 33, 0, 7}, {"w", "b", "empty", "c"}, true, 1e-3,
       adamx::NonFinitePolicy::propagate},
  };
}

template <class Opt>
typename Opt::Options options_of(const GroupSpec& spec) {
  typename Opt::Options o;
  o.lr = 1e-2;
  adamx_test::set_option(o, "amsgrad", spec.amsgrad);  // where the optimizer has it (not Lion)
  o.weight_decay = spec.weight_decay;
  o.nonfinite = spec.nonfinite;
  return o;
}

template <class Scalar>
using Vec = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// Full tensors of every group: θ (initial values) or a gradient.
template <class Scalar>
using Tensors = std::vector<std::vector<Vec<Scalar>>>;

template <class Scalar>
Tensors<Scalar> zeros() {
  Tensors<Scalar> out;
  for (const GroupSpec& spec : groups()) {
    out.emplace_back();
    for (Index n : spec.sizes) out.back().push_back(Vec<Scalar>::Zero(n));
  }
  return out;
}

template <class Scalar>
Tensors<Scalar> initial_params() {
  Tensors<Scalar> p = zeros<Scalar>();
  for (std::size_t g = 0; g < p.size(); ++g)
    for (std::size_t t = 0; t < p[g].size(); ++t)
      for (Index i = 0; i < p[g][t].size(); ++i)
        p[g][t][i] = static_cast<Scalar>(std::cos(0.1 * static_cast<double>(i) + static_cast<double>(g + 3 * t)));
  return p;
}

// The global gradient of step `step` (1-based): magnitudes differing by
// orders between tensors and drifting over the steps, so s, h and γ move.
template <class Scalar>
void global_gradient(int step, Tensors<Scalar>& grads) {
  for (std::size_t g = 0; g < grads.size(); ++g)
    for (std::size_t t = 0; t < grads[g].size(); ++t) {
      const double scale = std::pow(10.0, static_cast<double>((g + t) % 4) - 2.0) *
                           (1.0 + 0.5 * std::sin(0.05 * step));
      for (Index i = 0; i < grads[g][t].size(); ++i)
        grads[g][t][i] = static_cast<Scalar>(
            scale * std::sin(0.37 * static_cast<double>(i) + 1.3 * step + static_cast<double>(t)));
    }
  if (step == kNaNStep) {  // the last element of "mixed", held by the last non-empty shard
    Vec<Scalar>& last = grads[0].back();
    last[last.size() - 1] = std::numeric_limits<Scalar>::quiet_NaN();
  }
}

template <class Opt>
void add_full_groups(Opt& opt, Tensors<typename Opt::scalar_type>& params) {
  const std::vector<GroupSpec> specs = groups();
  for (std::size_t g = 0; g < specs.size(); ++g) {
    std::vector<adamx::TensorRef<typename Opt::scalar_type>> views(params[g].begin(), params[g].end());
    opt.add_group(views, options_of<Opt>(specs[g]), specs[g].name, specs[g].tensor_names);
  }
}

// One process stepping the whole model `steps` times on the global gradient.
template <class Opt>
struct Reference {
  Opt opt;
  Tensors<typename Opt::scalar_type> params = initial_params<typename Opt::scalar_type>();

  explicit Reference(int steps) : Reference(steps, [](int k, auto& grads) { global_gradient(k, grads); }) {}

  // `gradient(k, grads)` writes step k's global gradient.
  template <class GradientOfStep>
  Reference(int steps, GradientOfStep gradient) {
    using Scalar = typename Opt::scalar_type;
    add_full_groups(opt, params);
    Tensors<Scalar> grads = zeros<Scalar>();
    std::vector<std::vector<adamx::TensorRef<Scalar>>> pv;
    std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> gv;
    for (std::size_t g = 0; g < params.size(); ++g) {
      pv.emplace_back(params[g].begin(), params[g].end());
      gv.emplace_back(grads[g].begin(), grads[g].end());
    }
    for (int k = 1; k <= steps; ++k) {
      gradient(k, grads);
      opt.step(pv, gv);
    }
  }
};

template <class Scalar>
bool same_bits(const Scalar* a, const Scalar* b, Index n) {
  return n == 0 || std::memcmp(a, b, static_cast<std::size_t>(n) * sizeof(Scalar)) == 0;
}
inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Checks one rank's shard state (an optimizer built with add_shard_group) and
// the full θ it sees against the single process, bit for bit.
template <class Opt>
void expect_shard_equal(const Reference<Opt>& ref, const Opt& local,
                        const std::vector<adamx::GroupShard>& shards,
                        const Tensors<typename Opt::scalar_type>& params, int rank) {
  for (std::size_t g = 0; g < shards.size(); ++g) {
    const auto& want = ref.opt.state(g);
    const auto& got = local.state(g);
    SCOPED_TRACE("rank " + std::to_string(rank) + ", group " + want.name);
    EXPECT_EQ(got.t, want.t);
    // Every group scalar the rule keeps (γ and h for the Adam family).
    EXPECT_TRUE(adamx::group_scalars_same_bits(got.scalars(), want.scalars()));
    const auto& pieces = shards[g].pieces;
    ASSERT_EQ(got.tensors.size(), std::max<std::size_t>(pieces.size(), 1));
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      const adamx::ShardPiece& piece = pieces[k];
      const auto& full = want.tensors[piece.tensor];
      const auto& part = got.tensors[k];
      SCOPED_TRACE(part.name);
      // Every slot of the rule (m alone for Lion), m always kept; a slot
      // the options leave off (v_max without AMSGrad) is empty in both.
      ASSERT_EQ(part.slot(0).size(), piece.length);
      for (int s = 0; s < part.kSlots; ++s) {
        SCOPED_TRACE(part.slot_names[s]);
        const auto& whole_slot = full.slot(s);
        const auto& piece_slot = part.slot(s);
        ASSERT_EQ(piece_slot.size(), whole_slot.size() == 0 ? 0 : piece.length);
        if (whole_slot.size() != 0) {
          EXPECT_TRUE(same_bits(piece_slot.data(), whole_slot.data() + piece.start, piece.length));
        }
      }
    }
    for (std::size_t t = 0; t < params[g].size(); ++t)
      EXPECT_TRUE(same_bits(params[g][t].data(), ref.params[g][t].data(), params[g][t].size()))
          << "θ of " << want.name << "." << want.tensors[t].name;
  }
}

// Views of every tensor, per group, as step() and clip_grad_norm take them.
template <class Scalar>
std::vector<std::vector<adamx::TensorRef<Scalar>>> mutable_views(Tensors<Scalar>& t) {
  std::vector<std::vector<adamx::TensorRef<Scalar>>> out;
  for (auto& group : t) out.emplace_back(group.begin(), group.end());
  return out;
}
template <class Scalar>
std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> const_views(const Tensors<Scalar>& t) {
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> out;
  for (const auto& group : t) out.emplace_back(group.begin(), group.end());
  return out;
}

// Whether every tensor of `a` has the bits of `b`'s (the same shapes).
template <class Scalar>
bool same_tensors(const Tensors<Scalar>& a, const Tensors<Scalar>& b) {
  for (std::size_t g = 0; g < a.size(); ++g)
    for (std::size_t t = 0; t < a[g].size(); ++t)
      if (!same_bits(a[g][t].data(), b[g][t].data(), a[g][t].size())) return false;
  return true;
}

}  // namespace shard_model
