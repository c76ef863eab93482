// study_eigen.cpp - the optimizer study's problems written with Eigen.
#include "study_main.hpp"

int main(int argc, char** argv) {
  const std::vector<study::TaskEntry> tasks = {};
  return study::study_main(argc, argv, "study_eigen", tasks);
}
