"""One workload of scripts/bench in Python PyTorch: the idiomatic training loop a careful user writes (model.train(),
zero_grad, forward, loss, backward, step; loss and accuracy summed on the device and read once per epoch), on the
same model, batch size, optimizer, step count and thread count as src/bin/tchzoo-bench.rs (tchzoo's fit), data in
memory.
Prints one JSON object: name, steps, seconds (the loop only), steps_per_s, peak_rss_mb (VmHWM of this process).

Usage: bench.py --workload NAME [--threads N] [--quick]          one workload, here
       bench.py --compare BINARY [--threads N] [--repeats R] [--json FILE] [--quick] [--only NAME,…]
                the table: every workload in tchzoo (BINARY = the release tchzoo-bench) and here, each in its own
                process, alternating, R repeats; the median of each side and their ratio
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import MLP, LeNet5  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def moons():
    from sklearn.datasets import make_moons
    xs, ys = make_moons(n_samples=100, noise=0.2, random_state=1)
    return torch.tensor(xs, dtype=torch.float32), torch.tensor(ys, dtype=torch.int64)


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    xs = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    xs = F.interpolate(xs, size=(32, 32), mode="bilinear", align_corners=False)
    return xs, torch.tensor(d.target, dtype=torch.int64)


def sunspots(n_seq=12):
    with open(os.path.join(ROOT, "data", "sunspots.csv")) as f:
        values = torch.tensor([float(r["sunactivity"]) for r in csv.DictReader(f)])
    values = (values - values.min()) / (values.max() - values.min())
    windows = values.unfold(0, n_seq + 1, 1)
    return windows[:, :n_seq].unsqueeze(-1).contiguous(), windows[:, n_seq:].contiguous()


def pairs(negatives=4):
    with open(os.path.join(ROOT, "data", "les_miserables.csv")) as f:
        rows = [(r["character"], r["co_appears_with"]) for r in csv.DictReader(f)]
    names = sorted({a for a, _ in rows} | {b for _, b in rows})
    index = {n: i for i, n in enumerate(names)}
    pos = torch.tensor([[index[a], index[b]] for a, b in rows])
    g = torch.Generator().manual_seed(1)
    neg = torch.randint(len(names), (len(pos) * negatives, 2), generator=g)
    xs = torch.cat([pos, neg])
    ys = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).long()
    return xs, ys, len(names)


class Forecaster(nn.Module):
    """The seed's forecaster as tchzoo's `lstm`: LSTM(units) → last hidden state → Linear."""

    def __init__(self, n_features=1, units=64, num_outputs=1):
        super().__init__()
        self.lstm = nn.LSTM(n_features, units, batch_first=True)
        self.classifier = nn.Linear(units, num_outputs)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.classifier(h[-1])


class EntityEmbedding(nn.Module):
    """tchzoo's `entity_embedding`: two tables, cosine of the pair's vectors, Dense(1)."""

    def __init__(self, entities, links, dim=50):
        super().__init__()
        self.entity = nn.Embedding(entities, dim)
        self.link = nn.Embedding(links, dim)
        nn.init.uniform_(self.entity.weight, -0.05, 0.05)
        nn.init.uniform_(self.link.weight, -0.05, 0.05)
        self.classifier = nn.Linear(1, 1)

    def forward(self, x):
        a = F.normalize(self.entity(x[:, 0]), dim=-1)
        b = F.normalize(self.link(x[:, 1]), dim=-1)
        return self.classifier((a * b).sum(-1, keepdim=True))


def resnet18_cifar():
    import torchvision
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build(name, quick):
    # `<workload>_fused`: the same workload with torch.optim's fused kernels (fused=True) on both sides.
    fused = {"fused": True} if name.endswith("_fused") else {}
    name = name.removesuffix("_fused")
    sgd = lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, **fused)  # noqa: E731
    adam = lambda p: torch.optim.Adam(p, lr=1e-3, **fused)  # noqa: E731
    if name == "moons_mlp":
        xs, ys = moons()
        return MLP(2, hidden=(500,), num_outputs=1), xs, ys, adam, "bce", 5 if quick else 4000, 100, False
    if name == "lenet5_digits":
        xs, ys = digits()
        epochs = 10
        if quick:
            xs, ys, epochs = xs[:128], ys[:128], 1
        return LeNet5(10, 1), xs, ys, sgd, "ce", epochs, 64, True
    if name == "resnet18_cifar":
        batch, steps = (4, 2) if quick else (64, 30)
        torch.manual_seed(1)
        xs, ys = torch.randn(batch * steps, 3, 32, 32), torch.randint(10, (batch * steps,))
        return resnet18_cifar(), xs, ys, sgd, "ce", 1, batch, True
    if name == "lstm_forecaster":
        xs, ys = sunspots()
        return Forecaster(), xs, ys, adam, "mse", 1 if quick else 50, 32, True
    if name == "entity_embedding":
        xs, ys, n = pairs()
        return EntityEmbedding(n, n), xs, ys, adam, "bce", 1 if quick else 200, 1024, True
    raise SystemExit(f"unknown workload {name!r}")


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def image_folder(root, classes=8, per_class=64):
    """The image_pipeline folder: mixed-size JPEGs (300–500 px a side), smooth colours and noise, made once."""
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c:02}"), exist_ok=True)
        for i in range(per_class):
            w, h = rng.integers(300, 501, 2)
            yy, xx = np.mgrid[0:h, 0:w]
            img = np.stack([128 + 90 * np.sin(xx / (9 + c + k) + i) * np.cos(yy / (13 + k)) for k in range(3)], -1)
            img = (img + rng.normal(0, 10, img.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(root, f"class{c:02}", f"img{i:04}.jpg"), quality=90)
    open(os.path.join(root, ".complete"), "w").close()
    return root


def tree_rss_mb(pid):
    """The resident memory of a process and all its descendants (DataLoader workers), in MiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return total / 1024.0


