// Checkpoints that must not load (docs/design.md section 7, "Nothing
// half-loaded"): every truncation and every single-bit flip of a
// valid file, wrong optimizer and scalar types, groups that were renamed,
// reordered or resized, and well-formed files (checksums right) that carry
// invalid values. Each must throw adamx::CheckpointError with a message
// naming the problem, and leave the optimizer bitwise as it was.
#include "checkpoint_layout.hpp"
#include "checkpoint_model.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <iostream>
#include <limits>
#include <sstream>
#include <set>
#include <string>

namespace {

using adamx_test::CheckpointModel;
using adamx_test::Contains;
using adamx_test::Layout;
using adamx_test::saved;

// A valid checkpoint of the two-group model after a few steps (amsgrad on in
// layer1, so v_max is in the file too).
template <class Opt>
std::string valid_checkpoint() {
  CheckpointModel<Opt> model;
  Opt opt;
  model.add_groups(opt, CheckpointModel<Opt>::busy_options(true), typename Opt::Options{});
  for (int k = 0; k < 6; ++k) model.step(opt, k);
  return saved(opt);
}

// The optimizer every bad file is loaded into: same groups, its own,
// different history, so "unchanged" cannot pass by accident.
template <class Opt>
struct Target {
  CheckpointModel<Opt> model;
  Opt opt;
  Target() {
    model.add_groups(opt);
    for (int k = 0; k < 3; ++k) model.step(opt, 50 + k);
  }
};

// Loads `bytes` into `target`; success iff it throws CheckpointError and
// the optimizer is bitwise unchanged. The message is returned through
// `message` for further checks.
template <class Opt>
::testing::AssertionResult RefusedUnchanged(Target<Opt>& target, const std::string& bytes,
                                            std::string* message = nullptr) {
  const auto before = target.opt.state();
  std::istringstream in(bytes, std::ios::binary);
  try {
    adamx::load_checkpoint(target.opt, in);
  } catch (const adamx::CheckpointError& error) {
    if (message) *message = error.what();
    if (!(target.opt.state() == before))
      return ::testing::AssertionFailure() << "threw (" << error.what() << ") but changed the state";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& error) {
    return ::testing::AssertionFailure() << "threw the wrong type: " << error.what();
  }
  return ::testing::AssertionFailure() << "loaded without an error";
}

template <class Opt>
class CheckpointBadInput : public ::testing::Test {};
using BadInputTypes = ::testing::Types<adamx::Adam<float>, adamx::AdamW<double>, adamx::AdamX<float>,
                                       adamx::AdamX<double>, adamx::RAdam<float>,
                                       adamx::AdaBound<double>, adamx::AdaMod<float>,
                                       adamx::Lion<float>, adamx::Lion<double>,
                                       adamx::Adan<float>, adamx::Adan<double>,
                                       adamx::ScheduleFreeAdamW<float>, adamx::ScheduleFreeAdamW<double>>;
TYPED_TEST_SUITE(CheckpointBadInput, BadInputTypes, adamx_test::OptimizerName);

// Every prefix of a valid file, from empty to one byte short, is refused as
// truncated at exactly its length.
TYPED_TEST(CheckpointBadInput, EveryTruncationIsRefused) {
  using Opt = TypeParam;
  const std::string file = valid_checkpoint<Opt>();
  Target<Opt> target;
  for (std::size_t length = 0; length < file.size(); ++length) {
    std::string message;
    ASSERT_TRUE(RefusedUnchanged(target, file.substr(0, length), &message)) << "length " << length;
    ASSERT_TRUE(Contains(message, "truncated at byte " + std::to_string(length) + " "))
        << "length " << length;
  }
  std::cout << "[ corrupt inputs ] " << file.size() << " truncations of a " << file.size()
            << "-byte checkpoint refused\n";
}

// Every single-bit flip is refused: in the magic, version or lengths by their
// checks, anywhere else by a CRC-32 (which detects every single-bit error).
TYPED_TEST(CheckpointBadInput, EverySingleBitFlipIsRefused) {
  using Opt = TypeParam;
  const std::string file = valid_checkpoint<Opt>();
  Target<Opt> target;
  for (std::size_t byte = 0; byte < file.size(); ++byte)
    for (int bit = 0; bit < 8; ++bit) {
      std::string corrupt = file;
      corrupt[byte] = static_cast<char>(corrupt[byte] ^ (1 << bit));
      ASSERT_TRUE(RefusedUnchanged(target, corrupt)) << "byte " << byte << " bit " << bit;
    }
  std::cout << "[ corrupt inputs ] " << 8 * file.size() << " single-bit flips refused\n";
}

// Which check catches a flip depends on where it is; the messages say so.
TYPED_TEST(CheckpointBadInput, MessagesNameTheDamage) {
  using Opt = TypeParam;
  const std::string file = valid_checkpoint<Opt>();
  const Layout layout(file);
  Target<Opt> target;
  const auto flipped = [&](std::size_t byte) {
    std::string corrupt = file;
    corrupt[byte] = static_cast<char>(corrupt[byte] ^ 0x01);
    return corrupt;
  };
  std::string message;
  ASSERT_TRUE(RefusedUnchanged(target, flipped(0), &message));
  EXPECT_TRUE(Contains(message, "bad magic"));
  // Version 3 with bit 2 flipped is 7, which no adamx wrote (bit 0 would
  // make it 2, which reads, and then the header checksum refuses it).
  std::string version_seven = file;
  version_seven[Layout::kVersion] = static_cast<char>(version_seven[Layout::kVersion] ^ 0x04);
  ASSERT_TRUE(RefusedUnchanged(target, version_seven, &message));
  EXPECT_TRUE(Contains(message, "unsupported format version 7 (this adamx reads versions 2 and 3)")) << message;
  ASSERT_TRUE(RefusedUnchanged(target, flipped(Layout::kVersion), &message));
  EXPECT_TRUE(Contains(message, "header checksum mismatch")) << message;
  ASSERT_TRUE(RefusedUnchanged(target, flipped(layout.groups[0].option("lr")), &message));
  EXPECT_TRUE(Contains(message, "header checksum mismatch"));
  ASSERT_TRUE(RefusedUnchanged(target, flipped(layout.arrays + 5), &message));
  EXPECT_TRUE(Contains(message, "checksum mismatch"));
  EXPECT_FALSE(Contains(message, "header checksum"));
  ASSERT_TRUE(RefusedUnchanged(target, flipped(layout.file_crc), &message));
  EXPECT_TRUE(Contains(message, "checksum mismatch"));
  std::string huge = file;
  adamx_test::write_le(huge, Layout::kHeaderLength, 0xFFFFFFFFu, 4);
  ASSERT_TRUE(RefusedUnchanged(target, huge, &message));
  EXPECT_TRUE(Contains(message, "implausible header length 4294967295"));
}

// Well-formed files (both checksums right) with one invalid value each.
TYPED_TEST(CheckpointBadInput, InvalidValuesAreRefusedByName) {
  using Opt = TypeParam;
  const std::string file = valid_checkpoint<Opt>();
  const Layout layout(file);
  Target<Opt> target;
  const auto& g0 = layout.groups[0];
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    const char* field;
    double value;
  };
  // The f64 options and group scalars of the Adam family, found by name.
  const Case f64_cases[] = {
      {"lr", nan},        {"lr", -1e-3},          {"beta1", 1.0},   {"beta2", inf},
      {"beta3", 1.5},     {"beta_norm", -0.5},    {"eps", -1e-8},   {"weight_decay", nan},
      {"gamma", inf},     {"gamma", -0.25},       {"h", nan},       {"h", -1.0},
  };
  const auto has_scalar = [&](const char* field) {
    for (const auto& f : g0.scalars)
      if (f.name == field) return true;
    return false;
  };
  const auto declared = [](const char* field) {
    return adamx_test::declares_option<typename Opt::Options>(field) ||
           adamx::group_scalar_or(typename Opt::State::Scalars{}, field, -1.0) != -1.0;
  };
  // A version 3 file holds exactly the options and group scalars the
  // optimizer declares: one it lacks (the Adam family's on Lion) is not in
  // the file at all, so there is nothing to corrupt.
  std::size_t tried = 0;
  std::set<std::string> absent;
  const auto in_file = [&](const char* field) {
    const bool present = g0.has_option(field) || has_scalar(field);
    EXPECT_EQ(present, declared(field)) << field;
    if (!present) absent.insert(field);
    return present;
  };
  for (const Case& c : f64_cases) {
    if (!in_file(c.field)) continue;
    std::string bad = file;
    adamx_test::patch_f64(bad, g0.has_option(c.field) ? g0.option(c.field) : g0.scalar(c.field), c.value);
    layout.reseal(bad);
    std::string message;
    ASSERT_TRUE(RefusedUnchanged(target, bad, &message)) << c.field << " = " << c.value;
    EXPECT_TRUE(adamx_test::NamesFieldAndValue(message, c.field, c.value));
    EXPECT_TRUE(Contains(message, "layer1"));
    ++tried;
  }
  if (adamx_test::kGammaFixed<Opt> && has_scalar("gamma")) {  // Adam's γ is 1, always (Lion has none)
    std::string bad = file;
    adamx_test::patch_f64(bad, g0.gamma, 1.5);
    layout.reseal(bad);
    std::string message;
    ASSERT_TRUE(RefusedUnchanged(target, bad, &message));
    EXPECT_TRUE(adamx_test::NamesFieldAndValue(message, "gamma", 1.5));
    ++tried;
  }
  {
    std::string bad = file;
    adamx_test::write_le(bad, g0.t, static_cast<std::uint64_t>(-5), 8);
    layout.reseal(bad);
    std::string message;
    ASSERT_TRUE(RefusedUnchanged(target, bad, &message));
    EXPECT_TRUE(adamx_test::NamesFieldAndValue(message, "t", -5));
    ++tried;
  }
  // Enumerations and flags outside their ranges.
  const struct {
    const char* field;
    unsigned value;
  } byte_cases[] = {{"decay_mode", 2}, {"amsgrad", 2}, {"no_prox", 2}, {"maximize", 255}, {"nonfinite", 3}};
  for (const auto& c : byte_cases) {
    if (!in_file(c.field)) continue;
    std::string bad = file;
    adamx_test::write_le(bad, g0.option(c.field), c.value, 1);
    layout.reseal(bad);
    std::string message;
    ASSERT_TRUE(RefusedUnchanged(target, bad, &message)) << c.field;
    EXPECT_TRUE(Contains(message, c.field));
    EXPECT_TRUE(Contains(message, std::to_string(c.value)));
    ++tried;
  }
  // amsgrad switched off in a file that stores v_max: the arrays no longer
  // add up, so the file is refused (as truncated data or a CRC mismatch,
  // depending on where the reading ends).
  // A rule without AMSGrad (Lion) has neither the flag nor v_max.
  if (declared("amsgrad")) {
    std::string bad = file;
    adamx_test::write_le(bad, g0.option("amsgrad"), 0, 1);
    layout.reseal(bad);
    ASSERT_TRUE(RefusedUnchanged(target, bad));
    ++tried;
  } else {
    EXPECT_FALSE(adamx_test::rule_has_slot<Opt>("v_max"));
  }
  // Only a rule without the Adam family's options and scalars lacks any:
  // Lion, which has none of beta3, beta_norm, eps, gamma, h, decay_mode and
  // amsgrad; Adan, which has its own beta3 and eps but none of the other five.
  // Only Adan has no_prox.
  // Schedule-Free AdamW has ε alone of them.
  const bool adan = adamx_test::kStepsWith<adamx_test::FlavourOf_t<Opt>, adamx::rules::Adan>;
  const bool schedule_free = adamx_test::kStepsWith<adamx_test::FlavourOf_t<Opt>, adamx::rules::ScheduleFreeAdamW>;
  const std::size_t adam_family_absent = adan                                   ? 5u
                                         : schedule_free                        ? 6u
                                         : adamx_test::rule_has_slot<Opt>("v") ? 0u
                                                                                : 7u;
  EXPECT_EQ(absent.size(), adam_family_absent + (adan ? 0u : 1u));
  EXPECT_EQ(absent.count("no_prox"), adan ? 0u : 1u);
  std::cout << "[ corrupt inputs ] " << tried << " well-formed files with invalid values refused, " << absent.size()
            << " fields of other optimizers it lacks (not in the file)\n";
}

