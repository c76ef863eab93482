// Run checkpoints: everything a training loop needs to go on where it
// stopped, in one file. save_checkpoint (checkpoint.hpp) stores the
// optimizer's state only; a run checkpoint stores
//
//   - the parameters, by group and tensor name (the optimizer's names), in
//     their own scalar type (float, double, bfloat16, half);
//   - the optimizer's state, as an ordinary checkpoint;
//   - the state of every learning-rate schedule passed, by name: any type
//     with `ScheduleState state() const` and `void restore(const ScheduleState&)`
//     (schedule_state.hpp), composed schedules included;
//   - named 64-bit counters of the loop's own (step, epoch, ...).
//
//   adamx::save_run(opt, {{W1, b1}, {W2}}, {{"lr", schedule}}, {{"step", step}}, "run.ckpt");
//   adamx::load_run(opt, {{W1, b1}, {W2}}, {{"lr", schedule}}, {{"step", step}}, "run.ckpt");
//
// The file (docs/checkpoints.md, "Run checkpoints") is written atomically
// like a checkpoint and checked like one (magic, version, CRC-32s). Loading
// is all-or-nothing across all four parts: everything is read and validated
// into temporaries first; the only step of the commit that can refuse, a
// schedule's restore(), runs first and is undone if any schedule refuses; the
// rest (optimizer, parameters, counters) cannot fail.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <istream>
#include <ostream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/checkpoint.hpp"
#include "adamx/crc32.hpp"
#include "adamx/errors.hpp"
#include "adamx/optimizer.hpp"
#include "adamx/schedule_state.hpp"
#include "adamx/tensor_ref.hpp"

ADAMX_NAMESPACE_BEGIN

/// The run record format version this adamx writes and reads.
inline constexpr std::uint32_t kRunCheckpointVersion = 1;

namespace detail {

template <class T, class = void>
struct has_schedule_state : std::false_type {};
template <class T>
struct has_schedule_state<
    T, std::void_t<decltype(ScheduleState(std::declval<const T&>().state())),
                   decltype(std::declval<T&>().restore(std::declval<const ScheduleState&>()))>>
    : std::true_type {};

}  // namespace detail

/// A learning-rate schedule of a run under a name: a reference to any object
/// with state() and restore() (every adamx schedule, or one of your own). The
/// object must outlive the call it is passed to.
class RunSchedule {
 public:
  template <class Schedule, class = std::enable_if_t<detail::has_schedule_state<Schedule>::value>>
  RunSchedule(std::string name, Schedule& schedule)  // NOLINT(google-explicit-constructor): {"lr", s}
      : name_(std::move(name)),
        schedule_(&schedule),
        state_([](const void* s) { return ScheduleState(static_cast<const Schedule*>(s)->state()); }),
        restore_([](void* s, const ScheduleState& state) { static_cast<Schedule*>(s)->restore(state); }) {}

  const std::string& name() const { return name_; }
  ScheduleState state() const { return state_(schedule_); }
  void restore(const ScheduleState& state) const { restore_(schedule_, state); }

 private:
  std::string name_;
  void* schedule_;
  ScheduleState (*state_)(const void*);
  void (*restore_)(void*, const ScheduleState&);
};

/// A counter of the training loop (step, epoch, samples seen...) under a name.
class RunCounter {
 public:
  RunCounter(std::string name, std::int64_t& value)  // NOLINT(google-explicit-constructor): {"step", step}
      : name_(std::move(name)), value_(&value) {}
  const std::string& name() const { return name_; }
  std::int64_t& value() const { return *value_; }

 private:
  std::string name_;
  std::int64_t* value_;
};

