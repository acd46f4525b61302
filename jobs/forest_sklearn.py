#!/usr/bin/python3
"""The reference for `flcache run forest` (jobs/forest.c): python3-sklearn's
RandomForestClassifier on the same data (the first TRAIN_N Fashion-MNIST
training images, the first TEST_N test images, raw byte pixels), the same
number of trees, depth and sqrt(784) features per split. Prints its test
accuracy as one JSON line. The forests differ in their random draws, so the
accuracies are compared within a margin, not predictions one by one.

usage: forest_sklearn.py DATA_DIR TRAIN_N TEST_N TREES DEPTH SEED
"""
import gzip
import json
import struct
import sys

import numpy as np
from sklearn.ensemble import RandomForestClassifier


def idx(path, n, images):
    with gzip.open(path, "rb") as f:
        if images:
            _, count, rows, cols = struct.unpack(">IIII", f.read(16))
            k = min(n, count)
            return np.frombuffer(f.read(k * rows * cols), dtype=np.uint8).reshape(k, rows * cols)
        _, count = struct.unpack(">II", f.read(8))
        return np.frombuffer(f.read(min(n, count)), dtype=np.uint8)


def main():
    d, train_n, test_n, trees, depth, seed = sys.argv[1], *map(int, sys.argv[2:7])
    xtr = idx(f"{d}/train-images-idx3-ubyte.gz", train_n, True)
    ytr = idx(f"{d}/train-labels-idx1-ubyte.gz", train_n, False)
    xte = idx(f"{d}/t10k-images-idx3-ubyte.gz", test_n, True)
    yte = idx(f"{d}/t10k-labels-idx1-ubyte.gz", test_n, False)
    rf = RandomForestClassifier(n_estimators=trees, max_depth=depth, max_features="sqrt",
                                random_state=seed, n_jobs=1)
    rf.fit(xtr, ytr)
    acc = float((rf.predict(xte) == yte).mean())
    print(json.dumps({"accuracy": acc, "train_n": len(ytr), "test_n": len(yte)}))


if __name__ == "__main__":
    main()