// NaN or Inf in the moments is state a run with NonFinitePolicy::propagate
// can really reach, so a well-formed file holding it loads (the CRC vouches
// that it is what was saved).
TYPED_TEST(CheckpointBadInput, NonFiniteMomentsAreState) {
  using Opt = TypeParam;
  using StateScalar = typename Opt::state_scalar_type;
  std::string file = valid_checkpoint<Opt>();
  const Layout layout(file);
  const StateScalar nan = std::numeric_limits<StateScalar>::quiet_NaN();
  std::uint64_t bits = 0;
  std::memcpy(&bits, &nan, sizeof nan);
  adamx_test::write_le(file, layout.arrays, bits, static_cast<int>(sizeof nan));
  layout.reseal(file);
  Target<Opt> target;
  std::istringstream in(file, std::ios::binary);
  adamx::load_checkpoint(target.opt, in);
  EXPECT_TRUE(std::isnan(target.opt.state()[0].tensors[0].slot(0)[0]));
}

// ---- the wrong optimizer, scalar type or model ---------------------------------------

TEST(CheckpointMismatch, OptimizerAndScalarTypesMustMatch) {
  const std::string adam_float = valid_checkpoint<adamx::Adam<float>>();
  std::string message;
  {
    Target<adamx::AdamX<float>> target;
    ASSERT_TRUE(RefusedUnchanged(target, adam_float, &message));
    EXPECT_TRUE(Contains(message, "optimizer mismatch"));
    EXPECT_TRUE(Contains(message, "'Adam'"));
    EXPECT_TRUE(Contains(message, "'AdamX'"));
  }
  {
    Target<adamx::AdamW<float>> target;
    ASSERT_TRUE(RefusedUnchanged(target, adam_float, &message));
    EXPECT_TRUE(Contains(message, "optimizer mismatch"));
  }
  {
    Target<adamx::Adam<double>> target;
    ASSERT_TRUE(RefusedUnchanged(target, adam_float, &message));
    EXPECT_TRUE(Contains(message, "scalar type mismatch"));
    EXPECT_TRUE(Contains(message, "float parameters with float state"));
    EXPECT_TRUE(Contains(message, "double parameters with double state"));
  }
  {
    const std::string bf16 = valid_checkpoint<adamx::AdamX<Eigen::bfloat16>>();
    Target<adamx::AdamX<float>> target;
    ASSERT_TRUE(RefusedUnchanged(target, bf16, &message));
    EXPECT_TRUE(Contains(message, "bfloat16 parameters with float state"));
  }
}