namespace detail {

inline constexpr char kRunMagic[8] = {'A', 'D', 'A', 'M', 'X', 'R', 'U', 'N'};
// Schedules nest (a warm-up around a cosine, a sequence of schedules); no
// real one nests this deep, and a crafted file cannot recurse further.
inline constexpr int kMaxScheduleDepth = 32;

template <class Scalar>
using ParamViews = std::vector<std::vector<TensorRef<Scalar>>>;

// The parameters in the form step() takes, as one container.
template <class Scalar, class ParamGroups>
ParamViews<Scalar> param_views(const ParamGroups& params) {
  ParamViews<Scalar> views;
  for (const auto& group : params) {
    views.emplace_back();
    for (const auto& tensor : group) views.back().push_back(tensor);
  }
  return views;
}

// Throws std::invalid_argument (prefixed by `who`) unless the arguments can
// be saved or loaded: one contiguous view of the optimizer's shape per
// tensor, and names unique among the schedules and among the counters.
template <class Scalar, class Flavour>
void check_run_arguments(const Optimizer<Scalar, Flavour>& optimizer, const ParamViews<Scalar>& params,
                         const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
                         const std::string& who) {
  const auto fail = [&](const std::string& what) { throw std::invalid_argument(who + ": " + what); };
  if (params.size() != optimizer.num_groups())
    fail("got " + std::to_string(params.size()) + " parameter groups, the optimizer has " +
         std::to_string(optimizer.num_groups()));
  for (std::size_t g = 0; g < params.size(); ++g) {
    const GroupLayout& own = optimizer.layout(g);
    if (params[g].size() != own.tensors.size())
      fail("group '" + own.name + "' has " + std::to_string(own.tensors.size()) + " tensors but got " +
           std::to_string(params[g].size()) + " parameters");
    for (std::size_t j = 0; j < params[g].size(); ++j) {
      const auto& ts = own.tensors[j];
      const TensorRef<Scalar>& p = params[g][j];
      const std::string where = "parameter '" + own.name + "." + ts.name + "'";
      const TensorShape given = p.layout().shape();
      if (!given.same_shape(ts)) fail(where + " is " + given.describe() + ", the optimizer's is " + ts.describe());
      if (!p.layout().contiguous()) fail(where + " is not contiguous");
      if (p.data() == nullptr && p.size() > 0) fail(where + " has no memory (null data pointer)");
    }
  }
  const auto unique = [&](const auto& entries, const char* what) {
    for (std::size_t i = 0; i < entries.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (entries[i].name() == entries[j].name())
          fail(std::string("two ") + what + " are named '" + entries[i].name() + "'");
  };
  unique(schedules, "schedules");
  unique(counters, "counters");
}

// A schedule state's settings and values (name, f64) and its counters
// (name, i64): a u32 count, then each entry's name and value.
inline void put_named(std::string& out, const std::string& name, double value) {
  put_string(out, name);
  put_f64(out, value);
}
inline void put_named(std::string& out, const std::string& name, std::int64_t value) {
  put_string(out, name);
  put_i64(out, value);
}
template <class Entries>
void put_named_entries(std::string& out, const Entries& entries) {
  put_u32(out, static_cast<std::uint32_t>(entries.size()));
  for (const auto& entry : entries) put_named(out, entry.first, entry.second);
}

inline void put_schedule_state(std::string& out, const ScheduleState& s) {
  put_string(out, s.kind);
  put_named_entries(out, s.settings);
  put_named_entries(out, s.values);
  put_named_entries(out, s.counters);
  put_u32(out, static_cast<std::uint32_t>(s.children.size()));
  for (const ScheduleState& child : s.children) put_schedule_state(out, child);
}

// Reads what put_named_entries wrote; `what` names the entries in messages
// ("setting" reads "setting count", "setting name" and "setting").
template <class Value>
std::vector<std::pair<std::string, Value>> get_named_entries(HeaderReader& in, const std::string& what) {
  std::vector<std::pair<std::string, Value>> entries;
  for (std::uint32_t i = 0, n = in.u32((what + " count").c_str()); i < n; ++i) {
    std::string name = in.string((what + " name").c_str());
    if constexpr (std::is_same<Value, double>::value)
      entries.emplace_back(std::move(name), in.f64(what.c_str()));
    else
      entries.emplace_back(std::move(name), in.i64(what.c_str()));
  }
  return entries;
}

// Counts come from a checksummed record; every entry takes at least four
// bytes, so a corrupt count runs out of record long before memory.
inline ScheduleState get_schedule_state(HeaderReader& in, int depth) {
  if (depth > kMaxScheduleDepth)
    in.malformed("schedules nested more than " + std::to_string(kMaxScheduleDepth) + " deep");
  ScheduleState s;
  s.kind = in.string("schedule kind");
  s.settings = get_named_entries<double>(in, "setting");
  s.values = get_named_entries<double>(in, "value");
  s.counters = get_named_entries<std::int64_t>(in, "counter");
  for (std::uint32_t i = 0, n = in.u32("composed schedule count"); i < n; ++i)
    s.children.push_back(get_schedule_state(in, depth + 1));
  return s;
}

// The run record: parameter layout, schedules, counters (docs/checkpoints.md).
template <class Scalar, class Flavour>
std::string encode_run_record(const Optimizer<Scalar, Flavour>& optimizer,
                              const std::vector<RunSchedule>& schedules,
                              const std::vector<RunCounter>& counters) {
  std::string out;
  put_u8(out, scalar_code<Scalar>::value);
  put_u32(out, static_cast<std::uint32_t>(optimizer.num_groups()));
  for (std::size_t gi = 0; gi < optimizer.num_groups(); ++gi) {
    const GroupLayout& g = optimizer.layout(gi);
    put_string(out, g.name);
    put_u32(out, static_cast<std::uint32_t>(g.tensors.size()));
    for (const auto& ts : g.tensors) {
      put_string(out, ts.name);
      put_i64(out, ts.rows);
      put_i64(out, ts.cols);
      put_u8(out, ts.row_major ? 1 : 0);
    }
  }
  put_u32(out, static_cast<std::uint32_t>(schedules.size()));
  for (const RunSchedule& s : schedules) {
    put_string(out, s.name());
    put_schedule_state(out, s.state());
  }
  put_u32(out, static_cast<std::uint32_t>(counters.size()));
  for (const RunCounter& c : counters) {
    put_string(out, c.name());
    put_i64(out, c.value());
  }
  return out;
}

template <class Scalar, class Flavour>
void write_run(const Optimizer<Scalar, Flavour>& optimizer, const ParamViews<Scalar>& params,
               const std::string& record, std::ostream& out) {
  Crc32 crc;
  write_checked_block(out, crc, kRunMagic, kRunCheckpointVersion, record);
  for (const auto& group : params)
    for (const TensorRef<Scalar>& p : group) write_array(out, crc, p.data(), p.size());
  write_crc(out, crc);
  if (!out) throw CheckpointError("adamx::save_run: writing to the stream failed");
  save_checkpoint(optimizer, out);
}

// Everything a run checkpoint holds, read and validated, nothing applied.
template <class Scalar, class Flavour>
struct RunContents {
  std::vector<std::vector<Eigen::Array<Scalar, Eigen::Dynamic, 1>>> params;
  std::vector<typename Optimizer<Scalar, Flavour>::State> optimizer;
  std::vector<ScheduleState> schedules;  ///< in the order of the call's list
  std::vector<std::int64_t> counters;    ///< in the order of the call's list
};

// Lists, in `differences`, the names the call passes that the file lacks and
// the other way round; returns, for each name passed, its position in the file.
inline std::vector<std::size_t> match_names(const std::vector<std::string>& passed,
                                            const std::vector<std::string>& stored, const char* what,
                                            std::vector<std::string>& differences) {
  std::vector<std::size_t> at(passed.size(), stored.size());
  for (std::size_t i = 0; i < passed.size(); ++i) {
    for (std::size_t j = 0; j < stored.size(); ++j)
      if (stored[j] == passed[i]) at[i] = j;
    if (at[i] == stored.size())
      differences.push_back(std::string(what) + " '" + passed[i] + "' is not in the file");
  }
  for (const std::string& name : stored)
    if (std::find(passed.begin(), passed.end(), name) == passed.end())
      differences.push_back("the file has " + std::string(what) + " '" + name + "', which was not passed");
  return at;
}

// Reads a whole run checkpoint from `in` for the given objects without
// changing any of them. `start_offset`: where it begins in its file.
template <class Scalar, class Flavour>
RunContents<Scalar, Flavour> read_run(const Optimizer<Scalar, Flavour>& optimizer,
                                      const std::vector<RunSchedule>& schedules,
                                      const std::vector<RunCounter>& counters, std::istream& in,
                                      std::uint64_t start_offset = 0) {
  using State = typename Optimizer<Scalar, Flavour>::State;
  CheckpointInput input(in, start_offset);
  char magic[sizeof kRunMagic];
  input.read(magic, sizeof magic, "the magic bytes");
  if (std::memcmp(magic, kCheckpointMagic, sizeof magic) == 0)
    checkpoint_failure("this is an optimizer checkpoint (save_checkpoint), not a run checkpoint "
                       "(save_run); load it with load_checkpoint");
  if (std::memcmp(magic, kRunMagic, sizeof magic) != 0)
    checkpoint_failure("bad magic bytes: this is not an adamx run checkpoint");
  const std::string record = read_checked_block(input, {kRunCheckpointVersion}, "run record version", "run record");

  // The record, decoded. Counts are never used to allocate ahead: entries
  // are appended as they are read, so a corrupt count runs out of record.
  HeaderReader reader(record, static_cast<std::size_t>(start_offset) + kCheckpointPreamble);
  const std::uint8_t code = reader.u8("parameter type");
  if (code != scalar_code<Scalar>::value)
    checkpoint_failure("scalar type mismatch: the file holds " + describe_scalar(code) +
                       " parameters, this optimizer has " + describe_scalar(scalar_code<Scalar>::value) +
                       " parameters");
  std::vector<State> layout;
  for (std::uint32_t g = 0, groups = reader.u32("group count"); g < groups; ++g) {
    State group;
    group.name = reader.string("group name");
    for (std::uint32_t j = 0, n = reader.u32("tensor count"); j < n; ++j) {
      typename State::Tensor ts;
      ts.name = reader.string("tensor name");
      ts.rows = static_cast<Index>(reader.i64("rows"));
      ts.cols = static_cast<Index>(reader.i64("cols"));
      ts.row_major = reader.boolean("row_major");
      group.tensors.push_back(std::move(ts));
    }
    layout.push_back(std::move(group));
  }
  std::vector<std::string> schedule_names;
  std::vector<ScheduleState> schedule_states;
  for (std::uint32_t i = 0, n = reader.u32("schedule count"); i < n; ++i) {
    std::string name = reader.string("schedule name");
    if (std::find(schedule_names.begin(), schedule_names.end(), name) != schedule_names.end())
      reader.malformed("two schedules are named '" + name + "'");
    schedule_names.push_back(std::move(name));
    schedule_states.push_back(get_schedule_state(reader, 0));
  }
  std::vector<std::string> counter_names;
  std::vector<std::int64_t> counter_values;
  for (std::uint32_t i = 0, n = reader.u32("counter count"); i < n; ++i) {
    std::string name = reader.string("counter name");
    if (std::find(counter_names.begin(), counter_names.end(), name) != counter_names.end())
      reader.malformed("two counters are named '" + name + "'");
    counter_names.push_back(std::move(name));
    counter_values.push_back(reader.i64("counter value"));
  }
  if (!reader.at_end()) reader.malformed("unexpected bytes after the last counter");

  // The record against the call: every difference at once, before any
  // array is allocated (and then only in the optimizer's own sizes).
  std::vector<std::string> differences = optimizer.structure_differences(layout);
  std::vector<std::string> passed;
  for (const RunSchedule& s : schedules) passed.push_back(s.name());
  const std::vector<std::size_t> schedule_at = match_names(passed, schedule_names, "schedule", differences);
  passed.clear();
  for (const RunCounter& c : counters) passed.push_back(c.name());
  const std::vector<std::size_t> counter_at = match_names(passed, counter_names, "counter", differences);
  if (!differences.empty()) {
    std::string message = "the run checkpoint does not match the objects passed:";
    for (const std::string& difference : differences) message += "\n  - " + difference;
    checkpoint_failure(message);
  }

  RunContents<Scalar, Flavour> contents;
  for (std::size_t i = 0; i < schedules.size(); ++i)
    contents.schedules.push_back(std::move(schedule_states[schedule_at[i]]));
  for (std::size_t i = 0; i < counters.size(); ++i) contents.counters.push_back(counter_values[counter_at[i]]);
  for (const State& g : layout) {
    contents.params.emplace_back();
    for (const auto& ts : g.tensors) {
      contents.params.back().emplace_back(ts.size());
      read_array(input, contents.params.back().back().data(), ts.size(),
                 "parameter '" + g.name + "." + ts.name + "'");
    }
  }
  const std::uint32_t crc = input.crc();
  const std::uint32_t stored_crc = input.u32("the run checksum");
  if (kVerifyChecksums && stored_crc != crc)
    checkpoint_failure("run checksum mismatch (stored " + hex32(stored_crc) + ", computed " + hex32(crc) +
                       "): the file is corrupt");
  try {
    contents.optimizer = read_checkpoint(optimizer, in, input.offset());
  } catch (const CheckpointError& error) {
    std::string what = error.what();
    const std::string prefix = "adamx::load_checkpoint: ";
    if (what.compare(0, prefix.size(), prefix) == 0) what.erase(0, prefix.size());
    checkpoint_failure("the optimizer's checkpoint in the run: " + what);
  }
  return contents;
}

// Applies what read_run() returned. A schedule's restore() is the only step
// that can refuse (its own value checks); the schedules go first, and if
// one refuses, those already restored get their previous state back. The
// optimizer's state was validated by read_checkpoint, and parameters and
// counters are copies.
template <class Scalar, class Flavour>
void commit_run(RunContents<Scalar, Flavour>&& contents, Optimizer<Scalar, Flavour>& optimizer,
                const ParamViews<Scalar>& params, const std::vector<RunSchedule>& schedules,
                const std::vector<RunCounter>& counters) {
  std::vector<ScheduleState> previous;
  for (const RunSchedule& s : schedules) previous.push_back(s.state());
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    try {
      schedules[i].restore(contents.schedules[i]);
    } catch (const std::exception& error) {  // adamx's throw invalid_argument; a user's may throw anything
      for (std::size_t k = i; k-- > 0;) schedules[k].restore(previous[k]);
      checkpoint_failure("schedule '" + schedules[i].name() + "' refuses its saved state: " + error.what());
    }
  }
  optimizer.restore(contents.optimizer);
  for (std::size_t g = 0; g < params.size(); ++g)
    for (std::size_t j = 0; j < params[g].size(); ++j)
      if (params[g][j].size() > 0)
        std::memcpy(static_cast<void*>(params[g][j].data()), contents.params[g][j].data(),
                    static_cast<std::size_t>(params[g][j].size()) * sizeof(Scalar));
  for (std::size_t i = 0; i < counters.size(); ++i) counters[i].value() = contents.counters[i];
}

// load_checkpoint's messages start with its name; the run's name them load_run.
[[noreturn]] inline void rethrow_as_load_run(const CheckpointError& error, const std::string& suffix) {
  std::string what = error.what();
  const std::string prefix = "adamx::load_checkpoint: ";
  if (what.compare(0, prefix.size(), prefix) == 0) what.erase(0, prefix.size());
  throw CheckpointError("adamx::load_run: " + what + suffix);
}

// Checks the arguments of a save and encodes its record: everything that
// can be refused is refused here, before a byte (or a file) is written.
template <class Scalar, class Flavour>
std::string run_record_to_save(const Optimizer<Scalar, Flavour>& optimizer, const ParamViews<Scalar>& params,
                               const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters) {
  refuse_eval_mode(optimizer, "adamx::save_run");
  check_run_arguments(optimizer, params, schedules, counters, "adamx::save_run");
  std::string record = encode_run_record(optimizer, schedules, counters);
  if (record.size() > kMaxHeaderBytes)
    throw CheckpointError("adamx::save_run: the run record would be " + std::to_string(record.size()) +
                          " bytes, more than the format's " + std::to_string(kMaxHeaderBytes));
  return record;
}

template <class Scalar, class Flavour>
void save_run_to(const Optimizer<Scalar, Flavour>& optimizer, const ParamViews<Scalar>& params,
                 const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
                 std::ostream& out) {
  write_run(optimizer, params, run_record_to_save(optimizer, params, schedules, counters), out);
}

template <class Scalar, class Flavour>
void save_run_to(const Optimizer<Scalar, Flavour>& optimizer, const ParamViews<Scalar>& params,
                 const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
                 const std::filesystem::path& path) {
  const std::string record = run_record_to_save(optimizer, params, schedules, counters);
  save_file_atomically(path, "adamx::save_run",
                       [&](std::ostream& out) { write_run(optimizer, params, record, out); });
}

template <class Scalar, class Flavour>
void load_run_from(Optimizer<Scalar, Flavour>& optimizer, const ParamViews<Scalar>& params,
                   const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
                   std::istream& in) {
  refuse_eval_mode(optimizer, "adamx::load_run");
  check_run_arguments(optimizer, params, schedules, counters, "adamx::load_run");
  try {
    commit_run(read_run(optimizer, schedules, counters, in), optimizer, params, schedules, counters);
  } catch (const CheckpointError& error) {
    rethrow_as_load_run(error, "");
  }
}

template <class Scalar, class Flavour>
void load_run_from(Optimizer<Scalar, Flavour>& optimizer, const ParamViews<Scalar>& params,
                   const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
                   const std::filesystem::path& path) {
  refuse_eval_mode(optimizer, "adamx::load_run");
  check_run_arguments(optimizer, params, schedules, counters, "adamx::load_run");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    throw CheckpointError("adamx::load_run: cannot open '" + path.string() + "': " + std::strerror(error));
  }
  try {
    auto contents = read_run(optimizer, schedules, counters, in);
    if (in.peek() != std::char_traits<char>::eof())
      checkpoint_failure("unexpected bytes after the optimizer checkpoint's checksum");
    commit_run(std::move(contents), optimizer, params, schedules, counters);
  } catch (const CheckpointError& error) {
    rethrow_as_load_run(error, " (file '" + path.string() + "')");
  }
}

