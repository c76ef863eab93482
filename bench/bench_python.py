#!/usr/bin/env python3
"""One optimizer step from Python: adamx.torch.Adam (the C++ kernel) against
torch.optim.Adam with foreach=False and foreach=True, at one thread.

    .venv/bin/python bench/bench_python.py            # the README's figures
    .venv/bin/python bench/bench_python.py --quick    # a smoke run (seconds)

Two workloads: one tensor of 2^24 float32 elements, and ResNet-18's 62
parameter shapes (11.7 M elements). Every contender steps its own copy of
the same parameters and gradients. Each repetition times `inner` steps of
every contender, in a new random order; a contender's time is the median
over repetitions, and the ratios are of medians within this one run. The
A/A row (adamx against a second adamx optimizer on its own copy) is the run's
resolution: ratios closer to 1 than it are noise. The Python overhead per
call is the time of adamx's step() on one 1-element tensor (and on 62 of
them), where the kernel's work is nil.
"""
import argparse
import json
import random
import statistics
import sys
import time

import torch

import adamx
import adamx.torch


def resnet18_shapes():
    """ResNet-18's parameters (torchvision's layout, 1000 classes): 62 tensors."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            first = block == 0
            shapes += [(planes, inplanes if first else planes, 3, 3), (planes,), (planes,)]
            shapes += [(planes, planes, 3, 3), (planes,), (planes,)]
            if first and (stride != 1 or inplanes != planes):
                shapes += [(planes, inplanes, 1, 1), (planes,), (planes,)]
        inplanes = planes
    shapes += [(1000, 512), (1000,)]
    assert len(shapes) == 62, len(shapes)
    return shapes


def make(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.randn(s, generator=g).requires_grad_()
        p.grad = torch.randn(s, generator=g) * 1e-2
        params.append(p)
    return params


def contenders(shapes):
    out = {}
    out["adamx"] = adamx.torch.Adam(make(shapes, 0), lr=1e-3)
    out["adamx_again"] = adamx.torch.Adam(make(shapes, 0), lr=1e-3)
    out["torch_foreach_false"] = torch.optim.Adam(make(shapes, 0), lr=1e-3, foreach=False)
    out["torch_foreach_true"] = torch.optim.Adam(make(shapes, 0), lr=1e-3, foreach=True)
    return out


def measure(opts, reps, inner):
    for opt in opts.values():  # the first step allocates the state
        opt.step()
    times = {name: [] for name in opts}
    for _ in range(reps):
        order = list(opts)
        random.shuffle(order)
        for name in order:
            opt = opts[name]
            start = time.perf_counter()
            for _ in range(inner):
                opt.step()
            times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(t) for name, t in times.items()}, times


def overhead(count, reps):
    opt = adamx.torch.Adam(make([(1,)] * count, 1), lr=1e-3)
    opt.step()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(200):
            opt.step()
        samples.append((time.perf_counter() - start) / 200)
    return statistics.median(samples)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few repetitions")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    random.seed(1)
    reps, inner = (3, 1) if args.quick else (15, 3)
    workloads = {
        "one_tensor_2p24": [(1 << 16,)] if args.quick else [(1 << 24,)],
        "resnet18": [tuple(max(1, d // 8) for d in s) for s in resnet18_shapes()] if args.quick else resnet18_shapes(),
    }
    print("adamx %s, torch %s, instruction set %s, 1 thread%s" % (
        adamx.__version__, torch.__version__, adamx.instruction_set(), " (--quick: reduced sizes)" if args.quick else ""))
    figures = {}
    for workload, shapes in workloads.items():
        elements = sum(torch.Size(s).numel() for s in shapes)
        medians, _ = measure(contenders(shapes), reps, inner)
        print("\n%s: %d tensors, %d elements; median time of one step() over %d repetitions" % (
            workload, len(shapes), elements, reps))
        for name, t in medians.items():
            print("  %-22s %10.3f ms" % (name, t * 1e3))
        aa = medians["adamx_again"] / medians["adamx"]
        f_false = medians["torch_foreach_false"] / medians["adamx"]
        f_true = medians["torch_foreach_true"] / medians["adamx"]
        print("  torch foreach=False / adamx: %.2f" % f_false)
        print("  torch foreach=True  / adamx: %.2f" % f_true)
        print("  A/A (adamx / adamx):         %.2f" % aa)
        figures[workload] = {
            "adamx_ms": medians["adamx"] * 1e3,
            "torch_foreach_false_ms": medians["torch_foreach_false"] * 1e3,
            "torch_foreach_true_ms": medians["torch_foreach_true"] * 1e3,
            "torch_foreach_false_over_adamx": f_false,
            "torch_foreach_true_over_adamx": f_true,
            "aa": aa,
        }
    one = overhead(1, reps)
    many = overhead(62, reps)
    print("\nPython overhead of adamx's step(): %.1f us for 1 tensor, %.1f us for 62 (1-element tensors)" % (
        one * 1e6, many * 1e6))
    figures["overhead_us_1_tensor"] = one * 1e6
    figures["overhead_us_62_tensors"] = many * 1e6
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