// A model whose groups differ from the checkpoint's: every difference is
// listed, none is silently remapped.
TEST(CheckpointMismatch, EveryStructuralDifferenceIsListed) {
  using Opt = adamx::AdamX<float>;
  const std::string file = valid_checkpoint<Opt>();
  CheckpointModel<Opt> m;
  const auto refused = [&](Opt& opt, std::string& message) {
    const auto before = opt.state();
    std::istringstream in(file, std::ios::binary);
    message = adamx_test::thrown_message<adamx::CheckpointError>([&] { adamx::load_checkpoint(opt, in); });
    EXPECT_TRUE(opt.state() == before);
    EXPECT_TRUE(Contains(message, "does not match the optimizer's groups"));
  };
  std::string message;
  {  // groups in the other order
    Opt opt;
    opt.add_group({m.w2}, {}, "layer2", {"weight"});
    opt.add_group({m.w1, m.b1}, {}, "layer1", {"weight", "bias"});
    refused(opt, message);
    EXPECT_TRUE(Contains(message, "group 0 is named 'layer1', the optimizer's is 'layer2'"));
    EXPECT_TRUE(Contains(message, "group 1 is named 'layer2', the optimizer's is 'layer1'"));
    EXPECT_TRUE(Contains(message, "has 2 tensors, the optimizer's has 1"));
  }
  {  // a renamed tensor and a resized one, both reported
    Eigen::MatrixXf wider(5, 4);
    Opt opt;
    opt.add_group({wider, m.b1}, {}, "layer1", {"weight", "offset"});
    opt.add_group({m.w2}, {}, "layer2", {"weight"});
    refused(opt, message);
    EXPECT_TRUE(Contains(message, "tensor 1 is named 'bias', the optimizer's is 'offset'"));
    EXPECT_TRUE(Contains(message, "has shape 5x3 column-major, the optimizer's has 5x4 column-major"));
  }
  {  // the same shape in the other storage order
    Eigen::MatrixXf w2_col(4, 5);
    Opt opt;
    opt.add_group({m.w1, m.b1}, {}, "layer1", {"weight", "bias"});
    opt.add_group({w2_col}, {}, "layer2", {"weight"});
    refused(opt, message);
    EXPECT_TRUE(Contains(message, "4x5 row-major, the optimizer's has 4x5 column-major"));
  }
  {  // a group too many
    Eigen::VectorXf extra(3);
    Opt opt;
    m.add_groups(opt);
    opt.add_group({extra}, {}, "head", {"weight"});
    refused(opt, message);
    EXPECT_TRUE(Contains(message, "2 groups given, the optimizer has 3"));
  }
}

