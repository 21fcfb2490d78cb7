"""Exports real data from Python packages into files tchzoo reads.

usage: export_data.py OUT_DIR     writes OUT_DIR/digits/ (scikit-learn's load_digits as MNIST IDX, gzipped),
                                  OUT_DIR/iris.csv (scikit-learn's load_iris, species names as labels),
                                  OUT_DIR/les_miserables.csv and OUT_DIR/davis_southern_women.csv (networkx's
                                  bundled graphs as (entity, link) pair tables for entity embeddings), and
                                  OUT_DIR/scipy_docstrings.csv (the summary line of each public function of seven
                                  SciPy subpackages, labelled with its subpackage: real short texts to classify)
       export_data.py --embedded  rewrites assets/digits/, the copy compiled into tchzoo (src/data/digits.rs);
                                  commit the result

Deterministic (gzip mtime 0) and idempotent: a file is rewritten only when its decoded content changes.
Quiet unless something fails.
"""
import csv
import gzip
import importlib
import inspect
import io
import os
import random
import re
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


def csv_bytes(header, rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def export_les_miserables(path: str) -> None:
    """networkx's Les Misérables co-appearance graph (77 characters, 254 edges weighted by co-appearances), as pairs
    character → co-appearing character in both directions, sorted."""
    import networkx as nx

    g = nx.les_miserables_graph()
    edges = [(a, b, d["weight"]) for a, b, d in g.edges(data=True)]
    rows = sorted({(a, b, w) for a, b, w in edges} | {(b, a, w) for a, b, w in edges})
    write_if_changed(path, csv_bytes(["character", "co_appears_with", "weight"], rows), gz=False)


def export_davis(path: str) -> None:
    """networkx's Davis Southern Women graph: 18 women, 14 events, 89 attendances, as pairs woman → event (the
    bipartite shape of the seed's book → wikilink pairs)."""
    import networkx as nx

    g = nx.davis_southern_women_graph()
    women = set(g.graph["top"])
    rows = sorted((a, b) if a in women else (b, a) for a, b in g.edges())
    write_if_changed(path, csv_bytes(["woman", "event"], rows), gz=False)


DOC_MODULES = ["linalg", "optimize", "signal", "special", "stats", "ndimage", "interpolate"]


def doc_summary(obj):
    """The first paragraph of a docstring that is not a call signature, on one line."""
    doc = inspect.getdoc(obj) or ""
    for para in re.split(r"\n\s*\n", doc):
        line = " ".join(para.split())
        if not line or line.startswith(".. ") or re.match(r"^[\w.]+\(.*\)(\s*->.*)?$", line):
            continue
        return line
    return None


def export_docstrings(path: str) -> None:
    """(text, subpackage) rows from the pinned SciPy: a text seen under two subpackages, one naming its
    subpackage, or shorter than three words is left out; rows in a fixed shuffled order."""
    seen = {}
    for name in DOC_MODULES:
        mod = importlib.import_module(f"scipy.{name}")
        for attr in sorted(n for n in getattr(mod, "__all__", dir(mod)) if not n.startswith("_")):
            obj = getattr(mod, attr, None)
            if obj is None or inspect.ismodule(obj) or not callable(obj):
                continue
            text = doc_summary(obj)
            if not text or len(text.split()) < 3 or "scipy" in text.lower():
                continue
            seen.setdefault(text, set()).add(name)
    rows = sorted((text, next(iter(labels))) for text, labels in seen.items() if len(labels) == 1)
    random.Random(0).shuffle(rows)
    write_if_changed(path, csv_bytes(["text", "subpackage"], rows), gz=False)


def export_sunspots(path: str) -> None:
    """The yearly sunspot numbers (1700-2008) that statsmodels ships: (year, sunactivity) rows in time order."""
    from statsmodels.datasets import sunspots

    data = sunspots.load_pandas().data
    rows = [(str(int(y)), repr(float(v))) for y, v in zip(data["YEAR"], data["SUNACTIVITY"])]
    write_if_changed(path, csv_bytes(["year", "sunactivity"], rows), gz=False)


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
    export_les_miserables(os.path.join(out, "les_miserables.csv"))
    export_davis(os.path.join(out, "davis_southern_women.csv"))
    export_docstrings(os.path.join(out, "scipy_docstrings.csv"))
    export_sunspots(os.path.join(out, "sunspots.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
