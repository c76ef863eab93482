#!/usr/bin/env python3
"""Trains a small torch.nn MLP on Fashion-MNIST with adamx.torch.AdamX and with
torch.optim.Adam, from the same initial weights and the same batches, and
prints each epoch's test accuracy and the time the optimizer's steps took.

    .venv/bin/python examples/python/fashion_mnist_torch.py             # 3 epochs
    .venv/bin/python examples/python/fashion_mnist_torch.py --quick     # 1 epoch on 6000 images

The data is Debian's dataset-fashion-mnist package (Zalando Research,
Fashion-MNIST, MIT licence: H. Xiao, K. Rasul, R. Vollgraf, arXiv:1708.07747),
read from /usr/share/datasets/fashion-mnist or the directory given with --data.
"""
import argparse
import copy
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch

import adamx.torch


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2049:  # labels
        return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    if magic != 2051:
        raise ValueError("%s: not an IDX image or label file" % path)
    rows, cols = struct.unpack(">II", data[8:16])
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows * cols)
    return images.astype(np.float32) / 255.0


def load(directory):
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name in names:
        if not os.path.exists(os.path.join(directory, name)):
            raise SystemExit("Fashion-MNIST not found in %s (apt-get install dataset-fashion-mnist, or --data DIR)" % directory)
    return [torch.from_numpy(read_idx(os.path.join(directory, n)).copy()) for n in names]


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one epoch on the first 6000 training images")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load(args.data)
    epochs = args.epochs
    if args.quick:
        x_train, y_train, epochs = x_train[:6000], y_train[:6000], 1
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    runs = {
        "torch.optim.Adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
        "adamx.torch.AdamX": lambda m: adamx.torch.AdamX(m.parameters(), lr=1e-3, beta3=0.99),
    }
    print("MLP 784-256-10, batch 64, lr 1e-3, %d training images, %d epoch(s)" % (len(x_train), epochs))
    results = {}
    for name, make in runs.items():
        net = copy.deepcopy(model)
        opt = make(net)
        order = torch.Generator().manual_seed(1)
        step_time = 0.0
        for epoch in range(epochs):
            perm = torch.randperm(len(x_train), generator=order)
            for start in range(0, len(x_train), 64):
                idx = perm[start:start + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x_train[idx]), y_train[idx]).backward()
                t0 = time.perf_counter()
                opt.step()
                step_time += time.perf_counter() - t0
            acc = accuracy(net, x_test, y_test)
            extra = ", gamma %.3f" % opt.gamma(0) if isinstance(opt, adamx.torch.AdamX) else ""
            print("%-18s epoch %d: test accuracy %.2f %%, optimizer steps %.2f s%s" % (name, epoch + 1, 100 * acc, step_time, extra))
        results[name] = acc
    if min(results.values()) < 0.7:
        print("a run did not learn (test accuracy below 70 %)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
