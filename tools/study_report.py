#!/usr/bin/python3
"""The optimizer study's statistics, tables and plots (scripts/results).

    /usr/bin/python3 tools/study_report.py RAW_DIR OUT_DIR [--results-md FILE]

RAW_DIR holds, for each task T the runners wrote (examples/study):
T.runs.csv, T.curves.csv and T.meta.csv. OUT_DIR receives

  T_seeds.csv     one row per evaluation run: the tuned lr, the final metric,
                  the extras, and the per-seed convergence and step-size
                  measures below (committed: the study's raw evidence)
  T_tuning.csv    one row per optimizer and grid lr: mean validation metric
                  over the tuning seeds (the lr-sensitivity data)
  verdicts.csv    AdamX against every other optimizer, per task and measure
  tables.md       every table, in Markdown
  *.png           learning curves with 95 % bands, lr sensitivity, γ traces,
                  effective step sizes

and, with --results-md, the verdict table between the lines
"<!-- verdicts:begin -->" and "<!-- verdicts:end -->" of that file.

Statistics. Seeds are paired (every optimizer sees the same initialisation,
batches and noise for a seed), so AdamX is compared with optimizer B through
the per-seed differences d = AdamX − B. Reported: mean d with its 95 %
Student-t confidence interval, the relative effect mean(d) / |mean(B)|, the
two-sided paired t-test's p-value, and the two one-sided tests (TOST) of
equivalence within the task's margin ±δ (δ relative to |mean(B)| where the
task says so). Within one table (one task, one measure: the family of
comparisons with the other optimizers) every p-value is Holm-corrected. The
verdict:
  tie           equivalence shown: Holm-corrected TOST p < 0.05
  win / loss    otherwise, a difference shown: Holm-corrected p < 0.05, in
                AdamX's favour / against it
  inconclusive  neither: the seeds cannot tell
Measures:
  final         the task's metric at the end of training, on test data
  auc           the mean of the metric over the logged points of training
                (area under the learning curve per step: faster convergence)
  steps         steps to reach Adam's mean final metric (runs that never
                reach it count as one step past the end)
  step spread   per layer, the standard deviation over time of log10 of the
                effective step size (RMS parameter change per unit lr),
                after the first 10 % of training, averaged over layers
                (steadier adaptive learning rates: smaller)
"""

import argparse
import csv
import math
import os
import sys
from collections import defaultdict

import numpy as np
from scipy import stats

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REFERENCE = "AdamX"
ALPHA = 0.05
# The optimizers drawn in the learning-curve plots' first panel: AdamX, the
# baseline it modifies, the mechanism baseline, and the one-γ ablation.
FOCUS = ["Adam", "Adam(beta2=0.99)", "AdamX", "AdamX(one group)"]


# ------------------------------------------------------------------ input --

def read_meta(path):
    with open(path, newline="") as f:
        rows = {r["key"]: r["value"] for r in csv.DictReader(f)}
    return {
        "name": rows["name"],
        "description": rows["description"],
        "metric": rows["metric"],
        "higher": rows["higher_is_better"] == "1",
        "margin": float(rows["margin"]),
        "relative": rows["margin_relative"] == "1",
        "divergence": float(rows["divergence_value"]),
        "base_lr": float(rows["base_lr"]),
        "curve": rows.get("curve", rows["metric"]),
    }


def read_runs(path):
    """{(phase, optimizer, lr, seed): {key: value}}, and the optimizers in order."""
    runs = defaultdict(dict)
    order = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["phase"], r["optimizer"], float(r["lr"]), int(r["seed"]))
            runs[key][r["key"]] = float(r["value"])
            if r["optimizer"] not in order:
                order.append(r["optimizer"])
    return runs, order


def read_curves(path):
    """{(optimizer, seed): {key: (steps array, values array)}} for evaluation runs."""
    raw = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            raw[(r["optimizer"], int(r["seed"]))][r["key"]].append((int(r["step"]), float(r["value"])))
    out = {}
    for run, keys in raw.items():
        out[run] = {k: (np.array([s for s, _ in v]), np.array([x for _, x in v])) for k, v in keys.items()}
    return out


# ------------------------------------------------------------- statistics --

