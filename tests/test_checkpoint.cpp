// Checkpoints that work: every field comes back bit for bit, resuming is
// exact, the bytes follow docs/checkpoints.md, and saving to a file is
// atomic. (What must not load is in test_checkpoint_badinput.cpp.)
#include "checkpoint_layout.hpp"
#include "checkpoint_model.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>

namespace {

using adamx_test::CheckpointModel;
using adamx_test::Layout;
using adamx_test::saved;

// ---- CRC-32 -------------------------------------------------------------------

TEST(Crc32, MatchesTheStandardCheckValue) {
  // The catalogued check value of CRC-32/ISO-HDLC (the zlib/PNG CRC).
  EXPECT_EQ(adamx::crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(adamx::crc32("", 0), 0u);
}

TEST(Crc32, IncrementalEqualsOneShotAndTheBitwiseDefinition) {
  std::mt19937 rng(7);
  for (std::size_t size : {1u, 2u, 3u, 7u, 64u, 1000u, 65537u}) {
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(rng() & 0xFFu);
    const std::uint32_t expected =
        adamx_test::bitwise_crc32(reinterpret_cast<const unsigned char*>(data.data()), size);
    EXPECT_EQ(adamx::crc32(data.data(), size), expected) << "size " << size;
    adamx::Crc32 pieces;
    for (std::size_t at = 0; at < size; at += 13)
      pieces.update(data.data() + at, std::min<std::size_t>(13, size - at));
    EXPECT_EQ(pieces.value(), expected) << "size " << size;
  }
}

// ---- round trip and resume --------------------------------------------------------

template <class Opt>
class Checkpoint : public ::testing::Test {};
// Every optimizer over float and double (Lion, Adan and AdaMod over bfloat16 too), and AdamX over bfloat16 and half
// parameters, whose float state must come back as float.
using CheckpointTypes =
    ::testing::Types<adamx::Adam<float>, adamx::Adam<double>, adamx::AdamW<float>,
                     adamx::AdamW<double>, adamx::AdamX<float>, adamx::AdamX<double>,
                     adamx::AdamX<Eigen::bfloat16>, adamx::AdamX<Eigen::half>,
                     adamx::RAdam<float>, adamx::RAdam<double>, adamx::AdaBound<float>,
                     adamx::AdaBound<double>, adamx::AdaMod<float>, adamx::AdaMod<double>,
                     adamx::AdaMod<Eigen::bfloat16>, adamx::Lion<float>, adamx::Lion<double>,
                     adamx::Lion<Eigen::bfloat16>, adamx::Adan<float>, adamx::Adan<double>,
                     adamx::Adan<Eigen::bfloat16>, adamx::ScheduleFreeAdamW<float>,
                     adamx::ScheduleFreeAdamW<double>, adamx::ScheduleFreeAdamW<Eigen::bfloat16>>;
struct CheckpointTypeName {
  template <class T>
  static std::string GetName(int) {
    using S = typename T::scalar_type;
    const char* scalar = std::is_same<S, float>::value    ? "float"
                         : std::is_same<S, double>::value ? "double"
                         : std::is_same<S, Eigen::half>::value ? "half"
                                                               : "bfloat16";
    return std::string(T::name()) + "_" + scalar;
  }
};
TYPED_TEST_SUITE(Checkpoint, CheckpointTypes, CheckpointTypeName);

template <class Opt>
void load_bytes(Opt& opt, const std::string& bytes) {
  std::istringstream in(bytes, std::ios::binary);
  adamx::load_checkpoint(opt, in);
}

// Every field of every group (options included) comes back bitwise, into an
// optimizer created with different options and no steps.
TYPED_TEST(Checkpoint, RoundTripRestoresEveryFieldBitwise) {
  using Opt = TypeParam;
  for (const bool amsgrad : {false, true}) {
    SCOPED_TRACE(amsgrad ? "amsgrad" : "no amsgrad");
    CheckpointModel<Opt> model;
    Opt opt;
    model.add_groups(opt, CheckpointModel<Opt>::busy_options(amsgrad), typename Opt::Options{});
    for (int k = 0; k < 9; ++k) model.step(opt, k);
    const std::string bytes = saved(opt);

    CheckpointModel<Opt> fresh_model;
    Opt fresh;
    fresh_model.add_groups(fresh);
    load_bytes(fresh, bytes);
    ASSERT_EQ(fresh.state().size(), opt.state().size());
    for (std::size_t g = 0; g < opt.state().size(); ++g)
      EXPECT_TRUE(fresh.state()[g] == opt.state()[g]) << "group " << g;
    EXPECT_EQ(fresh.state()[0].t, 9);
    if constexpr (!adamx_test::kGammaFixed<Opt>) {
      EXPECT_NE(fresh.state()[0].gamma, 1.0) << "γ never moved";
    }
    // And what it loaded saves to the same bytes.
    EXPECT_EQ(saved(fresh), bytes);
  }
}

// docs/design.md section 7: k steps, save, load into a fresh optimizer, k more steps is
// bitwise the same as 2k uninterrupted steps (parameters and state).
TYPED_TEST(Checkpoint, ResumeIsExact) {
  using Opt = TypeParam;
  for (const bool amsgrad : {false, true})
    for (const int k : {1, 20}) {
      SCOPED_TRACE(std::string(amsgrad ? "amsgrad" : "no amsgrad") + ", k = " + std::to_string(k));
      const auto options = CheckpointModel<Opt>::busy_options(amsgrad);

      CheckpointModel<Opt> straight_model;
      Opt straight;
      straight_model.add_groups(straight, options, options);
      for (int i = 0; i < 2 * k; ++i) straight_model.step(straight, i);

      CheckpointModel<Opt> first_model;
      Opt first;
      first_model.add_groups(first, options, options);
      for (int i = 0; i < k; ++i) first_model.step(first, i);
      const std::string bytes = saved(first);

      // A new process: a fresh optimizer with default options, and the
      // parameters as the training loop saved them.
      CheckpointModel<Opt> resumed_model = first_model;
      Opt resumed;
      resumed_model.add_groups(resumed);
      load_bytes(resumed, bytes);
      for (int i = k; i < 2 * k; ++i) resumed_model.step(resumed, i);

      EXPECT_TRUE(resumed_model.SameParameters(straight_model));
      for (std::size_t g = 0; g < straight.state().size(); ++g)
        EXPECT_TRUE(resumed.state()[g] == straight.state()[g]) << "group " << g;
    }
}

// The bytes are what docs/checkpoints.md says, read by an independent
// parser: magic, version 3, header length, both CRCs, array sizes.
TYPED_TEST(Checkpoint, BytesFollowTheDocumentedLayout) {
  using Opt = TypeParam;
  using StateScalar = typename Opt::state_scalar_type;
  CheckpointModel<Opt> model;
  Opt opt;
  model.add_groups(opt, CheckpointModel<Opt>::busy_options(true), typename Opt::Options{});
  for (int k = 0; k < 3; ++k) model.step(opt, k);
  const std::string bytes = saved(opt);
  EXPECT_EQ(saved(opt), bytes) << "saving is not deterministic";

  EXPECT_EQ(bytes.substr(0, 8), "ADAMXCKP");
  EXPECT_EQ(adamx_test::read_le(bytes, Layout::kVersion, 4), 3u);
  const Layout layout(bytes);
  const auto* raw = reinterpret_cast<const unsigned char*>(bytes.data());
  EXPECT_EQ(adamx_test::read_le(bytes, layout.header_crc, 4),
            adamx_test::bitwise_crc32(raw, layout.header_crc));
  EXPECT_EQ(adamx_test::read_le(bytes, layout.file_crc, 4), adamx_test::bitwise_crc32(raw, layout.file_crc));
  ASSERT_EQ(layout.groups.size(), 2u);
  EXPECT_EQ(adamx_test::read_le(bytes, layout.groups[0].t, 8), 3u);
  // Arrays: layer1 (15 + 5 elements) with m, v, v_max; layer2 (20) with m,
  // v; AdaMod adds step_avg to both. That is every slot the rule declares
  // in layer1 (AMSGrad on) and all but v_max in layer2; Lion's m alone in
  // both; Adan's m, v, n and prev_grad in both; Schedule-Free's z and v in both.
  using Rule = typename adamx_test::FlavourOf_t<Opt>::Rule;
  const std::size_t layer1_slots = Rule::kSlots;
  const std::size_t layer2_slots = Rule::kSlots - (adamx_test::rule_has_slot<Opt>("v_max") ? 1 : 0);
  const bool adan = adamx_test::kStepsWith<adamx_test::FlavourOf_t<Opt>, adamx::rules::Adan>;
  const bool schedule_free = adamx_test::kStepsWith<adamx_test::FlavourOf_t<Opt>, adamx::rules::ScheduleFreeAdamW>;
  EXPECT_EQ(layer1_slots, adamx_test::kKeepsStepAverage<Opt> || adan ? 4u
                          : schedule_free                           ? 2u  // z and v
                          : adamx_test::rule_has_slot<Opt>("v")     ? 3u
                                                                    : 1u);
  EXPECT_EQ(layout.file_crc - layout.arrays, (20 * layer1_slots + 20 * layer2_slots) * sizeof(StateScalar));
  // Each option is found by its name; an optimizer without final_lr
  // writes none (version 2 wrote 0.1 there).
  const bool has_final_lr = adamx::has_option_field<typename Opt::Options>("final_lr");
  EXPECT_EQ(layout.groups[0].has_option("final_lr"), has_final_lr);
  if (has_final_lr) {
    double final_lr;
    const auto final_lr_bits = adamx_test::read_le(bytes, layout.groups[0].option("final_lr"), 8);
    std::memcpy(&final_lr, &final_lr_bits, sizeof final_lr);
    EXPECT_EQ(final_lr, adamx_test::option_or(opt.options(0), "final_lr", 0.1));
  }
  // The first array is layer1.weight's m, little-endian.
  StateScalar first_m;
  const auto bits = adamx_test::read_le(bytes, layout.arrays, sizeof(StateScalar));
  std::memcpy(&first_m, &bits, sizeof first_m);
  EXPECT_TRUE(adamx_test::same_bits(&first_m, opt.state()[0].tensors[0].slot(0).data(), 1));
}

// A checkpoint reads exactly its own bytes, so streams can hold several.
TYPED_TEST(Checkpoint, OneStreamHoldsSeveralCheckpoints) {
  using Opt = TypeParam;
  CheckpointModel<Opt> model;
  Opt opt;
  model.add_groups(opt);
  model.step(opt, 0);
  std::stringstream stream(std::ios::in | std::ios::out | std::ios::binary);
  adamx::save_checkpoint(opt, stream);
  const auto after_one = opt.state();
  model.step(opt, 1);
  adamx::save_checkpoint(opt, stream);
  stream << "trailing user data";

  CheckpointModel<Opt> other_model;
  Opt other;
  other_model.add_groups(other);
  adamx::load_checkpoint(other, stream);
  EXPECT_TRUE(other.state() == after_one);
  adamx::load_checkpoint(other, stream);
  EXPECT_TRUE(other.state() == opt.state());
  std::string rest;
  std::getline(stream, rest);
  EXPECT_EQ(rest, "trailing user data");
}

// restore() takes state from the user's own serialization.
TYPED_TEST(Checkpoint, RestoreTakesPlainState) {
  using Opt = TypeParam;
  CheckpointModel<Opt> model;
  Opt opt;
  model.add_groups(opt, CheckpointModel<Opt>::busy_options(true));
  for (int k = 0; k < 4; ++k) model.step(opt, k);
  Opt other;
  CheckpointModel<Opt>().add_groups(other);
  other.restore(opt.state());
  EXPECT_TRUE(other.state() == opt.state());
}

// ---- files ------------------------------------------------------------------------

class CheckpointFile : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() /
                 ("adamx_test_checkpoint_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory_);
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }
  std::filesystem::path directory_;
};

using FileOpt = adamx::AdamX<float>;

TEST_F(CheckpointFile, SaveWritesAtomicallyAndLoadReadsItBack) {
  CheckpointModel<FileOpt> model;
  FileOpt opt;
  model.add_groups(opt, CheckpointModel<FileOpt>::busy_options(true));
  for (int k = 0; k < 5; ++k) model.step(opt, k);
  const auto path = directory_ / "run.ckpt";
  adamx::save_checkpoint(opt, path);
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(directory_ / "run.ckpt.partial"));
  std::ifstream in(path, std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(on_disk, saved(opt));

  // Overwriting an existing checkpoint replaces it whole.
  model.step(opt, 5);
  adamx::save_checkpoint(opt, path);
  FileOpt loaded;
  CheckpointModel<FileOpt>().add_groups(loaded);
  adamx::load_checkpoint(loaded, path);
  EXPECT_TRUE(loaded.state() == opt.state());
}

// read_checkpoint_header / read_checkpoint_groups: what a program that does
// not know the optimizer (the Python package's adamx.checkpoint) reads first.
TEST_F(CheckpointFile, TheHeaderAloneNamesTheOptimizerAndItsGroups) {
  CheckpointModel<FileOpt> model;
  FileOpt opt;
  model.add_groups(opt, CheckpointModel<FileOpt>::busy_options(true));
  for (int k = 0; k < 3; ++k) model.step(opt, k);
  const auto path = directory_ / "run.ckpt";
  adamx::save_checkpoint(opt, path);
  const adamx::CheckpointHeader header = adamx::read_checkpoint_header(path);
  EXPECT_EQ(header.optimizer, "AdamX");
  EXPECT_EQ(header.parameter_type, "float");
  EXPECT_EQ(header.state_type, "float");
  const auto groups = adamx::read_checkpoint_groups<float, adamx::flavour::AdamX>(path);
  ASSERT_EQ(groups.size(), opt.num_groups());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto expected = opt.state_without_arrays(g);
    EXPECT_EQ(groups[g].name, expected.name);
    EXPECT_EQ(groups[g].t, expected.t);
    EXPECT_TRUE(groups[g].options == expected.options);
    EXPECT_EQ(groups[g].gamma, expected.gamma);
    ASSERT_EQ(groups[g].tensors.size(), expected.tensors.size());
    for (std::size_t j = 0; j < expected.tensors.size(); ++j)
      EXPECT_TRUE(groups[g].tensors[j].shape() == expected.tensors[j].shape());
  }
  // Read as another optimizer or type: refused in load_checkpoint's words.
  EXPECT_THROW((adamx::read_checkpoint_groups<float, adamx::flavour::Lion>(path)), adamx::CheckpointError);
  EXPECT_THROW((adamx::read_checkpoint_groups<double, adamx::flavour::AdamX>(path)), adamx::CheckpointError);
  // A missing file and a file cut inside its header are named.
  const std::string missing = adamx_test::thrown_message<adamx::CheckpointError>(
      [&] { adamx::read_checkpoint_header(directory_ / "none.ckpt"); });
  EXPECT_TRUE(adamx_test::Contains(missing, "none.ckpt"));
  std::filesystem::resize_file(path, 20);
  const std::string cut = adamx_test::thrown_message<adamx::CheckpointError>(
      [&] { adamx::read_checkpoint_header(path); });
  EXPECT_TRUE(adamx_test::Contains(cut, path.string()));
}

