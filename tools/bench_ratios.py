#!/usr/bin/env python3
"""Ratios from a Google Benchmark JSON file written by adamx_bench_step.

    tools/bench_ratios.py RESULTS.json [--torch TORCH.json] [--debug DEBUG.json]
                          [--torch-python PY.json] [--json SUMMARY.json]
    tools/bench_ratios.py --check SUMMARY.json --keys KEY,KEY,...

TORCH.json is adamx_bench_torch's output (adamx::torch_optim against
torch::optim, built when libtorch is found); without it those ratios are null.
PY.json is bench/bench_torch_python.py's (torch.optim.Adam called from
Python, one thread, 2^24 floats), divided by adamx's Adam at that size.
DEBUG.json is adamx_bench_step_debug's (the same benchmarks compiled -O0): its
runs are named "debug:<name>" here and divided by RESULTS.json's.
Prints the machine (CPU model, selected instruction set, bandwidth), a table
of ratios and the run's A/A control, and with --json writes the ratios as one
flat JSON object: every ratio under its key (null where a benchmark is missing
or was skipped), the ratio of the fastest repetitions under <key>_min, and the
machine's description under cpu_model, instruction_set,
instruction_sets_supported and bandwidth_gbytes_per_s.

Every time used is real_time (wall clock), for the single-threaded benchmarks
as well as the threaded ones, so all ratios have one basis. With repetitions
(scripts/bench runs at least 5, randomly interleaved), a ratio is that of the
two benchmarks' medians; beside it are the ratio of their fastest repetitions
(the least disturbed by other work on a shared machine) and the spread of the
slower one's repetitions ((max - min) / median). The A/A rows time the same
work twice under two names: how far their ratio is from 1 is the smallest
difference the run can resolve.

--check reads a SUMMARY.json that --json wrote and fails, naming them,
unless every key listed holds a value (the suite's check that a run reports
every headline ratio).

Standard library only.
"""

import argparse
import json
import statistics
import sys

TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
P18, P20, P22, P24 = 1 << 18, 1 << 20, 1 << 22, 1 << 24
SETS = ("avx2", "avx512")  # the instruction sets besides the baseline (adamx/isa.hpp)


