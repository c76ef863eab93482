// The sharded optimizer (adamx/mpi.hpp) offers the one-process optimizer's
// surface with the same meaning: one training loop, templated on the
// optimizer type, runs unchanged on adamx::AdamX<float> and on
// adamx::mpi::AdamX<float> (and Adam<double>) and gives the same bits;
// bad input throws the same exceptions with the same messages. The loop
// uses braced-list steps, clipping by the global norm, schedules, setters,
// state() and checkpoints. Run under
// mpirun with 1, 2 and 3 ranks (tests/CMakeLists.txt).
#include <gtest/gtest.h>
#include <mpi.h>

#include <adamx/adamx.hpp>
#include <adamx/mpi.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mpi_util.hpp"
#include "test_util.hpp"

namespace {

using mpi_util::world_rank;
using mpi_util::world_size;

// The one line a user changes besides the type: the sharded optimizer is
// constructed on a communicator.
template <class Opt>
std::unique_ptr<Opt> construct() {
  if constexpr (std::is_constructible<Opt, MPI_Comm>::value)
    return std::make_unique<Opt>(MPI_COMM_WORLD);
  else
    return std::make_unique<Opt>();
}

template <class Single, class Sharded>
struct Pair {
  using One = Single;
  using Many = Sharded;
};
// AdamX and Adam, and the baselines, whose state differs (RAdam's two step
// rules, AdaBound's bounds, AdaMod's third array), Lion, whose one
// array and sign step are not Adam's, and Adan, whose four arrays are not either.
using Pairs = ::testing::Types<Pair<adamx::AdamX<float>, adamx::mpi::AdamX<float>>,
                               Pair<adamx::Adam<double>, adamx::mpi::Adam<double>>,
                               Pair<adamx::RAdam<float>, adamx::mpi::RAdam<float>>,
                               Pair<adamx::AdaBound<double>, adamx::mpi::AdaBound<double>>,
                               Pair<adamx::AdaMod<float>, adamx::mpi::AdaMod<float>>,
                               Pair<adamx::Lion<float>, adamx::mpi::Lion<float>>,
                               Pair<adamx::Lion<double>, adamx::mpi::Lion<double>>,
                               Pair<adamx::Adan<float>, adamx::mpi::Adan<float>>,
                               Pair<adamx::Adan<double>, adamx::mpi::Adan<double>>>;

template <class Scalar>
using RowMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using ColMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// A small model in two groups of several tensors. Sizes are chosen so that
// 3 ranks get shards that cut tensors (fc1: 9090 elements, three 4096-element
// blocks) and one empty shard (fc2: 5713 elements, two blocks).
template <class Scalar>
struct Model {
  RowMajor<Scalar> w1{100, 90};
  Vector<Scalar> b1{90};
  ColMajor<Scalar> w2{70, 80};
  Vector<Scalar> b2{80};
  Vector<Scalar> s2{33};
  RowMajor<Scalar> gw1{100, 90};
  Vector<Scalar> gb1{90};
  ColMajor<Scalar> gw2{70, 80};
  Vector<Scalar> gb2{80};
  Vector<Scalar> gs2{33};

  Model() {
    Scalar* const tensors[] = {w1.data(), b1.data(), w2.data(), b2.data(), s2.data()};
    const Eigen::Index sizes[] = {w1.size(), b1.size(), w2.size(), b2.size(), s2.size()};
    for (int t = 0; t < 5; ++t)
      for (Eigen::Index i = 0; i < sizes[t]; ++i)
        tensors[t][i] = static_cast<Scalar>(std::sin(0.37 * static_cast<double>(i) + t) * 2.0);
  }

