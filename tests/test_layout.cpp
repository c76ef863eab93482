// The one description of a tensor's name and shape (layout.hpp) and the one
// set of checks made of it: default names, TensorShape's comparison and
// wording, the view-to-shape conversion, and the messages of add_group,
// step and restore, which must describe a shape the same way.
#include <adamx/adamx.hpp>
#include <adamx/layout.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using adamx::TensorShape;
using adamx_test::thrown_message;
using Opt = adamx::AdamX<float>;
using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

TEST(Layout, DefaultNames) {
  EXPECT_EQ(adamx::default_group_name(0), "group0");
  EXPECT_EQ(adamx::default_group_name(12), "group12");
  EXPECT_EQ(adamx::default_tensor_name(0), "tensor0");
  EXPECT_EQ(adamx::default_tensor_name(7), "tensor7");

  // add_group names what it is not told to name with exactly these.
  Opt opt;
  Eigen::MatrixXf w(3, 4);
  Eigen::VectorXf b(4);
  opt.add_group({w, b}, {}, "fc");
  opt.add_group({w, b});
  EXPECT_EQ(opt.state(1).name, adamx::default_group_name(1));
  ASSERT_EQ(opt.state(1).tensors.size(), 2u);
  EXPECT_EQ(opt.state(1).tensors[0].name, adamx::default_tensor_name(0));
  EXPECT_EQ(opt.state(1).tensors[1].name, adamx::default_tensor_name(1));
}

TEST(Layout, ShapeComparisonAndWording) {
  const TensorShape col{"w", 3, 4, false};
  const TensorShape row{"w", 3, 4, true};
  const TensorShape vec{"b", 5, 1, false};
  EXPECT_EQ(col.size(), 12);
  EXPECT_EQ(vec.size(), 5);
  EXPECT_EQ(TensorShape{}.size(), 0);

  EXPECT_TRUE(col.same_shape(col));
  EXPECT_FALSE(col.same_shape(row));  // a matrix's memory order is part of its shape
  EXPECT_FALSE(col.same_shape(TensorShape{"w", 4, 3, false}));
  // A vector is the same elements in either order; the name is not a shape.
  EXPECT_TRUE(vec.same_shape(TensorShape{"other", 5, 1, true}));
  EXPECT_FALSE(vec.same_shape(TensorShape{"b", 1, 5, false}));

  EXPECT_EQ(col.describe(), "3x4 column-major");
  EXPECT_EQ(row.describe(), "3x4 row-major");
  EXPECT_EQ(vec.describe(), "5x1");
  EXPECT_EQ(TensorShape({"s", 1, 1, false}).describe(), "1x1");

  EXPECT_EQ(col, (TensorShape{"w", 3, 4, false}));
  EXPECT_NE(col, row);
  EXPECT_NE(col, (TensorShape{"v", 3, 4, false}));
}

TEST(Layout, ViewToShape) {
  RowMajor r(3, 4);
  Eigen::MatrixXf c(3, 4);
  RowMajor row_vector(1, 4);
  const adamx::ConstTensorRef<float> vr(r), vc(c), vv(row_vector);
  EXPECT_EQ(vr.layout().shape(), (TensorShape{"", 3, 4, true}));
  EXPECT_EQ(vc.layout().shape(), (TensorShape{"", 3, 4, false}));
  // A row-major vector is stored as a plain vector: no memory order.
  EXPECT_EQ(vv.layout().shape("x"), (TensorShape{"x", 1, 4, false}));
}

TEST(Layout, StateCarriesTheShape) {
  static_assert(std::is_base_of<TensorShape, Opt::tensor_state_type>::value,
                "TensorState is a TensorShape with arrays");
  Opt opt;
  RowMajor w(2, 3);
  Eigen::VectorXf b(3);
  opt.add_group({w, b}, {}, "fc", {"weight", "bias"});
  const auto& state = opt.state(0);
  EXPECT_EQ(state.tensors[0].shape(), (TensorShape{"weight", 2, 3, true}));
  EXPECT_EQ(state.tensors[1].shape(), (TensorShape{"bias", 3, 1, false}));
  const adamx::GroupLayout layout = state.layout();
  EXPECT_EQ(layout.name, "fc");
  EXPECT_EQ(layout.size(), 9);
  EXPECT_EQ(layout.sizes(), (std::vector<Eigen::Index>{6, 3}));
  ASSERT_EQ(layout.tensors.size(), 2u);
  EXPECT_EQ(layout.tensors[0], state.tensors[0].shape());
}

