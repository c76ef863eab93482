#!/usr/bin/env python3
"""Tables and plots from the per-step CSVs of examples/compare_optimizers.

    python3 tools/results_report.py RAW_DIR OUT_DIR

RAW_DIR holds fashion.csv, digits.csv, quadratic.csv, nonstationary.csv.
OUT_DIR receives summary.csv (every configuration: mean, std and n of the
final metrics over seeds), comparison.csv (AdamX against each baseline at the
base learning rate, paired by seed), tables.md (both as Markdown) and the PNG
plots, drawn by gnuplot (Debian's gnuplot-nox). Standard library only.

Final metrics:
  fashion, digits   test accuracy (%) and test loss after the last epoch
  quadratic         mean loss over the last 10 % of the steps
  nonstationary     the same, and the mean loss over the last 10 % of the
                    ×100-noise stretch (steps 1330-1400), "burst loss"
Verdict of AdamX against a baseline (same seeds, so differences are paired):
the mean paired difference d and its standard error se = sd(d)/sqrt(n);
"tie" when |d| <= 2 se, otherwise "win" or "loss" by the metric's direction.
"""

import csv
import math
import os
import subprocess
import sys
from collections import defaultdict

PROBLEMS = ["fashion", "digits", "quadratic", "nonstationary"]
BASE_LR = {"fashion": 1e-3, "digits": 1e-2, "quadratic": 1e-2, "nonstationary": 1e-2}
# The optimizers in the order the runner wrote them (its list is the
# library's, so one added there is reported here); filled by read_rows.
OPTIMIZERS = []
BURST = (1330, 1400)  # last 10 % of the ×100 stretch [700, 1400)
TITLES = {
    "fashion": "Fashion-MNIST MLP",
    "digits": "UCI digits, softmax regression",
    "quadratic": "noisy ill-conditioned quadratic",
    "nonstationary": "quadratic, noise x100 on steps 700-1400",
}


def read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["optimizer"] not in OPTIMIZERS:
            OPTIMIZERS.append(row["optimizer"])
    return rows