TEST_F(CheckpointFile, TrailingBytesInAFileAreRefused) {
  CheckpointModel<FileOpt> model;
  FileOpt opt;
  model.add_groups(opt);
  model.step(opt, 0);
  const auto path = directory_ / "run.ckpt";
  adamx::save_checkpoint(opt, path);
  {
    std::ofstream append(path, std::ios::binary | std::ios::app);
    append << 'x';
  }
  FileOpt target;
  CheckpointModel<FileOpt> target_model;
  target_model.add_groups(target);
  const adamx_test::Snapshot<FileOpt> before(target, {});
  const std::string message = adamx_test::thrown_message<adamx::CheckpointError>(
      [&] { adamx::load_checkpoint(target, path); });
  EXPECT_TRUE(adamx_test::Contains(message, "unexpected bytes after"));
  EXPECT_TRUE(adamx_test::Contains(message, path.string()));
  EXPECT_TRUE(before.Unchanged(target, {}));
}

TEST_F(CheckpointFile, MissingFilesAndDirectoriesAreNamed) {
  FileOpt opt;
  CheckpointModel<FileOpt>().add_groups(opt);
  const auto missing = directory_ / "absent.ckpt";
  EXPECT_TRUE(adamx_test::Contains(adamx_test::thrown_message<adamx::CheckpointError>(
                                       [&] { adamx::load_checkpoint(opt, missing); }),
                                   "cannot open"));
  const auto nowhere = directory_ / "no_such_directory" / "run.ckpt";
  EXPECT_TRUE(adamx_test::Contains(adamx_test::thrown_message<adamx::CheckpointError>(
                                       [&] { adamx::save_checkpoint(opt, nowhere); }),
                                   "cannot create"));
  EXPECT_FALSE(std::filesystem::exists(nowhere));
}

}  // namespace
