// Readers for the golden-vector files in tests/data (layouts in
// tests/data/README.md). A malformed file throws std::runtime_error naming
// what is wrong, so a damaged checkout fails the test instead of passing it.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace golden {

inline std::string data_path(const std::string& file) { return std::string(ADAMX_TEST_DATA_DIR) + "/" + file; }

// ---- adam_parity.bin ---------------------------------------------------------

struct TensorSpec {
  std::uint32_t rows = 0, cols = 0;
  int regime = 0;
  std::size_t size() const { return std::size_t{rows} * cols; }
};

struct GroupSpec {
  std::vector<std::uint32_t> tensors;  // indices into Run::tensors
  double beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  bool amsgrad = false, maximize = false;
  double beta3 = 0;      // Adan's (optimizer 3) only
  bool no_prox = false;  // Adan's only
  double warmup_steps = 0, r = 0, weight_lr_power = 0;  // Schedule-Free AdamW's (optimizer 4) only
  bool use_muon = false, nesterov = false;              // Muon's (optimizer 5) only
  double momentum = 0, ns_steps = 0;
  int adjust_lr = 0;  // 0 original, 1 match_rms_adamw
};

struct Run {
  std::string name;
  int optimizer = 0;  // 0 Adam, 1 AdamW, 2 RAdam, 3 Adan, 4 Schedule-Free AdamW
  int width = 0;      // bytes per element: 4 float32, 8 float64
  std::uint64_t seed = 0;
  std::uint32_t steps = 0;
  std::vector<TensorSpec> tensors;
  std::vector<GroupSpec> groups;
  std::uint64_t inputs_hash = 0;
  std::vector<std::vector<double>> lr;     // [step][group]: lr used by step t+1
  std::vector<std::vector<double>> theta;  // [step][element]: every tensor, in tensor order
  std::size_t elements() const {
    std::size_t n = 0;
    for (const TensorSpec& t : tensors) n += t.size();
    return n;
  }
};

struct AdamParityFile {
  std::string torch;  // version and settings PyTorch ran with
  std::vector<Run> runs;
};