// The parameters' form for a braced list: {{W1, b1}, {W2}}. Scalar is
// deduced from the optimizer alone (the nested name is not deduced from).
template <class Scalar, class Flavour>
using ParamList = std::initializer_list<std::initializer_list<typename Optimizer<Scalar, Flavour>::Tensor>>;

template <class ParamGroups, class Scalar>
using enable_if_param_groups =
    std::enable_if_t<is_range_of_ranges<ParamGroups, TensorRef<Scalar>>::value>;

}  // namespace detail

/// Saves a training run to `path` (or a stream): the parameters `params`
/// (one list of tensors per group, in the optimizer's group and tensor
/// order, as step() takes them), the optimizer's whole state, the state of
/// every schedule in `schedules` and the value of every counter in
/// `counters`, each under its name. Nothing is changed. A file is written to
/// `path` + ".partial", flushed to disk and renamed over `path`, so a failed
/// or interrupted save leaves the previous file. Throws std::invalid_argument
/// (before anything is written) for parameters that do not fit the
/// optimizer or a name used twice, CheckpointError if writing fails.
template <class Scalar, class Flavour, class Target>
void save_run(const Optimizer<Scalar, Flavour>& optimizer, detail::ParamList<Scalar, Flavour> params,
              const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
              Target&& target) {
  detail::save_run_to(optimizer, detail::param_views<Scalar>(params), schedules, counters,
                      std::forward<Target>(target));
}
/// The same with the parameters in containers, e.g.
/// std::vector<std::vector<adamx::TensorRef<float>>>.
template <class Scalar, class Flavour, class ParamGroups, class Target,
          class = detail::enable_if_param_groups<ParamGroups, Scalar>>