def holm(pvalues):
    """Holm's step-down adjustment (Holm 1979) of a family of p-values."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def paired(a, b, margin, relative, higher):
    """AdamX's values a against a baseline's b (same seeds, same order)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    mean = float(d.mean())
    base = float(np.mean(b))
    delta = margin * abs(base) if relative else margin
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    se = sd / math.sqrt(n) if n > 1 else 0.0
    tq = stats.t.ppf(0.975, n - 1) if n > 1 else float("inf")
    if se > 0:
        t = mean / se
        p = 2 * stats.t.sf(abs(t), n - 1)
        p_lower = stats.t.sf((mean + delta) / se, n - 1)   # H0: d <= -δ
        p_upper = stats.t.cdf((mean - delta) / se, n - 1)  # H0: d >= +δ
        p_tost = max(p_lower, p_upper)
    else:  # every seed gave the same difference
        p = 0.0 if mean != 0 else 1.0
        p_tost = 0.0 if abs(mean) < delta else 1.0
    better = mean > 0 if higher else mean < 0
    return {
        "n": n, "mean_adamx": float(np.mean(a)), "mean_base": base, "diff": mean,
        "lo": mean - tq * se, "hi": mean + tq * se, "rel": mean / abs(base) if base != 0 else float("nan"),
        "delta": delta, "p": p, "p_tost": p_tost, "adamx_better": better,
    }


def verdict(c):
    if c["p_tost_holm"] < ALPHA:
        return "tie"
    if c["p_holm"] < ALPHA:
        return "win" if c["adamx_better"] else "loss"
    return "inconclusive"


# ----------------------------------------------------- per-seed measures --

def auc(curve):
    steps, values = curve
    return float(np.mean(values)) if len(values) else float("nan")


def steps_to_target(curve, target, higher, last_step):
    steps, values = curve
    reached = values >= target if higher else values <= target
    return float(steps[np.argmax(reached)]) if reached.any() else float(last_step + 1)


def step_spread(curves_of_run):
    spreads = []
    for key, (steps, values) in curves_of_run.items():
        if not key.startswith("step/"):
            continue
        keep = values[int(len(values) * 0.1):]
        keep = keep[keep > 0]
        if len(keep) >= 3:
            spreads.append(float(np.std(np.log10(keep), ddof=1)))
    return float(np.mean(spreads)) if spreads else float("nan")


# ------------------------------------------------------------------ tasks --

class TaskReport:
    def __init__(self, raw, name):
        self.meta = read_meta(os.path.join(raw, name + ".meta.csv"))
        self.runs, self.order = read_runs(os.path.join(raw, name + ".runs.csv"))
        self.curves = read_curves(os.path.join(raw, name + ".curves.csv"))
        self.name = name
        higher = self.meta["higher"]
        # Tuning: mean validation metric per optimizer and lr.
        self.tuning = defaultdict(dict)  # optimizer -> lr -> (mean, n, diverged)
        grouped = defaultdict(list)
        for (phase, opt, lr, seed), v in self.runs.items():
            if phase == "tune":
                grouped[(opt, lr)].append(v)
        for (opt, lr), vs in grouped.items():
            self.tuning[opt][lr] = (float(np.mean([v["metric"] for v in vs])), len(vs),
                                    int(sum(v["diverged"] for v in vs)))
        # Evaluation: per optimizer, its lr and per-seed values.
        self.eval = {}
        for (phase, opt, lr, seed), v in self.runs.items():
            if phase == "eval":
                self.eval.setdefault(opt, {"lr": lr, "seeds": {}})["seeds"][seed] = dict(v)
        self.optimizers = [o for o in self.order if o in self.eval]
        self.seeds = sorted(self.eval[self.optimizers[0]]["seeds"])
        for opt in self.optimizers:
            if sorted(self.eval[opt]["seeds"]) != self.seeds:
                sys.exit(f"study_report: {name}: {opt} was evaluated on other seeds than {self.optimizers[0]}")
        # Per-seed convergence and step-size measures.
        self.last_step = max((int(c["metric"][0][-1]) for c in self.curves.values() if "metric" in c), default=0)
        adam = self.eval.get("Adam")
        self.target = float(np.mean([adam["seeds"][s]["metric"] for s in self.seeds])) if adam else None
        for opt in self.optimizers:
            for seed, v in self.eval[opt]["seeds"].items():
                c = self.curves.get((opt, seed), {})
                if "metric" in c and not v["diverged"]:
                    v["auc"] = auc(c["metric"])
                    v["steps"] = steps_to_target(c["metric"], self.target, higher, self.last_step)
                else:  # a diverged run never reaches the target; its curve is the divergence value
                    v["auc"] = self.meta["divergence"]
                    v["steps"] = float(self.last_step + 1)
                v["step_spread"] = step_spread(c)
        self.extras = [k for k in next(iter(self.eval[self.optimizers[0]]["seeds"].values()))
                       if k not in ("metric", "diverged", "auc", "steps", "step_spread")]

    def values(self, opt, key):
        return [self.eval[opt]["seeds"][s][key] for s in self.seeds]

    def comparisons(self, key, higher, margin, relative):
        """AdamX against every other optimizer on one measure (one Holm family)."""
        if REFERENCE not in self.eval:
            return []
        a = self.values(REFERENCE, key)
        out = []
        for opt in self.optimizers:
            if opt == REFERENCE:
                continue
            b = self.values(opt, key)
            if any(math.isnan(x) for x in a + b):
                continue
            c = paired(a, b, margin, relative, higher)
            c["baseline"] = opt
            out.append(c)
        if out:
            for c, ph, pt in zip(out, holm([c["p"] for c in out]), holm([c["p_tost"] for c in out])):
                c["p_holm"], c["p_tost_holm"] = ph, pt
                c["verdict"] = verdict(c)
        return out

    def all_comparisons(self):
        m = self.meta
        return {
            "final": self.comparisons("metric", m["higher"], m["margin"], m["relative"]),
            "auc": self.comparisons("auc", m["higher"], m["margin"], m["relative"]),
            # Steps: a tie within 10 % of the steps Adam needs.
            "steps": self.comparisons("steps", False, 0.10, True),
            # Step spread: a tie within 0.05 decades (12 % in step size).
            "step spread": self.comparisons("step_spread", False, 0.05, False),
        }


