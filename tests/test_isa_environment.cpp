// ADAMX_INSTRUCTION_SET, which a process reads once: ctest runs this binary
// several times (tests/CMakeLists.txt, isa.environment.*), each with the
// variable set to one value and ADAMX_TEST_ISA_EXPECT saying what must
// happen: "chosen" (a known name: the set is used if this machine runs it,
// else the first step refuses it) or "unknown" (the first step refuses it).
// A refused step changes nothing, and set_instruction_set() still works.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using adamx::InstructionSet;

// One step of Adam on a few floats, checked to change nothing when it throws.
void expect_step_refused(const char* value, const char* reason) {
  Eigen::VectorXf theta = Eigen::VectorXf::LinSpaced(20, -1.0f, 1.0f), grad = Eigen::VectorXf::Constant(20, 0.5f);
  const Eigen::VectorXf theta_before = theta;
  adamx::Adam<float> opt;
  opt.add_group({theta});
  const auto state_before = opt.state();
  try {
    opt.step({{theta}}, {{grad}});
    ADD_FAILURE() << "ADAMX_INSTRUCTION_SET=" << value << " was accepted";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(std::string("ADAMX_INSTRUCTION_SET=") + value), std::string::npos) << message;
    EXPECT_NE(message.find(reason), std::string::npos) << message;
  }
  EXPECT_EQ(std::memcmp(theta.data(), theta_before.data(), sizeof(float) * 20), 0);
  EXPECT_TRUE(opt.state() == state_before);
  // The program can still choose a set itself, and then step.
  adamx::set_instruction_set(InstructionSet::baseline);
  opt.step({{theta}}, {{grad}});
  EXPECT_EQ(opt.state()[0].t, 1);
}

TEST(InstructionSetEnvironment, TheVariableIsObeyed) {
  const char* value = std::getenv("ADAMX_INSTRUCTION_SET");
  const char* expect = std::getenv("ADAMX_TEST_ISA_EXPECT");
  ASSERT_NE(value, nullptr) << "run through ctest (isa.environment.*), which sets ADAMX_INSTRUCTION_SET";
  ASSERT_NE(expect, nullptr) << "run through ctest (isa.environment.*), which sets ADAMX_TEST_ISA_EXPECT";
  if (std::string(expect) == "unknown") {
    expect_step_refused(value, "is not an instruction set");
    return;
  }
  ASSERT_EQ(std::string(expect), "chosen");
  InstructionSet named = InstructionSet::baseline;
  bool known = false;
  for (const InstructionSet set : {InstructionSet::baseline, InstructionSet::avx2, InstructionSet::avx512})
    if (std::string(value) == adamx::instruction_set_name(set)) named = set, known = true;
  ASSERT_TRUE(known) << value;
  if (!adamx::instruction_set_supported(named)) {
    expect_step_refused(value, "cannot be used");
    return;
  }
  EXPECT_EQ(adamx::instruction_set(), named);
  Eigen::VectorXf theta = Eigen::VectorXf::Ones(20), grad = Eigen::VectorXf::Constant(20, 0.5f);
  adamx::Adam<float> opt;
  opt.add_group({theta});
  opt.step({{theta}}, {{grad}});
  EXPECT_EQ(adamx::instruction_set(), named);
}

}  // namespace