// restore() from plain data checks the same things, with std::invalid_argument.
TEST(RestoreBadInput, ArraySizesAndValuesAreCheckedFirst) {
  using Opt = adamx::AdamX<double>;
  Target<Opt> target;
  const auto before = target.opt.state();
  std::string message;

  auto short_m = before;
  short_m[1].tensors[0].slot(0).resize(3);
  message = adamx_test::thrown_message<std::invalid_argument>([&] { target.opt.restore(short_m); });
  EXPECT_TRUE(Contains(message, "layer2"));
  EXPECT_TRUE(Contains(message, "'weight'"));
  EXPECT_TRUE(Contains(message, "sizes 3, 20, 0"));
  EXPECT_TRUE(target.opt.state() == before);

  auto stray_v_max = before;  // amsgrad is off, so v_max must be empty
  stray_v_max[0].tensors[1].v_max.setZero(5);
  message = adamx_test::thrown_message<std::invalid_argument>([&] { target.opt.restore(stray_v_max); });
  EXPECT_TRUE(Contains(message, "'bias'"));
  EXPECT_TRUE(target.opt.state() == before);

  auto renamed = before;
  renamed[0].name = "encoder";
  renamed[1].tensors[0].cols = 4;
  message = adamx_test::thrown_message<std::invalid_argument>([&] { target.opt.restore(renamed); });
  EXPECT_TRUE(Contains(message, "group 0 is named 'encoder', the optimizer's is 'layer1'"));
  EXPECT_TRUE(Contains(message, "has shape 4x4 row-major, the optimizer's has 4x5 row-major"));
  EXPECT_TRUE(target.opt.state() == before);

  // The second group is bad, the first good: the first must not have been
  // restored either.
  auto half_bad = before;
  half_bad[0].t = 99;
  half_bad[1].h = -1.0;
  message = adamx_test::thrown_message<std::invalid_argument>([&] { target.opt.restore(half_bad); });
  EXPECT_TRUE(adamx_test::NamesFieldAndValue(message, "h", -1.0));
  EXPECT_TRUE(target.opt.state() == before);
}

}  // namespace