def mean_std(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def same_lr(a, b):
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def final_metrics(problem, rows):
    """{(optimizer, lr): {seed: {metric: value}}} for one problem."""
    runs = defaultdict(list)
    for r in rows:
        runs[(r["optimizer"], float(r["lr"]), int(r["seed"]))].append(r)
    out = defaultdict(dict)
    for (opt, lr, seed), rs in runs.items():
        rs.sort(key=lambda r: int(r["step"]))
        metrics = {}
        if problem in ("fashion", "digits"):
            last = [r for r in rs if r["test_loss"] != ""][-1]
            metrics["test accuracy %"] = float(last["test_accuracy"])
            metrics["test loss"] = float(last["test_loss"])
        else:
            steps = int(rs[-1]["step"])
            tail = [float(r["loss"]) for r in rs if int(r["step"]) > 0.9 * steps]
            metrics["final loss"] = sum(tail) / len(tail)
            if problem == "nonstationary":
                burst = [float(r["loss"]) for r in rs if BURST[0] < int(r["step"]) <= BURST[1]]
                metrics["burst loss"] = sum(burst) / len(burst)
        out[(opt, lr)][seed] = metrics
    return out


def higher_is_better(metric):
    return "accuracy" in metric


def fmt(x):
    return "%.4g" % x


def summarise(raw_dir, out_dir):
    summary, comparison, curves = [], [], {}
    for problem in PROBLEMS:
        rows = read_rows(os.path.join(raw_dir, problem + ".csv"))
        curves[problem] = rows
        finals = final_metrics(problem, rows)
        for (opt, lr), by_seed in sorted(finals.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            for metric in next(iter(by_seed.values())):
                mean, std = mean_std([m[metric] for m in by_seed.values()])
                summary.append(dict(problem=problem, optimizer=opt, lr=lr, metric=metric, mean=mean,
                                    std=std, n=len(by_seed)))
        base = BASE_LR[problem]
        adamx = finals[("AdamX", base)]
        for opt in OPTIMIZERS:
            if opt == "AdamX":
                continue
            other = finals[(opt, base)]
            for metric in next(iter(adamx.values())):
                diffs = [adamx[s][metric] - other[s][metric] for s in sorted(adamx)]
                d, sd = mean_std(diffs)
                se = sd / math.sqrt(len(diffs))
                if abs(d) <= 2 * se:
                    verdict = "tie"
                else:
                    better = d > 0 if higher_is_better(metric) else d < 0
                    verdict = "win" if better else "loss"
                comparison.append(dict(problem=problem, baseline=opt, metric=metric, adamx_minus_baseline=d,
                                       standard_error=se, n=len(diffs), verdict=verdict))
    with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["problem", "optimizer", "lr", "metric", "mean", "std", "n"])
        w.writeheader()
        for r in summary:
            w.writerow({k: (fmt(v) if isinstance(v, float) else v) for k, v in r.items()})
    with open(os.path.join(out_dir, "comparison.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["problem", "baseline", "metric", "adamx_minus_baseline", "standard_error", "n",
                               "verdict"])
        w.writeheader()
        for r in comparison:
            w.writerow({k: (fmt(v) if isinstance(v, float) else v) for k, v in r.items()})
    write_tables(out_dir, summary, comparison)
    return curves, summary


def write_tables(out_dir, summary, comparison):
    lines = []
    for problem in PROBLEMS:
        lines.append("### %s\n" % TITLES[problem])
        metrics = sorted({r["metric"] for r in summary if r["problem"] == problem}, reverse=True)
        lines.append("| optimizer | lr | " + " | ".join("%s (mean ± std)" % m for m in metrics) + " | seeds |")
        lines.append("|---|---|" + "---|" * len(metrics) + "---|")
        keys = []
        for r in summary:
            if r["problem"] == problem and (r["optimizer"], r["lr"]) not in keys:
                keys.append((r["optimizer"], r["lr"]))
        keys.sort(key=lambda k: (not same_lr(k[1], BASE_LR[problem]), k[1],
                                 OPTIMIZERS.index(k[0])))
        for opt, lr in keys:
            cells, n = [], 0
            for m in metrics:
                r = [x for x in summary if x["problem"] == problem and x["optimizer"] == opt and
                     x["lr"] == lr and x["metric"] == m][0]
                cells.append("%s ± %s" % (fmt(r["mean"]), fmt(r["std"])))
                n = r["n"]
            lines.append("| %s | %s | %s | %d |" % (opt, fmt(lr), " | ".join(cells), n))
        lines.append("")
    lines.append("### AdamX against each baseline (base lr, paired by seed)\n")
    lines.append("| problem | baseline | metric | AdamX − baseline | 2 × std. error | verdict |")
    lines.append("|---|---|---|---|---|---|")
    for r in comparison:
        lines.append("| %s | %s | %s | %s | %s | **%s** |" % (r["problem"], r["baseline"], r["metric"],
                                                             fmt(r["adamx_minus_baseline"]),
                                                             fmt(2 * r["standard_error"]), r["verdict"]))
    with open(os.path.join(out_dir, "tables.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---- plots ------------------------------------------------------------------

def band_data(rows, optimizer, lr, column, group=None):
    """step, mean, mean - std, mean + std of `column` over seeds."""
    by_step = defaultdict(list)
    for r in rows:
        if r["optimizer"] == optimizer and same_lr(float(r["lr"]), lr) and r[column] != "":
            by_step[int(r["step"])].append(float(r[column]))
    out = []
    for step in sorted(by_step):
        mean, std = mean_std(by_step[step])
        out.append((step, mean, mean - std, mean + std))
    return out


def gnuplot(script, out_dir):
    subprocess.run(["gnuplot"], input=script.encode(), cwd=out_dir, check=True)


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#000000", "#aec7e8"]


def plot_curves(curves, out_dir, data_dir):
    for problem, rows in curves.items():
        base = BASE_LR[problem]
        parts = []
        for i, opt in enumerate(OPTIMIZERS):
            data = band_data(rows, opt, base, "loss")
            name = os.path.join(data_dir, "loss_%s_%s.dat" % (problem, opt))
            with open(name, "w") as f:
                for step, mean, lo, hi in data:
                    f.write("%d %.6g %.6g %.6g\n" % (step, mean, max(lo, 1e-12), hi))
            parts.append("'%s' using 1:3:4 with filledcurves lc rgb '%s' fs transparent solid 0.15 notitle" %
                         (name, COLOURS[i]))
            parts.append("'%s' using 1:2 with lines lw 2 lc rgb '%s' title '%s'" % (name, COLOURS[i], opt))
        logy = "set logscale y\n" if problem in ("quadratic", "nonstationary", "digits") else ""
        ylabel = "training loss (minibatch, mean over logged interval)" if problem in ("fashion", "digits") \
            else "loss f(x)"
        gnuplot("set terminal pngcairo size 900,560 font 'sans,10'\nset output 'loss_%s.png'\n"
                "set title '%s: loss, mean over seeds, band = ±1 std (lr %g)'\nset xlabel 'step'\n"
                "set ylabel '%s'\n%sset key top right\nset grid\nplot %s\n" %
                (problem, TITLES[problem], base, ylabel, logy, ", ".join(parts)), out_dir)


def plot_lr_sweep(summary, out_dir, data_dir):
    for problem in PROBLEMS:
        metric = "test accuracy %" if problem in ("fashion", "digits") else "final loss"
        parts = []
        for i, opt in enumerate(["Adam", "AdamX"]):
            name = os.path.join(data_dir, "lr_%s_%s.dat" % (problem, opt))
            rs = sorted((r for r in summary if r["problem"] == problem and r["optimizer"] == opt and
                         r["metric"] == metric), key=lambda r: r["lr"])
            with open(name, "w") as f:
                for r in rs:
                    f.write("%.6g %.6g %.6g\n" % (r["lr"], r["mean"], r["std"]))
            parts.append("'%s' using 1:2:3 with yerrorlines lw 2 pt 7 lc rgb '%s' title '%s'" %
                         (name, COLOURS[i], opt))
        logy = "set logscale y\n" if metric == "final loss" else ""
        gnuplot("set terminal pngcairo size 700,480 font 'sans,10'\nset output 'lr_%s.png'\n"
                "set title '%s: %s vs learning rate (mean ± std over seeds)'\nset xlabel 'lr'\n"
                "set logscale x\n%sset ylabel '%s'\nset grid\nset key top left\nplot %s\n" %
                (problem, TITLES[problem], metric, logy, metric, ", ".join(parts)), out_dir)


def plot_gamma(curves, out_dir, data_dir):
    for problem, rows in curves.items():
        base = BASE_LR[problem]
        groups = ["gamma_group0"] if problem == "digits" else ["gamma_group0", "gamma_group1"]
        parts = []
        for i, column in enumerate(groups):
            name = os.path.join(data_dir, "gamma_%s_%s.dat" % (problem, column))
            with open(name, "w") as f:
                for step, mean, lo, hi in band_data(rows, "AdamX", base, column):
                    f.write("%d %.6g %.6g %.6g\n" % (step, mean, lo, hi))
            parts.append("'%s' using 1:3:4 with filledcurves lc rgb '%s' fs transparent solid 0.2 notitle" %
                         (name, COLOURS[i]))
            parts.append("'%s' using 1:2 with lines lw 2 lc rgb '%s' title 'group %d'" % (name, COLOURS[i], i))
        gnuplot("set terminal pngcairo size 900,420 font 'sans,10'\nset output 'gamma_%s.png'\n"
                "set title '%s: AdamX gamma per group (mean, band = ±1 std over seeds)'\n"
                "set xlabel 'step'\nset ylabel 'gamma'\nset grid\nplot %s, 1 with lines dt 2 lc rgb 'gray' notitle\n" %
                (problem, TITLES[problem], ", ".join(parts)), out_dir)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    raw_dir, out_dir = (os.path.abspath(p) for p in sys.argv[1:])
    os.makedirs(out_dir, exist_ok=True)
    data_dir = os.path.join(raw_dir, "plotdata")
    os.makedirs(data_dir, exist_ok=True)
    curves, summary = summarise(raw_dir, out_dir)
    plot_curves(curves, out_dir, data_dir)
    plot_lr_sweep(summary, out_dir, data_dir)
    plot_gamma(curves, out_dir, data_dir)
    print("results: tables in %s, plots in %s" % (os.path.join(out_dir, "tables.md"), out_dir))


if __name__ == "__main__":
    main()