# ----------------------------------------------------------------- output --

def fmt(x, digits=4):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def mean_ci(values):
    v = np.asarray(values, float)
    n = len(v)
    if n < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))


def write_seeds(t, out):
    path = os.path.join(out, f"{t.name}_seeds.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["task", "optimizer", "lr", "seed", "metric", "diverged"] + t.extras +
                   ["auc", "steps_to_target", "step_spread"])
        for opt in t.optimizers:
            for s in t.seeds:
                v = t.eval[opt]["seeds"][s]
                w.writerow([t.name, opt, fmt(t.eval[opt]["lr"], 6), s, fmt(v["metric"], 8), int(v["diverged"])] +
                           [fmt(v[k], 8) for k in t.extras] +
                           [fmt(v["auc"], 8), fmt(v["steps"], 8), fmt(v["step_spread"], 6)])


def write_tuning(t, out):
    path = os.path.join(out, f"{t.name}_tuning.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["task", "optimizer", "lr", "mean_validation_metric", "seeds", "diverged", "chosen"])
        for opt in t.optimizers:
            for lr in sorted(t.tuning[opt]):
                mean, n, div = t.tuning[opt][lr]
                w.writerow([t.name, opt, fmt(lr, 6), fmt(mean, 8), n, div,
                            int(abs(lr - t.eval[opt]["lr"]) <= 1e-12 * lr)])


def edge_note(t, opt):
    lrs = sorted(t.tuning[opt])
    chosen = t.eval[opt]["lr"]
    if abs(chosen - lrs[0]) <= 1e-12 * chosen or abs(chosen - lrs[-1]) <= 1e-12 * chosen:
        return " (edge)"
    return ""


def task_tables(t, comps):
    m = t.meta
    lines = [f"### {t.name}", "", f"{m['description']}. Metric: {m['metric']} "
             f"({'higher' if m['higher'] else 'lower'} is better); equivalence margin "
             f"±{fmt(m['margin'])}{' relative' if m['relative'] else ''}; "
             f"{len(t.seeds)} evaluation seeds.", ""]
    extra_cols = "".join(f" {k} |" for k in t.extras)
    lines.append(f"| optimizer | tuned lr | {m['metric']} (mean ± 95 % CI) |{extra_cols} diverged | "
                 "AUC | steps to Adam's final (median) | step spread |")
    lines.append("|---|---|---|" + "---|" * len(t.extras) + "---|---|---|---|")
    for opt in t.optimizers:
        mean, ci = mean_ci(t.values(opt, "metric"))
        ex = "".join(" " + fmt(mean_ci(t.values(opt, k))[0]) + " |" for k in t.extras)
        div = sum(int(v) for v in t.values(opt, "diverged"))
        a_mean, _ = mean_ci(t.values(opt, "auc"))
        steps = np.median(t.values(opt, "steps"))
        reached = sum(1 for s in t.values(opt, "steps") if s <= t.last_step)
        spread, _ = mean_ci(t.values(opt, "step_spread")) if not any(
            math.isnan(x) for x in t.values(opt, "step_spread")) else (float("nan"), 0)
        name = f"**{opt}**" if opt == REFERENCE else opt
        lines.append(f"| {name} | {fmt(t.eval[opt]['lr'])}{edge_note(t, opt)} | {fmt(mean)} ± {fmt(ci, 2)} |{ex} "
                     f"{div}/{len(t.seeds)} | {fmt(a_mean)} | {fmt(steps)} ({reached}/{len(t.seeds)} reach) | "
                     f"{fmt(spread, 3)} |")
    lines.append("")
    for measure, cs in comps.items():
        if not cs:
            continue
        lines.append(f"AdamX − baseline, {measure} (paired by seed; Holm-corrected over the {len(cs)} baselines):")
        lines.append("")
        lines.append("| baseline | AdamX | baseline | AdamX − baseline [95 % CI] | relative | margin ± | p (Holm) | "
                     "TOST p (Holm) | verdict |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for c in cs:
            lines.append(f"| {c['baseline']} | {fmt(c['mean_adamx'])} | {fmt(c['mean_base'])} | "
                         f"{fmt(c['diff'], 3)} [{fmt(c['lo'], 3)}, {fmt(c['hi'], 3)}] | "
                         f"{percent(c['rel'])} | {fmt(c['delta'], 2)} | {fmt(c['p_holm'], 2)} | "
                         f"{fmt(c['p_tost_holm'], 2)} | **{c['verdict']}** |")
        lines.append("")
    return lines


def percent(relative):
    """A relative effect as a signed percentage; "n/a" when the baseline's mean is 0 (no ratio exists)."""
    return "n/a" if math.isnan(relative) else f"{100 * relative:+.1f} %"


def verdict_matrix(reports, all_comps):
    """Task × baseline: the verdict on the final metric and the effect size."""
    baselines = []
    for t in reports:
        for o in t.optimizers:
            if o != REFERENCE and o not in baselines:
                baselines.append(o)
    lines = ["| task | " + " | ".join(baselines) + " |", "|---|" + "---|" * len(baselines)]
    for t in reports:
        by = {c["baseline"]: c for c in all_comps[t.name]["final"]}
        cells = []
        for b in baselines:
            c = by.get(b)
            cells.append("—" if c is None else f"{c['verdict']} {percent(c['rel'])}")
        lines.append(f"| {t.name} | " + " | ".join(cells) + " |")
    return lines


def write_verdicts_csv(reports, all_comps, out):
    with open(os.path.join(out, "verdicts.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["task", "measure", "baseline", "n", "mean_adamx", "mean_baseline", "diff", "ci_low", "ci_high",
                    "relative", "margin", "p", "p_holm", "p_tost", "p_tost_holm", "verdict"])
        for t in reports:
            for measure, cs in all_comps[t.name].items():
                for c in cs:
                    w.writerow([t.name, measure, c["baseline"], c["n"], fmt(c["mean_adamx"], 8),
                                fmt(c["mean_base"], 8), fmt(c["diff"], 6), fmt(c["lo"], 6), fmt(c["hi"], 6),
                                fmt(c["rel"], 6), fmt(c["delta"], 6), fmt(c["p"], 4), fmt(c["p_holm"], 4),
                                fmt(c["p_tost"], 4), fmt(c["p_tost_holm"], 4), c["verdict"]])


# ------------------------------------------------------------------ plots --

def style(optimizer, optimizers):
    """One colour and line style per optimizer, the same in every plot."""
    i = optimizers.index(optimizer) if optimizer in optimizers else 0
    return {"color": plt.get_cmap("tab20")(i % 20), "ls": "-" if i < 10 else "--",
            "lw": 2.4 if optimizer == REFERENCE else 1.1}


def band(ax, curves, key, label, **kw):
    series = [c[key] for c in curves if key in c]
    if not series:
        return
    n = min(len(s[0]) for s in series)
    steps = series[0][0][:n]
    values = np.array([s[1][:n] for s in series])
    mean = values.mean(axis=0)
    ax.plot(steps, mean, label=label, **kw)
    if len(series) > 1:
        half = stats.t.ppf(0.975, len(series) - 1) * values.std(axis=0, ddof=1) / math.sqrt(len(series))
        ax.fill_between(steps, mean - half, mean + half, alpha=0.15, color=kw.get("color"), lw=0)


def layer_style(optimizer, key, optimizers, keys):
    # Colour by optimizer, line style by layer.
    styles = ["-", "--", ":", "-."]
    return {"color": plt.get_cmap("tab10")(optimizers.index(optimizer) % 10),
            "lw": 2.2 if optimizer == REFERENCE else 1.0, "ls": styles[keys.index(key) % len(styles)]}


def plot_task(t, out):
    m = t.meta
    curves_of = {o: [t.curves[(o, s)] for s in t.seeds if (o, s) in t.curves] for o in t.optimizers}
    # Learning curves, two panels: AdamX with Adam, the mechanism baseline and
    # the one-γ ablation; AdamX with every other baseline.
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, chosen in ((axes[0], [o for o in FOCUS if o in curves_of]),
                       (axes[1], [o for o in t.optimizers if o not in FOCUS or o == REFERENCE])):
        for o in chosen:
            band(ax, curves_of[o], "metric", o, **style(o, t.optimizers))
        ax.set_xlabel("step")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(m["curve"])
    if not m["higher"] and m["divergence"] > 0:
        axes[0].set_yscale("log")
    fig.suptitle(f"{t.name}: mean over {len(t.seeds)} seeds at each optimizer's tuned lr, 95 % band")
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"curves_{t.name}.png"), dpi=90)
    plt.close(fig)
    # lr sensitivity: every optimizer's tuning grid.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for o in t.optimizers:
        lrs = sorted(t.tuning[o])
        ax.plot(lrs, [t.tuning[o][lr][0] for lr in lrs], marker="o", ms=3, label=o, **style(o, t.optimizers))
    ax.set_xscale("log")
    if not m["higher"] and m["divergence"] > 0:
        ax.set_yscale("log")
    finish(fig, ax, "learning rate", "validation " + m["metric"], f"{t.name}: lr sensitivity (mean over the tuning seeds)",
           os.path.join(out, f"lr_{t.name}.png"), ncol=3)
    # γ traces of AdamX and its ablations, per group.
    gamma_opts = [o for o in t.optimizers if o.startswith("AdamX")]
    keys = sorted({k for o in gamma_opts for c in curves_of[o] for k in c if k.startswith("gamma/")})
    if keys:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for o in gamma_opts:
            for k in sorted({k for c in curves_of[o] for k in c if k.startswith("gamma/")}):
                band(ax, curves_of[o], k, f"{o} {k[6:]}", **layer_style(o, k, gamma_opts, keys))
        finish(fig, ax, "step", "γ", f"{t.name}: γ per group (mean, 95 % band)",
               os.path.join(out, f"gamma_{t.name}.png"))
    # Effective step size per layer, AdamX against Adam and the mechanism baseline.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    focus = [x for x in FOCUS if x in curves_of]
    layer_keys = sorted({k for o in focus for c in curves_of[o] for k in c if k.startswith("step/")})
    for o in focus:
        for k in sorted({k for c in curves_of[o] for k in c if k.startswith("step/")}):
            band(ax, curves_of[o], k, f"{o} {k[5:]}", **layer_style(o, k, focus, layer_keys))
    ax.set_yscale("log")
    finish(fig, ax, "step", "RMS parameter change / lr", f"{t.name}: effective step size per layer (mean, 95 % band)",
           os.path.join(out, f"steps_{t.name}.png"))