  // The gradient of 0.5·|θ - target|², rounded to a multiple of 1/64 (and
  // kept within ±8, so at most 10 significant bits). Every rank computes the
  // same gradient from the same θ, and the sharded step's mean over ranks is
  // (g + g + ... ) / ranks: with at most 10 significant bits, 2g and 3g are
  // exact in float and double, and so is their division by 2 or 3 (the
  // exact quotient g is representable). The sharded mean is then g exactly,
  // whatever order MPI adds in, for 1, 2 and 3 ranks.
  // `perturb` adds 1/64 to one element: the test of the test.
  void gradients(int step, bool perturb) {
    const auto fill = [&](const Scalar* theta, Scalar* g, Eigen::Index n, int t) {
      for (Eigen::Index i = 0; i < n; ++i) {
        const double target = std::cos(0.11 * static_cast<double>(i) + step + t);
        const double raw = static_cast<double>(theta[i]) - target;
        g[i] = static_cast<Scalar>(std::fmin(8.0, std::fmax(-8.0, std::round(raw * 64.0) / 64.0)));
      }
    };
    fill(w1.data(), gw1.data(), w1.size(), 0);
    fill(b1.data(), gb1.data(), b1.size(), 1);
    fill(w2.data(), gw2.data(), w2.size(), 2);
    fill(b2.data(), gb2.data(), b2.size(), 3);
    fill(s2.data(), gs2.data(), s2.size(), 4);
    if (perturb) gw1(99, 89) += static_cast<Scalar>(1.0 / 64.0);
  }