def load(path):
    """Returns (context, runs, errors): the real_time in ns of every
    repetition per run name (or the median aggregate when only aggregates
    were written), and the error message of every run name that was skipped."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    runs, medians, errors = {}, {}, {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        if name.endswith("/real_time"):
            name = name[: -len("/real_time")]
        if b.get("error_occurred"):
            errors[name] = b.get("error_message", "skipped")
            continue
        ns = b["real_time"] * TO_NS[b.get("time_unit", "ns")]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = ns
        else:
            runs.setdefault(name, []).append(ns)
    for name, ns in medians.items():
        runs.setdefault(name, [ns])  # the repetitions themselves win
    for name in runs:
        errors.pop(name, None)
    return data.get("context", {}), runs, errors


class Ratios:
    def __init__(self, runs, errors):
        self.runs, self.errors = runs, errors
        self.rows = []  # (label, size label, median ratio or None, min ratio, spread, note)
        self.flat = {}

    def time(self, name):
        values = self.runs.get(name)
        return statistics.median(values) if values else None

    def fastest(self, name):
        values = self.runs.get(name)
        return min(values) if values else None

    def spread(self, name):
        values = self.runs.get(name)
        return (max(values) - min(values)) / statistics.median(values) if values else None

    def why_missing(self, *names):
        for name in names:
            if name in self.errors:
                return "skipped: " + self.errors[name]
        return "not in the results"

    def ratio(self, key, label, size, numerator, denominator):
        """numerator_time / denominator_time (medians; fastest under key_min)."""
        a, b = self.time(numerator), self.time(denominator)
        value = a / b if a is not None and b else None
        fast = None
        spread = None
        if value is not None:
            fast = self.fastest(numerator) / self.fastest(denominator)
            spread = max(self.spread(numerator), self.spread(denominator))
        note = "" if value is not None else self.why_missing(numerator, denominator)
        self.rows.append((label, size, value, fast, spread, note))
        if key:
            self.flat[key] = value
            self.flat[key + "_min"] = fast
        return value


def size_label(n):
    return "2^%d" % (n.bit_length() - 1)


def key_size(n):
    return "2p%d" % (n.bit_length() - 1)


def build(runs, errors):
    r = Ratios(runs, errors)

    # AdamX against Adam, float, at the sizes that do not fit in cache.
    adamx_over_adam = {}
    for n in (P20, P22, P24):
        adamx_over_adam[n] = r.ratio("adamx_over_adam_" + size_label(n).replace("^", "p"),
                                     "AdamX / Adam, time (float)", size_label(n),
                                     "step/AdamX/float/%d" % n, "step/Adam/float/%d" % n)
    # adamx_over_adam is the 2^20 value; the maximum over 2^20..2^24 is kept beside it.
    r.flat["adamx_over_adam"] = adamx_over_adam[P20]
    known = [v for v in adamx_over_adam.values() if v is not None]
    r.flat["adamx_over_adam_max_ge_2p20"] = max(known) if known else None

    # Fraction of the copy kernel's bandwidth: roofline time / step time (<= 1, higher is better).
    r.ratio("adam_over_roofline", "Adam bandwidth / roofline (roofline time / Adam time)",
            size_label(P24), "roofline/float/%d" % P24, "step/Adam/float/%d" % P24)
    r.ratio("adamx_over_roofline", "AdamX bandwidth / roofline (roofline time / AdamX time)",
            size_label(P24), "roofline/float/%d" % P24, "step/AdamX/float/%d" % P24)

    # Adam's time over the roofline's: how far the step is from the memory
    # bound in cache (2^18, 2^20: the arithmetic sets the pace) and out of it.
    for n in (P18, P20, P24):
        r.ratio("adam_over_roofline_" + key_size(n), "Adam / roofline, time (float)", size_label(n),
                "step/Adam/float/%d" % n, "roofline/float/%d" % n)

    # What dispatch buys: each instruction set forced, against the baseline
    # (the compiler flags' own), same binary, same run.
    for name, kind, sizes in (("Adam", "float", (P18, P20, P24)), ("AdamX", "half", (P20,)),
                              ("AdamX", "bfloat16", (P20,))):
        for n in sizes:
            for isa in SETS:
                r.ratio("%s_over_baseline_%s_%s_%s" % (isa, name.lower(), kind, key_size(n)),
                        "%s / baseline instruction set, time (%s %s)" % (isa, name, kind), size_label(n),
                        "isa/%s/%s/%s/%d" % (isa, name, kind, n), "isa/baseline/%s/%s/%d" % (name, kind, n))

    for n in (P20, P24):
        r.ratio("naive_over_fused_" + size_label(n).replace("^", "p"),
                "naive Eigen Adam / fused Adam, time (float)", size_label(n),
                "naive_eigen_adam/float/%d" % n, "step/Adam/float/%d" % n)

    for n, key in ((P20, "multitensor_over_single"), (P24, "multitensor_over_single_2p24")):
        r.ratio(key, "1024 tensors / 1 tensor, time (AdamX float)", size_label(n) + " total",
                "multitensor/AdamX/float/tensors:1024/%d" % n,
                "multitensor/AdamX/float/tensors:1/%d" % n)
    for n, key in ((P20, "multitensor_aa"), (P24, "multitensor_aa_2p24")):
        r.ratio(key, "1 tensor, run again / run first, time (A/A: noise)", size_label(n) + " total",
                "multitensor/AdamX/float/tensors:1:again/%d" % n,
                "multitensor/AdamX/float/tensors:1/%d" % n)

    for n, key in ((P22, "two_threads_over_one_2p22"), (P24, "two_threads_over_one")):
        r.ratio(key, "2 threads / 1 thread, time (AdamX float)", size_label(n),
                "threads/AdamX/float/threads:2/%d" % n, "threads/AdamX/float/threads:1/%d" % n)

    for policy in ("skip", "error"):
        for n in (P20, P24):
            r.ratio("%s_over_propagate_%s" % (policy, size_label(n).replace("^", "p")),
                    "%s / propagate, time (AdamX float, finite g)" % policy, size_label(n),
                    "nonfinite/AdamX/float/%s/%d" % (policy, n),
                    "nonfinite/AdamX/float/propagate/%d" % n)

    for n in (P20, P24):
        r.ratio("bf16_over_float_" + size_label(n).replace("^", "p"),
                "bfloat16 / float parameters, time (AdamX)", size_label(n),
                "step/AdamX/bfloat16/%d" % n, "step/AdamX/float/%d" % n)
    for n in (P20, P24):
        r.ratio("half_over_float_" + size_label(n).replace("^", "p"),
                "half / float parameters, time (AdamX)", size_label(n),
                "step/AdamX/half/%d" % n, "step/AdamX/float/%d" % n)

    # Every optimizer the run measured besides Adam's own family (bench_step
    # registers one step/<Name>/float row per optimizer of the library).
    baselines = []
    for row in r.runs:
        parts = row.split("/")
        if (len(parts) == 4 and parts[0] == "step" and parts[2] == "float" and
                parts[1] not in ("Adam", "AdamW", "AdamX") and parts[1] not in baselines):
            baselines.append(parts[1])
    for name in baselines:
        for n in (P20, P24):
            r.ratio("%s_over_adam_%s" % (name.lower(), size_label(n).replace("^", "p")),
                    "%s / Adam, time (float)" % name, size_label(n),
                    "step/%s/float/%d" % (name, n), "step/Adam/float/%d" % n)

    # Muon's matrix step against AdamW on the same layers, and AdamW against
    # itself later in the run (A/A: the noise).
    for model in ("mlp", "1024x1024"):
        r.ratio("muon_over_adamw_" + model, "Muon / AdamW, time per step (float)", model,
                "layers/Muon/float/" + model, "layers/AdamW/float/" + model)
        r.ratio("layers_aa_" + model, "AdamW, run again / run first (A/A: noise)", model,
                "layers/AdamW/float/%s:again" % model, "layers/AdamW/float/" + model)

    # A/A: the same work twice in one run. The largest distance from 1 is the
    # smallest difference between two rows that this run can tell from noise.
    aa = []
    for n in (P18, P20, P24):
        aa.append(r.ratio("aa_adam_" + key_size(n), "Adam, run again / run first (A/A: noise)", size_label(n),
                          "again/Adam/float/%d" % n, "step/Adam/float/%d" % n))
    aa += [r.flat.get(k) for k in ("multitensor_aa", "multitensor_aa_2p24", "layers_aa_mlp",
                                   "layers_aa_1024x1024")]
    known = [abs(v - 1.0) for v in aa if v is not None]
    r.flat["aa_max_deviation"] = max(known) if known else None

    adam = r.time("step/Adam/float/%d" % P24)
    value = adam / P24 if adam is not None else None
    r.rows.append(("Adam ns per element (float, 1 thread)", size_label(P24), value, None, None,
                   "" if value is not None else r.why_missing("step/Adam/float/%d" % P24)))
    r.flat["adam_ns_per_element_2p24"] = value

    # libtorch's own optimizers over adamx's adapters, same tensors, same binary:
    # > 1 means adamx is faster (time ratio, like "3x faster").
    for shape in ("single", "model"):
        for threads in (1, 2):
            suffix = "" if threads == 1 else "_2threads"
            for name in ("Adam", "AdamW"):
                key = "torch_%s_over_adamx_%s%s" % (name.lower(), shape, suffix)
                r.ratio(key, "torch::optim::%s / adamx %s, time (%s thread%s)" % (
                            name, name, threads, "" if threads == 1 else "s"),
                        "2^24" if shape == "single" else "200 x 2^22",
                        "torch/libtorch_%s/%s/threads:%d" % (name, shape, threads),
                        "torch/adamx_%s/%s/threads:%d" % (name, shape, threads))

    # PyTorch's optimizer as a Python user calls it, against adamx's Adam on
    # the same size (> 1: adamx is faster). Not interleaved with the rest:
    # the A/A rows bound the noise of the adamx side only.
    r.ratio("python_torch_adam_over_adamx_2p24", "torch.optim.Adam (Python) / adamx Adam, time (1 thread)",
            size_label(P24), "torch_python/Adam/single/threads:1", "step/Adam/float/%d" % P24)

    # The unoptimised build (-O0) against this one, same benchmark and size.
    for name in ("Adam", "AdamX"):
        for n in (P20, P24):
            r.ratio("debug_over_release_%s_%s" % (name.lower(), size_label(n).replace("^", "p")),
                    "debug (-O0) / release, time (%s float)" % name, size_label(n),
                    "debug:step/%s/float/%d" % (name, n), "step/%s/float/%d" % (name, n))

    roofline = r.time("roofline/float/%d" % P24)
    r.flat["roofline_gbytes_per_s_2p24"] = 28.0 * P24 / roofline if roofline else None
    return r


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="JSON written by adamx_bench_step --benchmark_out=FILE")
    parser.add_argument("--torch", metavar="FILE", help="adamx_bench_torch's JSON, merged in")
    parser.add_argument("--debug", metavar="FILE",
                        help="adamx_bench_step_debug's JSON, merged in as debug:<name>")
    parser.add_argument("--torch-python", metavar="FILE", help="bench/bench_torch_python.py's JSON, merged in")
    parser.add_argument("--json", metavar="FILE", help="also write the ratios as flat JSON")
    parser.add_argument("--check", action="store_true",
                        help="RESULTS is a file --json wrote: require a value for every --keys entry")
    parser.add_argument("--keys", default="", help="comma-separated keys for --check")
    args = parser.parse_args()

    if args.check:
        with open(args.results, encoding="utf-8") as f:
            summary = json.load(f)
        wanted = [k for k in args.keys.split(",") if k]
        if not wanted:
            sys.exit("bench_ratios: --check needs --keys")
        missing = [k for k in wanted if summary.get(k) is None]
        if missing:
            sys.exit("bench_ratios: %s has no value for %s" % (args.results, ", ".join(missing)))
        for k in wanted:
            print("%s = %s" % (k, summary[k]))
        return

    context, runs, errors = load(args.results)
    if args.torch:
        _, torch_runs, torch_errors = load(args.torch)
        runs.update(torch_runs)
        errors.update(torch_errors)
    if args.torch_python:
        _, python_runs, python_errors = load(args.torch_python)
        runs.update(python_runs)
        errors.update(python_errors)
    if args.debug:
        debug_context, debug_runs, debug_errors = load(args.debug)
        runs.update({"debug:" + k: v for k, v in debug_runs.items()})
        errors.update({"debug:" + k: v for k, v in debug_errors.items()})
    if not runs and not errors:
        sys.exit("bench_ratios: no benchmark results in %s" % args.results)
    r = build(runs, errors)
    bandwidth = context.get("bandwidth_gbytes_per_s")
    r.flat["cpu_model"] = context.get("cpu_model")
    r.flat["instruction_set"] = context.get("instruction_set")
    r.flat["instruction_sets_supported"] = context.get("instruction_sets_supported")
    r.flat["bandwidth_gbytes_per_s"] = float(bandwidth) if bandwidth else None

    print("ratios from %s" % args.results)
    print("  CPU %s (%s CPUs); instruction set %s of those supported (%s), baseline %s" % (
        context.get("cpu_model", "?"), context.get("num_cpus", "?"), context.get("instruction_set", "?"),
        context.get("instruction_sets_supported", "?"), context.get("baseline", "?")))
    print("  bandwidth %s GB/s (roofline loop at 2^24, before the run); load average %s" % (
        bandwidth or "?", ", ".join("%.2f" % x for x in context.get("load_avg", [])) or "?"))
    print("  %s, %s, %s" % (context.get("compiler", "?"), context.get("build_type", "?"),
                            context.get("cxx_flags", "?")))
    if args.debug:
        print("  debug rows: %s, %s" % (debug_context.get("build_type", "?"),
                                        debug_context.get("cxx_flags", "?")))
    reps = sorted({len(v) for v in runs.values()})
    print("  times: real_time; %s repetitions per benchmark; ratio of medians, of the fastest "
          "repetitions, and the larger spread (max - min) / median of the two rows" %
          "/".join(str(k) for k in reps))
    width = max(len(row[0]) for row in r.rows)
    print("  %-*s  %-11s %7s %7s %7s" % (width, "", "N", "median", "fastest", "spread"))
    for label, size, value, fast, spread, note in r.rows:
        shown = ("%.3f" % value) if value is not None else "n/a"
        extra = ""
        if fast is not None:
            extra = " %7.3f %6.1f%%" % (fast, 100.0 * spread)
        print("  %-*s  %-11s %7s%s%s" % (width, label, size, shown, extra, ("  (" + note + ")") if note else ""))
    deviation = r.flat.get("aa_max_deviation")
    if deviation is not None:
        print("  A/A control: the same work measured twice differs by up to %.1f %% in this run; "
              "a smaller difference between two rows is not resolved" % (100.0 * deviation))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(r.flat, f, indent=2, sort_keys=True)
            f.write("\n")
        print("ratios written to %s" % args.json)


if __name__ == "__main__":
    main()