// add_group's checks, message by message: each refusal leaves the optimizer
// as it was (the next group still gets index 1).
TEST(Layout, AddGroupRefusals) {
  Opt opt;
  Eigen::MatrixXf w(2, 2);
  Eigen::VectorXf b(2);
  float dummy[4] = {};
  opt.add_group({w}, {}, "fc");
  struct Case {
    const char* what;
    std::function<void()> call;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"duplicate group", [&] { opt.add_group({w}, {}, "fc"); },
       "adamx::AdamX::add_group: a group named 'fc' already exists (names must be unique)"},
      {"duplicate tensor names", [&] { opt.add_group({w, b}, {}, "g", {"x", "x"}); },
       "adamx::AdamX::add_group: group 'g' has two tensors named 'x'"},
      {"empty tensor name", [&] { opt.add_group({w, b}, {}, "g", {"x", ""}); },
       "adamx::AdamX::add_group: group 'g' tensor 1 has an empty name"},
      {"negative dimension",
       [&] { opt.add_group({adamx::ConstTensorRef<float>(dummy, 2, -1)}, {}, "g", {"x"}); },
       "adamx::AdamX::add_group: tensor 'g.x' has a negative dimension"},
      {"fewer names", [&] { opt.add_group({w, b}, {}, "g", {"x"}); },
       "adamx::AdamX::add_group: group 'g' has 2 tensors but 1 tensor names"},
      {"no tensors", [&] { opt.add_group(std::vector<adamx::ConstTensorRef<float>>{}, {}, "g"); },
       "adamx::AdamX::add_group: group 'g' has no tensors (a group needs at least one)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(thrown_message<std::invalid_argument>(c.call), c.message);
    EXPECT_EQ(opt.num_groups(), 1u);
  }
  EXPECT_EQ(opt.add_group({w}), 1u);
}

// step's count checks, and a wrong shape from step and from restore: both
// describe shapes with TensorShape::describe.
TEST(Layout, CountAndShapeMessagesReadAlike) {
  Opt opt;
  Eigen::MatrixXf w(3, 4), gw(3, 4);
  Eigen::VectorXf b(4), gb(4);
  opt.add_group({w, b}, {}, "fc", {"weight", "bias"});

  EXPECT_EQ(thrown_message<std::invalid_argument>([&] { opt.step({{w, b}, {w}}, {{gw, gb}, {gw}}); }),
            "adamx::AdamX::step: got 2 parameter groups and 2 gradient groups, but the optimizer has 1 groups");
  EXPECT_EQ(thrown_message<std::invalid_argument>([&] { opt.step({{w, b}}, {{gw}}); }),
            "adamx::AdamX::step: group 'fc' has 2 tensors but got 2 parameters and 1 gradients");

  RowMajor wrong(3, 4);
  const TensorShape wrong_shape = adamx::ConstTensorRef<float>(wrong).layout().shape();
  const TensorShape right_shape = opt.state(0).tensors[0].shape();
  EXPECT_EQ(thrown_message<std::invalid_argument>([&] { opt.step({{w, b}}, {{wrong, gb}}); }),
            "adamx::AdamX::step: tensor 'fc.weight': the gradient has shape " + wrong_shape.describe() +
                " but the group was created with " + right_shape.describe());

  auto states = opt.state();
  states[0].tensors[0].row_major = true;
  const std::string restored = thrown_message<std::invalid_argument>([&] { opt.restore(states); });
  EXPECT_EQ(restored,
            "adamx::AdamX::restore: the state does not match the optimizer's groups:\n"
            "  - group 0 ('fc') tensor 0 ('weight') has shape " +
                wrong_shape.describe() + ", the optimizer's has " + right_shape.describe());
  EXPECT_EQ(opt.structure_differences(opt.state()), std::vector<std::string>{});

  // A sharded checkpoint's record compares the same shapes in the same words.
  adamx::ShardLayout run;
  run.groups.push_back(adamx::make_shard_layout_group("fc", opt.state(0).layout().tensors, 1));
  adamx::ShardLayout file = run;
  file.groups[0].tensors[0].row_major = true;
  const std::vector<std::string> differences = adamx::shard_layout_differences(run, file);
  ASSERT_EQ(differences.size(), 1u);
  EXPECT_EQ(differences[0], "group 0 ('fc'): tensor 'weight' is " + wrong_shape.describe() + " in the checkpoint, " +
                                right_shape.describe() + " in this run");
}

TEST(Layout, ThreadCountCheckedOnce) {
  Opt opt;
  EXPECT_EQ(thrown_message<std::invalid_argument>([&] { opt.set_threads(0); }),
            "adamx::AdamX::set_threads: invalid threads = 0 (must be >= 1)");
  EXPECT_EQ(thrown_message<std::invalid_argument>([&] { adamx::detail::check_threads("who: ", -2); }),
            "who: invalid threads = -2 (must be >= 1)");
  EXPECT_EQ(opt.threads(), 1);
  if (!adamx::detail::kOpenMP) {
    EXPECT_EQ(thrown_message<std::invalid_argument>([&] { opt.set_threads(2); }),
              "adamx::AdamX::set_threads: threads = 2 needs OpenMP, but adamx was compiled without it "
              "(define ADAMX_OPENMP and compile with -fopenmp)");
  } else {
    opt.set_threads(2);
    EXPECT_EQ(opt.threads(), 2);
  }
}

}  // namespace