def finish(fig, ax, xlabel, ylabel, title, path, ncol=2):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=ncol)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def replace_between(path, begin, end, body):
    with open(path) as f:
        text = f.read()
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        sys.exit(f"study_report: {path} has no '{begin}' ... '{end}' section")
    with open(path, "w") as f:
        f.write(text[:i + len(begin)] + "\n" + body + "\n" + text[j:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("raw")
    p.add_argument("out")
    p.add_argument("--results-md", help="rewrite the verdict table of this Markdown file")
    args = p.parse_args()
    names = sorted(f[:-len(".meta.csv")] for f in os.listdir(args.raw) if f.endswith(".meta.csv"))
    if not names:
        sys.exit(f"study_report: no results in {args.raw}")
    os.makedirs(args.out, exist_ok=True)
    order = ["quadratic", "nonstationary", "digits", "breast_cancer", "fashion_cnn_b8", "fashion_cnn_b128",
             "char_gru", "transformer_lm", "cartpole_reinforce", "gan_8gaussians"]
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    reports = [TaskReport(args.raw, n) for n in names]
    all_comps = {t.name: t.all_comparisons() for t in reports}
    lines = ["# Study tables", "", "Generated by tools/study_report.py from the runs of scripts/results.", ""]
    lines += ["## Verdicts on the final metric", ""] + verdict_matrix(reports, all_comps) + [""]
    for t in reports:
        write_seeds(t, args.out)
        write_tuning(t, args.out)
        plot_task(t, args.out)
        lines += task_tables(t, all_comps[t.name])
    write_verdicts_csv(reports, all_comps, args.out)
    with open(os.path.join(args.out, "tables.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if args.results_md:
        replace_between(args.results_md, "<!-- verdicts:begin -->", "<!-- verdicts:end -->",
                        "\n".join(verdict_matrix(reports, all_comps)))
    print(f"study_report: {len(reports)} tasks -> {args.out}")


if __name__ == "__main__":
    main()