  std::vector<std::vector<Scalar>> values() const {
    const auto copy = [](const Scalar* p, Eigen::Index n) { return std::vector<Scalar>(p, p + n); };
    return {copy(w1.data(), w1.size()), copy(b1.data(), b1.size()), copy(w2.data(), w2.size()),
            copy(b2.data(), b2.size()), copy(s2.data(), s2.size())};
  }
};

template <class Opt>
struct Run {
  std::vector<std::vector<typename Opt::scalar_type>> params;  // at the end
  std::vector<typename Opt::State> state;                    // the whole model's, at the end
  typename Opt::State mid_state;                             // state(0) after step 3
  std::vector<adamx::StepReport> reports;                    // every step's, group after group
  std::vector<double> lrs;                                   // options(g).lr before every step
  std::vector<double> grad_norms;                            // last_grad_norm() after each clipped step
};

constexpr int kSteps = 12;
constexpr int kSaveAfter = 5;   // steps done when the checkpoint is saved
constexpr int kLoadAfter = 8;   // steps done when the run goes back to it

// The training loop, written once for both optimizer types.
template <class Opt>
Run<Opt> train(const std::filesystem::path& checkpoint, int perturbed_rank = -1) {
  using Scalar = typename Opt::scalar_type;
  Model<Scalar> model;
  std::unique_ptr<Opt> made = construct<Opt>();
  Opt& opt = *made;

  typename Opt::Options fc1;
  fc1.weight_decay = 0.01;
  EXPECT_EQ(opt.add_group({model.w1, model.b1}, fc1, "fc1", {"weight", "bias"}), 0u);
  EXPECT_EQ(opt.add_group({model.w2, model.b2, model.s2}, Opt::default_options(), "fc2"), 1u);
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_EQ(opt.group_index("fc2"), 1u);
  opt.set_threads(1);
  EXPECT_EQ(opt.threads(), 1);
  opt.set_betas(1, 0.85, 0.99);
  // ε and the decay mode where the optimizer has them (not Lion).
  adamx_test::call_if_declared(opt, [](auto& o) -> decltype(o.set_eps(1, 1e-7)) { o.set_eps(1, 1e-7); });
  opt.set_weight_decay(1, 1e-3);
  typename Opt::Options changed = opt.options(0);
  adamx_test::set_option(changed, "decay_mode", static_cast<double>(adamx::WeightDecayMode::decoupled));
  opt.set_options(0, changed);

  // A composed schedule for every group, a second one for fc2 on top.
  using Warmup = adamx::LinearWarmup<adamx::StepLR>;
  Warmup schedule(adamx::StepLR(1e-2, 3, 0.5), 2);
  adamx::ExponentialLR fc2_decay(5e-3, 0.9);

  Run<Opt> run;
  Warmup saved_schedule = schedule;
  adamx::ExponentialLR saved_decay = fc2_decay;
  std::vector<std::vector<Scalar>> saved_params;
  for (int done = 0; done < kSteps; ++done) {
    if (done == kSaveAfter) {
      save_checkpoint(opt, checkpoint);  // unqualified: found by ADL for either type
      saved_schedule = schedule;
      saved_decay = fc2_decay;
      saved_params = model.values();
    }
    if (done == kLoadAfter) {  // back to the checkpoint: replays steps 6 to 8
      load_checkpoint(opt, checkpoint);
      schedule = saved_schedule;
      fc2_decay = saved_decay;
      const auto restore = [](Scalar* p, const std::vector<Scalar>& from) {
        std::memcpy(p, from.data(), from.size() * sizeof(Scalar));
      };
      restore(model.w1.data(), saved_params[0]);
      restore(model.b1.data(), saved_params[1]);
      restore(model.w2.data(), saved_params[2]);
      restore(model.b2.data(), saved_params[3]);
      restore(model.s2.data(), saved_params[4]);
    }
    if (done == 2) {  // v_max starts at zero, on every shard (a rule without AMSGrad, Lion, keeps none)
      const bool has_amsgrad =
          adamx_test::call_if_declared(opt, [](auto& o) -> decltype(o.set_amsgrad(1, true)) { o.set_amsgrad(1, true); });
      EXPECT_EQ(has_amsgrad, adamx_test::declares_option<typename Opt::Options>("amsgrad"));
    }
    schedule.apply(opt);
    if (done >= 4) fc2_decay.apply(opt, 1);
    for (std::size_t g = 0; g < opt.num_groups(); ++g) run.lrs.push_back(opt.options(g).lr);

    model.gradients(done, world_rank() == perturbed_rank);
    // Every other step clips by the global gradient norm, cycling through
    // the 2-, 1- and ∞-norm. The max_norm values are below the gradients'
    // norms (tens to thousands for these sizes), so the clip binds.
    const bool clipped = done % 2 == 1;
    const double norm_types[] = {2.0, 1.0, std::numeric_limits<double>::infinity()};
    const double max_norms[] = {20.0, 500.0, 1.5};
    const adamx::ClipGradNorm clip{max_norms[(done / 2) % 3], norm_types[(done / 2) % 3]};
    const std::vector<adamx::StepReport>& reports =
        clipped ? opt.step({{model.w1, model.b1}, {model.w2, model.b2, model.s2}},
                           {{model.gw1, model.gb1}, {model.gw2, model.gb2, model.gs2}}, clip)
                : opt.step({{model.w1, model.b1}, {model.w2, model.b2, model.s2}},
                           {{model.gw1, model.gb1}, {model.gw2, model.gb2, model.gs2}});
    if (clipped) {
      run.grad_norms.push_back(opt.last_grad_norm());
      EXPECT_GT(opt.last_grad_norm(), clip.max_norm) << "the clip should bind at step " << done;
    }
    EXPECT_EQ(&reports, &opt.last_reports());
    run.reports.insert(run.reports.end(), reports.begin(), reports.end());
    schedule.step();
    fc2_decay.step();
    if (done == 3) run.mid_state = opt.state(0);
  }
  run.params = model.values();
  for (std::size_t g = 0; g < opt.num_groups(); ++g) run.state.push_back(opt.state(g));
  return run;
}

template <class A, class B>
bool same_bits(const A& a, const B& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
}

// True when the two runs agree bit for bit (every difference is reported
// when `report` is set).
template <class One, class Many>
bool bitwise_equal(const Run<One>& one, const Run<Many>& many, bool report) {
  bool equal = true;
  const auto expect = [&](bool ok, const std::string& what) {
    if (!ok && report) ADD_FAILURE() << what << " differs (rank " << world_rank() << " of " << world_size() << ")";
    equal = equal && ok;
  };
  expect(one.params.size() == many.params.size(), "the parameter count");
  for (std::size_t t = 0; t < std::min(one.params.size(), many.params.size()); ++t)
    expect(same_bits(one.params[t], many.params[t]), "parameter tensor " + std::to_string(t));
  expect(one.state == many.state, "the whole state");
  expect(one.mid_state == many.mid_state, "state(0) after step 3");
  expect(same_bits(one.lrs, many.lrs), "the lr history");
  expect(same_bits(one.grad_norms, many.grad_norms), "the norms before clipping");
  expect(one.reports.size() == many.reports.size(), "the report count");
  for (std::size_t i = 0; i < std::min(one.reports.size(), many.reports.size()); ++i) {
    const adamx::StepReport& a = one.reports[i];
    const adamx::StepReport& b = many.reports[i];
    expect(a.step == b.step && std::memcmp(&a.grad_norm_sq, &b.grad_norm_sq, sizeof(double)) == 0 &&
               std::memcmp(&a.gamma, &b.gamma, sizeof(double)) == 0 && a.finite == b.finite &&
               a.applied == b.applied,
           "report " + std::to_string(i));
  }
  return equal;
}

// A directory every rank sees (rank 0 makes it and, at the end, removes it).
class SharedDir {
 public:
  explicit SharedDir(const std::string& what) {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "adamx_test_mpi_surface_" + std::string(test->test_suite_name()) + "_" + test->name() +
                       "_" + what + "_np" + std::to_string(world_size());
    for (char& c : name)
      if (c == '/') c = '_';  // typed suites are named "Suite/0"
    dir_ = std::filesystem::temp_directory_path() / name;
    if (world_rank() == 0) {
      std::filesystem::remove_all(dir_);
      std::filesystem::create_directories(dir_);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    std::error_code ignored;
    if (world_rank() == 0) std::filesystem::remove_all(dir_, ignored);
  }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }

