"""Exports real data from Python packages into files tchzoo reads.

usage: export_data.py OUT_DIR     writes OUT_DIR/digits/ (scikit-learn's load_digits as MNIST IDX, gzipped)
                                  and OUT_DIR/iris.csv (scikit-learn's load_iris, species names as labels)
       export_data.py --embedded  rewrites assets/digits/, the copy compiled into tchzoo (src/data/digits.rs);
                                  commit the result

Deterministic (gzip mtime 0) and idempotent: a file is rewritten only when its decoded content changes.
Quiet unless something fails.
"""
import gzip
import os
import struct
import sys

import numpy as np
from sklearn.datasets import load_digits, load_iris

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idx_bytes(array: np.ndarray) -> bytes:
    """MNIST's IDX layout for a uint8 array: 00 00 08 rank, big-endian u32 dims, then the values."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def write_if_changed(path: str, content: bytes, gz: bool) -> None:
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
        try:
            if (gzip.decompress(old) if gz else old) == content:
                return
        except OSError:
            pass
    data = gzip.compress(content, compresslevel=9, mtime=0) if gz else content
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def export_digits(folder: str) -> None:
    """scikit-learn's 1797 8x8 digits (pixels 0..16, labels 0..9), in sklearn's sample order."""
    digits = load_digits()
    images = digits.images.astype(np.uint8)
    assert images.shape == (1797, 8, 8) and np.array_equal(images, digits.images)
    labels = digits.target.astype(np.uint8)
    os.makedirs(folder, exist_ok=True)
    write_if_changed(os.path.join(folder, "digits-images-idx3-ubyte.gz"), idx_bytes(images), gz=True)
    write_if_changed(os.path.join(folder, "digits-labels-idx1-ubyte.gz"), idx_bytes(labels), gz=True)


def export_iris(path: str) -> None:
    iris = load_iris()
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for row, target in zip(iris.data, iris.target):
        lines.append(",".join(repr(float(v)) for v in row) + "," + str(iris.target_names[target]))
    write_if_changed(path, ("\n".join(lines) + "\n").encode(), gz=False)


def main(argv) -> int:
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "--embedded":
        export_digits(os.path.join(ROOT, "assets", "digits"))
        return 0
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    export_digits(os.path.join(out, "digits"))
    export_iris(os.path.join(out, "iris.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
