#!/usr/bin/env python3
"""PyTorch's torch.optim.Adam, called from Python: the time of one step.

    bench/bench_torch_python.py --out FILE [--repetitions 5] [--min-time 0.2]

One float32 tensor of 2^24 elements, one thread (torch.set_num_threads(1)),
the optimizer's defaults (lr 1e-3; on the CPU PyTorch 1.13 steps each tensor
with its single-tensor loop), the same gradient every step, one untimed
warm-up step. Each repetition runs whole steps for at least --min-time
seconds and records the mean wall-clock time per step. The result is written
in the shape of Google Benchmark's JSON (run name
"torch_python/Adam/single/threads:1", one entry per repetition), so that
tools/bench_ratios.py divides it by adamx's own Adam row at the same size
(step/Adam/float/16777216): what a PyTorch user's optimizer step costs
against adamx's.

Needs Debian's python3-torch; scripts/bench runs it when `import torch` works.
"""

import argparse
import json
import platform
import sys
import time

N = 1 << 24
NAME = "torch_python/Adam/single/threads:1"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the JSON")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repetition, at least")
    args = parser.parse_args()
    if args.repetitions < 1 or args.min_time <= 0:
        sys.exit("bench_torch_python: --repetitions must be >= 1 and --min-time > 0")

    import torch  # after the arguments: --help works without PyTorch

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(1)
    param = torch.nn.Parameter(0.05 * torch.randn(N, generator=generator))
    param.grad = 1e-3 * torch.randn(N, generator=generator)
    optimizer = torch.optim.Adam([param], lr=1e-3)
    optimizer.step()  # warm-up: allocates and first touches m and v

    runs = []
    for _ in range(args.repetitions):
        steps = 0
        start = time.perf_counter()
        while True:
            optimizer.step()
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= args.min_time:
                break
        runs.append({"name": NAME, "run_name": NAME, "run_type": "iteration",
                     "iterations": steps, "real_time": elapsed / steps * 1e6,
                     "cpu_time": elapsed / steps * 1e6, "time_unit": "us"})

    result = {"context": {"executable": "bench_torch_python.py", "python": platform.python_version(),
                          "torch": torch.__version__, "num_threads": torch.get_num_threads()},
              "benchmarks": runs}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    best = min(r["real_time"] for r in runs)
    print("%s: %.0f us per step (fastest of %d repetitions), PyTorch %s" % (
        NAME, best, len(runs), torch.__version__))


if __name__ == "__main__":
    main()