void save_run(const Optimizer<Scalar, Flavour>& optimizer, const ParamGroups& params,
              const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
              Target&& target) {
  detail::save_run_to(optimizer, detail::param_views<Scalar>(params), schedules, counters,
                      std::forward<Target>(target));
}

/// Restores a run saved by save_run from `path` (or a stream, reading
/// exactly the run's bytes) into objects built the way the saved ones were:
/// an optimizer with the same groups and tensors (names, order, shapes),
/// parameters of those shapes (their values are overwritten), schedules
/// constructed with the same arguments, under the same names, and counters
/// under the same names (any order; missing or extra names are refused).
/// Everything is read and checked before anything changes: on any problem
/// with the file, CheckpointError names it and the optimizer, parameters,
/// schedules and counters are exactly as they were. Parameters that do not
/// fit the optimizer or a name used twice throw std::invalid_argument, before
/// the file is opened.
template <class Scalar, class Flavour, class Source>
void load_run(Optimizer<Scalar, Flavour>& optimizer, detail::ParamList<Scalar, Flavour> params,
              const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
              Source&& source) {
  detail::load_run_from(optimizer, detail::param_views<Scalar>(params), schedules, counters,
                        std::forward<Source>(source));
}
/// The same with the parameters in containers.
template <class Scalar, class Flavour, class ParamGroups, class Source,
          class = detail::enable_if_param_groups<ParamGroups, Scalar>>
void load_run(Optimizer<Scalar, Flavour>& optimizer, const ParamGroups& params,
              const std::vector<RunSchedule>& schedules, const std::vector<RunCounter>& counters,
              Source&& source) {
  detail::load_run_from(optimizer, detail::param_views<Scalar>(params), schedules, counters,
                        std::forward<Source>(source));
}

ADAMX_NAMESPACE_END  // namespace adamx