 private:
  std::filesystem::path dir_;
};

template <class P>
class MpiSurface : public ::testing::Test {};
TYPED_TEST_SUITE(MpiSurface, Pairs);

// The one loop, unchanged, on both optimizers: the same bits for 1, 2 and 3
// ranks, including the reports, state(g) mid-run and after, and the resume
// from a checkpoint saved and loaded mid-run by unqualified calls.
TYPED_TEST(MpiSurface, OneLoopSameBitsOnBothOptimizers) {
  SharedDir dir("loop");
  const Run<typename TypeParam::One> one =
      train<typename TypeParam::One>(dir / ("single_rank" + std::to_string(world_rank()) + ".ckpt"));
  const Run<typename TypeParam::Many> many = train<typename TypeParam::Many>(dir / "sharded.ckpt");
  EXPECT_TRUE(bitwise_equal(one, many, true));
  EXPECT_EQ(many.reports.size(), static_cast<std::size_t>(2 * kSteps));
  EXPECT_EQ(many.state.at(0).t, kSteps - (kLoadAfter - kSaveAfter));
}

// The comparison above can fail: one rank's gradient off by 1/64 in one
// element changes the mean, and the sharded run no longer matches.
TYPED_TEST(MpiSurface, OneRankPerturbedIsDetected) {
  SharedDir dir("perturbed");
  const Run<typename TypeParam::One> one =
      train<typename TypeParam::One>(dir / ("single_rank" + std::to_string(world_rank()) + ".ckpt"));
  const Run<typename TypeParam::Many> many =
      train<typename TypeParam::Many>(dir / "sharded.ckpt", world_size() - 1);
  EXPECT_FALSE(bitwise_equal(one, many, false));
}

// What a call threw: its type and message, to compare across the optimizers.
template <class Call>
std::string thrown(Call call) {
  try {
    call();
  } catch (const std::out_of_range& e) {
    return std::string("out_of_range: ") + e.what();
  } catch (const std::invalid_argument& e) {
    return std::string("invalid_argument: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("other exception: ") + e.what();
  }
  return "nothing thrown";
}

template <class Opt>
struct BadInput {
  using Scalar = typename Opt::scalar_type;
  Model<Scalar> model;
  std::unique_ptr<Opt> opt = construct<Opt>();
  std::vector<std::string> messages;

  BadInput() {
    opt->add_group({model.w1, model.b1}, Opt::default_options(), "fc1", {"weight", "bias"});
    opt->add_group({model.w2, model.b2, model.s2}, Opt::default_options(), "fc2");
    model.gradients(0, false);
    opt->step({{model.w1, model.b1}, {model.w2, model.b2, model.s2}},
              {{model.gw1, model.gb1}, {model.gw2, model.gb2, model.gs2}});
  }

  // Every mistake below, on every rank alike; the state and parameters
  // must be as they were after each.
  void run_all() {
    Opt& o = *opt;
    const auto state_before = o.state();
    const auto params_before = model.values();
    const auto add = [&](auto call) {
      messages.push_back(thrown(call));
      EXPECT_TRUE(o.state() == state_before) << messages.back();
      EXPECT_TRUE(model.values() == params_before) << messages.back();
    };
    add([&] { o.set_lr(2, 0.1); });
    add([&] { o.set_lr(0, -1.0); });
    add([&] { o.set_lr(std::numeric_limits<double>::quiet_NaN()); });
    add([&] { o.set_betas(1, 0.9, 1.0); });
    // ε where the optimizer has it (not Lion).
    adamx_test::call_if_declared(o, [&](auto& x) -> decltype(x.set_eps(1, -1.0)) { add([&] { x.set_eps(1, -1.0); }); });
    add([&] { o.set_weight_decay(5, 0.1); });
    add([&] { o.options(2); });
    add([&] { o.state(7); });
    add([&] { o.group_index("fc3"); });
    add([&] { o.set_threads(0); });
    add([&] {
      typename Opt::Options bad = o.options(0);
      if (!adamx_test::set_option(bad, "beta3", 2.0)) bad.beta2 = 2.0;  // β2 where there is no β3 (Lion)
      o.set_options(0, bad);
    });
    add([&] { o.step({{model.w1, model.b1}}, {{model.gw1, model.gb1}}); });
    add([&] { o.step({{model.w1, model.b1}, {model.w2, model.b2}}, {{model.gw1, model.gb1}, {model.gw2, model.gb2}}); });
    add([&] {
      o.step({{model.w1, model.b1}, {model.w2, model.b2, model.s2}},
             {{model.gw1, model.gb1}, {model.gw2, model.gb2, model.gb2}});
    });
    add([&] {  // fc1.bias's gradient lies in fc1.weight's memory
      const Eigen::Map<const Vector<Scalar>> inside_w1(model.w1.data(), model.b1.size());
      o.step({{model.w1, model.b1}, {model.w2, model.b2, model.s2}},
             {{model.gw1, inside_w1}, {model.gw2, model.gb2, model.gs2}});
    });
    add([&] { o.add_group({model.w1}, Opt::default_options(), "fc1"); });
    add([&] { o.add_group({model.b1, model.b2}, Opt::default_options(), "fc3", {"only_one"}); });
  }
};

// Bad input throws the same exception type with the same message on every
// rank as in one process, and changes nothing.
TYPED_TEST(MpiSurface, BadInputThrowsWhatOneProcessThrows) {
  BadInput<typename TypeParam::One> one;
  BadInput<typename TypeParam::Many> many;
  one.run_all();
  many.run_all();
  ASSERT_EQ(one.messages.size(), many.messages.size());
  for (std::size_t i = 0; i < one.messages.size(); ++i) {
    EXPECT_EQ(one.messages[i], many.messages[i]) << "mistake " << i;
    EXPECT_NE(one.messages[i], "nothing thrown") << "mistake " << i;
  }
}

// A setter called on one rank only is caught at the next step, on every
// rank, before anything changes; called alike on every rank it steps.
TYPED_TEST(MpiSurface, SetterCalledOnOneRankIsRefusedAtTheNextStep) {
  using Opt = typename TypeParam::Many;
  using Scalar = typename Opt::scalar_type;
  ASSERT_GE(world_size(), 2) << "needs two ranks (tests/CMakeLists.txt leaves it out of the 1-rank run)";
  Model<Scalar> model;
  Opt opt(MPI_COMM_WORLD);
  opt.add_group({model.w1, model.b1});
  model.gradients(0, false);
  if (world_rank() == 1) opt.set_lr(0, 0.5);
  const auto before = model.values();
  try {
    opt.step({{model.w1, model.b1}}, {{model.gw1, model.gb1}});
    ADD_FAILURE() << "different options were accepted";
  } catch (const adamx::mpi::MpiError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("the ranks' options differ"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1: 'group0' lr=0.5"), std::string::npos) << message;
  }
  EXPECT_TRUE(model.values() == before);
  EXPECT_EQ(opt.local().state(0).t, 0);
  opt.set_lr(0, 0.5);  // now alike everywhere
  opt.step({{model.w1, model.b1}}, {{model.gw1, model.gb1}});
  EXPECT_EQ(opt.state(0).t, 1);
}

}  // namespace

