#!/usr/bin/env python3
"""Ratios from a Google Benchmark JSON file written by adamx_bench_step.

    tools/bench_ratios.py RESULTS.json [--torch TORCH.json] [--debug DEBUG.json]
                          [--json SUMMARY.json]

TORCH.json is adamx_bench_torch's output (adamx::torch_optim against
torch::optim, built when libtorch is found); without it those ratios are null.
DEBUG.json is adamx_bench_step_debug's (the same benchmarks compiled -O0): its
runs are named "debug:<name>" here and divided by RESULTS.json's.
Prints a short table of ratios and, with --json, writes them as one flat JSON
object (numbers, or null where a benchmark is missing or was skipped).

Every time used is real_time (wall clock), for the single-threaded benchmarks
as well as the threaded ones, so all ratios have one basis. When the file holds
repetitions, each benchmark's median is used (its "median" aggregate, or the
median of its runs if only runs were reported).

Standard library only.
"""

import argparse
import json
import statistics
import sys

TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
P20, P22, P24 = 1 << 20, 1 << 22, 1 << 24


def load(path):
    """Returns (context, times, errors): median real_time in ns per run name,
    and the error message of every run name that was skipped."""
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
    times = {name: statistics.median(values) for name, values in runs.items()}
    times.update(medians)  # an explicit median aggregate wins
    for name in times:
        errors.pop(name, None)
    return data.get("context", {}), times, errors


class Ratios:
    def __init__(self, times, errors):
        self.times, self.errors = times, errors
        self.rows = []  # (label, size label, value or None, note)
        self.flat = {}

    def time(self, name):
        return self.times.get(name)

    def why_missing(self, *names):
        for name in names:
            if name in self.errors:
                return "skipped: " + self.errors[name]
        return "not in the results"

    def ratio(self, key, label, size, numerator, denominator):
        """numerator_time / denominator_time."""
        a, b = self.time(numerator), self.time(denominator)
        value = a / b if a is not None and b else None
        note = "" if value is not None else self.why_missing(numerator, denominator)
        self.rows.append((label, size, value, note))
        if key:
            self.flat[key] = value
        return value


def size_label(n):
    return "2^%d" % (n.bit_length() - 1)


def build(times, errors):
    r = Ratios(times, errors)

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
    for row in r.times:
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

    adam = r.time("step/Adam/float/%d" % P24)
    value = adam / P24 if adam is not None else None
    r.rows.append(("Adam ns per element (float, 1 thread)", size_label(P24), value,
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
    parser.add_argument("--json", metavar="FILE", help="also write the ratios as flat JSON")
    args = parser.parse_args()

    context, times, errors = load(args.results)
    if args.torch:
        _, torch_times, torch_errors = load(args.torch)
        times.update(torch_times)
        errors.update(torch_errors)
    if args.debug:
        debug_context, debug_times, debug_errors = load(args.debug)
        times.update({"debug:" + k: v for k, v in debug_times.items()})
        errors.update({"debug:" + k: v for k, v in debug_errors.items()})
    if not times and not errors:
        sys.exit("bench_ratios: no benchmark results in %s" % args.results)
    r = build(times, errors)

    print("ratios from %s" % args.results)
    print("  %s, %s, %s; %s CPUs, load average %s" % (
        context.get("compiler", "?"), context.get("build_type", "?"),
        context.get("cxx_flags", "?"), context.get("num_cpus", "?"),
        ", ".join("%.2f" % x for x in context.get("load_avg", [])) or "?"))
    if args.debug:
        print("  debug rows: %s, %s" % (debug_context.get("build_type", "?"),
                                        debug_context.get("cxx_flags", "?")))
    print("  times: real_time, median over repetitions where there are several")
    width = max(len(label) for label, _, _, _ in r.rows)
    for label, size, value, note in r.rows:
        shown = ("%.3f" % value) if value is not None else "n/a"
        print("  %-*s  %-11s %7s%s" % (width, label, size, shown, ("  (" + note + ")") if note else ""))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(r.flat, f, indent=2, sort_keys=True)
            f.write("\n")
        print("ratios written to %s" % args.json)


if __name__ == "__main__":
    main()