def image_pipeline(args):
    """torchvision's ImageFolder + DataLoader(num_workers) with RandomResizedCrop(224), flip, ToTensor, Normalize;
    one shuffled epoch in batches of 64. Peak RSS: the largest sum over this process and its workers, sampled."""
    import threading
    from torchvision import datasets, transforms as T
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    data = datasets.ImageFolder(args.data, tf)
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, num_workers=args.workers,
                                         generator=torch.Generator().manual_seed(1))
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(os.getpid()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    images, checksum = 0, 0.0
    for xs, _ in loader:
        images += len(xs)
        checksum += float(xs[0, 0, 0, 0])
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    print(json.dumps({"name": "image_pipeline", "steps": images, "seconds": seconds, "steps_per_s": images / seconds,
                      "peak_rss_mb": max(peak[0], peak_rss_mb()), "final_loss": checksum, "threads": args.threads,
                      "workers": args.workers}))


def resnet18_folder(args):
    """End to end: torchvision's resnet18 (8 classes) trained one epoch at 112×112 on the image_pipeline folder,
    ImageFolder + DataLoader(num_workers) with RandomResizedCrop(112), flip, ToTensor, Normalize; batch 32, SGD
    momentum; loss and accuracy summed on the device as the other workloads do. Steps = images; peak RSS as
    image_pipeline's (this process and its workers)."""
    import threading
    import torchvision
    from torchvision import datasets, transforms as T
    tf = T.Compose([T.RandomResizedCrop(112), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    data = datasets.ImageFolder(args.data, tf)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, num_workers=args.workers,
                                         generator=torch.Generator().manual_seed(1))
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=len(data.classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(os.getpid()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    model.train()
    sums = torch.zeros(3, dtype=torch.float64)
    for xb, yb in loader:
        opt.zero_grad()
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        loss.backward()
        opt.step()
        with torch.no_grad():
            metric = (out.argmax(-1) == yb).sum()
            sums += torch.stack([loss.double() * len(yb), metric.double(), torch.tensor(float(len(yb)))])
    epoch_loss = (sums[0] / sums[2]).item()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    images = len(data)
    print(json.dumps({"name": "resnet18_folder", "steps": images, "seconds": seconds, "steps_per_s": images / seconds,
                      "peak_rss_mb": max(peak[0], peak_rss_mb()), "final_loss": epoch_loss, "threads": args.threads,
                      "workers": args.workers}))


def placeholder_folder(root, classes=1000, per_class=1000):
    """The index_1m folder: classes × per_class empty .jpg files (indexing reads names, not contents), made once."""
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    for c in range(classes):
        d = os.path.join(root, f"n{c:08}")
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            open(os.path.join(d, f"img{i:06}.jpg"), "w").close()
    open(os.path.join(root, ".complete"), "w").close()
    return root


def index_folder(args):
    """torchvision's ImageFolder(root): the index alone (classes, then every file's path and label)."""
    from torchvision import datasets
    started = time.perf_counter()
    data = datasets.ImageFolder(args.data)
    seconds = time.perf_counter() - started
    print(json.dumps({"name": "index_1m", "steps": len(data), "seconds": seconds, "steps_per_s": len(data) / seconds,
                      "peak_rss_mb": peak_rss_mb(), "final_loss": len(data.classes), "threads": args.threads}))


# (name, the most repeats): ResNet-18 takes minutes a run on 2 cores and is kernel-bound (little noise), so one run
# a side keeps the whole benchmark under 10 minutes.
WORKLOADS = [
    ("moons_mlp", None),  # MLP 2→500→1, full batch 100, Adam, 4,000 steps
    ("lenet5_digits", None),  # LeNet-5, digits 32×32, batch 64, SGD momentum, 10 epochs
    ("resnet18_cifar", 1),  # ResNet-18 (CIFAR stem), batch 64, SGD momentum, 30 steps
    ("lstm_forecaster", None),  # LSTM(64) forecaster, sunspots, batch 32, Adam, 50 epochs
    ("entity_embedding", None),  # entity embedding, 4 negatives, batch 1,024, Adam, 200 epochs
    ("image_pipeline", None),  # the input pipeline alone: 512 JPEGs 300–500 px, RandomResizedCrop(224), flip,
    # normalise, batch 64, --threads workers; steps = images
    ("resnet18_folder", 1),  # end to end: ResNet-18 at 112×112, one epoch of the image_pipeline folder (512
    # JPEGs), RandomResizedCrop(112), flip, normalise, batch 32, SGD momentum, --threads workers; steps = images
    ("moons_mlp_fused", None),  # moons_mlp with Adam(fused=True) on both sides
    ("lenet5_digits_fused", None),  # lenet5_digits with SGD(fused=True) on both sides
]


def run_one(command):
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(args):
    names = [n for n, _ in WORKLOADS]
    if args.only:
        names = [n for n in args.only.split(",") if n]
    rows = []
    for name in names:
        common = ["--workload", name, "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        if name in ("image_pipeline", "resnet18_folder"):
            folder = image_folder("/tmp/tchzoo-bench-images" + ("-quick" if args.quick else ""), per_class=8 if args.quick else 64)
            common += ["--data", folder, "--workers", str(args.threads)]
        if name == "index_1m":  # not in the default table: 1,000,000 empty files in 1,000 folders, deleted after
            folder = placeholder_folder("/tmp/tchzoo-bench-index" + ("-quick" if args.quick else ""),
                                        per_class=10 if args.quick else 1000)
            common += ["--data", folder]
        ours, theirs = [], []
        cap = dict(WORKLOADS).get(name)
        for _ in range(min(args.repeats, cap or args.repeats)):
            ours.append(run_one([args.compare] + common))
            theirs.append(run_one([sys.executable, os.path.abspath(__file__)] + common))
        med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
        row = {
            "name": name,
            "steps": ours[0]["steps"],
            "tchzoo_steps_per_s": med(ours, "steps_per_s"),
            "python_steps_per_s": med(theirs, "steps_per_s"),
            "tchzoo_peak_rss_mb": max(r["peak_rss_mb"] for r in ours),
            "python_peak_rss_mb": max(r["peak_rss_mb"] for r in theirs),
            "tchzoo_runs": [r["steps_per_s"] for r in ours],
            "python_runs": [r["steps_per_s"] for r in theirs],
        }
        row["ratio"] = row["tchzoo_steps_per_s"] / row["python_steps_per_s"]
        if name == "index_1m":
            import shutil
            shutil.rmtree(folder)
        rows.append(row)
        print(f"{name}: tchzoo {row['tchzoo_steps_per_s']:.2f} steps/s, python {row['python_steps_per_s']:.2f} "
              f"steps/s, ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)
    print(f"\n{args.threads} thread(s), {args.repeats} repeat(s) (resnet18_cifar, resnet18_folder: 1), median steps/s; "
          "peak RSS = max over repeats\n")
    print("| workload | steps | tchzoo steps/s | Python steps/s | ratio | tchzoo peak RSS MB | Python peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['steps']} | {r['tchzoo_steps_per_s']:.2f} | {r['python_steps_per_s']:.2f} | "
              f"{r['ratio']:.2f}× | {r['tchzoo_peak_rss_mb']:.0f} | {r['python_peak_rss_mb']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload")
    ap.add_argument("--compare", metavar="BINARY")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--only")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.compare:
        return compare(args)
    if not args.workload:
        ap.error("give --workload NAME or --compare BINARY")
    torch.set_num_threads(args.threads)
    if args.workload == "image_pipeline":
        return image_pipeline(args)
    if args.workload == "resnet18_folder":
        return resnet18_folder(args)
    if args.workload == "index_1m":
        return index_folder(args)
    torch.manual_seed(1)
    model, xs, ys, make_opt, loss_kind, epochs, batch, shuffle = build(args.workload, args.quick)
    opt = make_opt(model.parameters())
    n = len(xs)
    steps = epochs * -(-n // batch)
    g = torch.Generator().manual_seed(1)

    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=g) if shuffle else None
        sums = torch.zeros(3, dtype=torch.float64)
        for start in range(0, n, batch):
            if order is None:
                xb, yb = xs[start:start + batch], ys[start:start + batch]
            else:
                idx = order[start:start + batch]
                xb, yb = xs.index_select(0, idx), ys.index_select(0, idx)
            opt.zero_grad()
            out = model(xb)
            if loss_kind == "bce":
                loss = F.binary_cross_entropy_with_logits(out.reshape(-1), yb.float())
            elif loss_kind == "ce":
                loss = F.cross_entropy(out, yb)
            else:
                loss = F.mse_loss(out, yb)
            loss.backward()
            opt.step()
            with torch.no_grad():
                if loss_kind == "bce":
                    metric = ((out.reshape(-1) > 0) == yb.bool()).sum()
                elif loss_kind == "ce":
                    metric = (out.argmax(-1) == yb).sum()
                else:
                    metric = (out - yb).abs().mean(-1).sum()
                sums += torch.stack([loss.double() * len(yb), metric.double(), torch.tensor(float(len(yb)))])
        epoch_loss = (sums[0] / sums[2]).item()  # the epoch's figures, read once
    seconds = time.perf_counter() - started
    print(json.dumps({
        "name": args.workload, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
        "peak_rss_mb": peak_rss_mb(), "final_loss": epoch_loss, "threads": args.threads,
    }))


if __name__ == "__main__":
    main()