class ByteReader {
 public:
  ByteReader(std::vector<unsigned char> bytes, std::string what)
      : bytes_(std::move(bytes)), what_(std::move(what)) {
    const std::uint16_t probe = 1;
    unsigned char first;
    std::memcpy(&first, &probe, 1);
    if (first != 1) throw std::runtime_error("golden data is little-endian; this host is not");
  }
  template <class T>
  T get() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string string() {
    const auto n = get<std::uint16_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  bool at_end() const { return pos_ == bytes_.size(); }

 private:
  void need(std::size_t n) const {
    if (bytes_.size() - pos_ < n)
      throw std::runtime_error(what_ + ": truncated at byte " + std::to_string(pos_));
  }
  std::vector<unsigned char> bytes_;
  std::string what_;
  std::size_t pos_ = 0;
};

inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline AdamParityFile read_adam_parity(const std::string& path) {
  ByteReader in(read_bytes(path), path);
  char magic[8];
  for (char& c : magic) c = static_cast<char>(in.get<std::uint8_t>());
  if (std::string(magic, 8) != "ADXPAR01") throw std::runtime_error(path + ": bad magic");
  AdamParityFile file;
  file.torch = in.string();
  const auto n_runs = in.get<std::uint32_t>();
  for (std::uint32_t r = 0; r < n_runs; ++r) {
    Run run;
    run.name = in.string();
    run.optimizer = in.get<std::uint8_t>();
    run.width = in.get<std::uint8_t>();
    run.seed = in.get<std::uint64_t>();
    run.steps = in.get<std::uint32_t>();
    if (run.width != 4 && run.width != 8) throw std::runtime_error(path + ": bad element width");
    const auto n_tensors = in.get<std::uint32_t>();
    for (std::uint32_t j = 0; j < n_tensors; ++j) {
      TensorSpec t;
      t.rows = in.get<std::uint32_t>();
      t.cols = in.get<std::uint32_t>();
      t.regime = in.get<std::uint8_t>();
      run.tensors.push_back(t);
    }
    const auto n_groups = in.get<std::uint32_t>();
    for (std::uint32_t g = 0; g < n_groups; ++g) {
      GroupSpec group;
      const auto count = in.get<std::uint32_t>();
      for (std::uint32_t j = 0; j < count; ++j) {
        group.tensors.push_back(in.get<std::uint32_t>());
        if (group.tensors.back() >= n_tensors) throw std::runtime_error(path + ": bad tensor index");
      }
      group.beta1 = in.get<double>();
      group.beta2 = in.get<double>();
      group.eps = in.get<double>();
      group.weight_decay = in.get<double>();
      group.amsgrad = in.get<std::uint8_t>() != 0;
      group.maximize = in.get<std::uint8_t>() != 0;
      if (run.optimizer == 3) {
        group.beta3 = in.get<double>();
        group.no_prox = in.get<std::uint8_t>() != 0;
      }
      if (run.optimizer == 4) {
        group.warmup_steps = in.get<double>();
        group.r = in.get<double>();
        group.weight_lr_power = in.get<double>();
      }
      if (run.optimizer == 5) {
        group.use_muon = in.get<std::uint8_t>() != 0;
        group.momentum = in.get<double>();
        group.nesterov = in.get<std::uint8_t>() != 0;
        group.adjust_lr = in.get<std::uint8_t>();
        group.ns_steps = in.get<double>();
      }
      run.groups.push_back(group);
    }
    run.inputs_hash = in.get<std::uint64_t>();
    run.lr.assign(run.steps, std::vector<double>(n_groups));
    for (auto& step : run.lr)
      for (double& x : step) x = in.get<double>();
    run.theta.assign(run.steps, std::vector<double>(run.elements()));
    for (auto& step : run.theta)
      for (double& x : step) x = run.width == 4 ? static_cast<double>(in.get<float>()) : in.get<double>();
    file.runs.push_back(std::move(run));
  }
  if (!in.at_end()) throw std::runtime_error(path + ": trailing bytes");
  return file;
}

// ---- schedules.txt and clip.txt: lines of a keyword and fields ---------------

inline double to_double(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0') throw std::runtime_error("not a number: '" + text + "'");
  return value;
}

/// The non-comment lines of a text file, each split on spaces.
inline std::vector<std::vector<std::string>> read_records(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<std::vector<std::string>> records;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::vector<std::string> record;
    for (std::string f; fields >> f;) record.push_back(f);
    records.push_back(std::move(record));
  }
  return records;
}

/// The numbers after the keyword of `record`, which must be `keyword`.
inline std::vector<double> numbers(const std::vector<std::string>& record, const std::string& keyword) {
  if (record.empty() || record[0] != keyword)
    throw std::runtime_error("expected a '" + keyword + "' line, got '" +
                             (record.empty() ? std::string() : record[0]) + "'");
  std::vector<double> out;
  for (std::size_t i = 1; i < record.size(); ++i) out.push_back(to_double(record[i]));
  return out;
}

/// A `schedule` record and its `lr` line: the lr of every epoch from 0.
struct ScheduleRecord {
  std::string name;
  std::vector<double> lr;
};

/// Every schedule record of a schedules file, each checked to hold as many lrs as it says.
inline std::vector<ScheduleRecord> schedule_records(const std::string& path) {
  const auto records = read_records(path);
  std::vector<ScheduleRecord> out;
  for (std::size_t r = 0; r < records.size(); ++r) {
    if (records[r][0] != "schedule") continue;
    if (records[r].size() < 3 || r + 1 == records.size())
      throw std::runtime_error(path + ": a schedule record without name, epochs or lr line");
    ScheduleRecord record{records[r][1], numbers(records[r + 1], "lr")};
    if (record.lr.size() != std::stoul(records[r][2]))
      throw std::runtime_error(path + ": schedule " + record.name + " has " + std::to_string(record.lr.size()) +
                               " lrs, its record says " + records[r][2]);
    out.push_back(std::move(record));
  }
  return out;
}

}  // namespace golden
