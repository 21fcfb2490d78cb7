"""The Python side of scripts/gpu-check: images per second of a torchvision ResNet training on synthetic data on
the GPU, as tchzoo's side does it (SGD with momentum, cross-entropy, data already on the device).

usage: gpu_check.py --model resnet50 --size 224 --batch 256 --steps 12 --precision fp32|bf16 [--channels-last]
                    [--compile] [--foreach] [--memory]
--model takes a torchvision name or tchzoo's lenet5 / resnet20 (scripts/reference_models.py); --compile runs
torch.compile(mode="reduce-overhead") (CUDA graphs under Inductor); --foreach uses torch.optim's foreach SGD (the
default on CUDA). Prints one number: images per second over the timed steps (after as many warm-up steps), and with
--memory the peak allocated and reserved CUDA bytes after it.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

p = argparse.ArgumentParser()
p.add_argument("--model", default="resnet50")
p.add_argument("--size", type=int, default=224)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--steps", type=int, default=12)
p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
p.add_argument("--channels-last", action="store_true")
p.add_argument("--device", default="cuda")
p.add_argument("--compile", action="store_true")
p.add_argument("--foreach", action="store_true")
p.add_argument("--memory", action="store_true")
a = p.parse_args()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

dev = torch.device(a.device)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
torch.manual_seed(0)
classes = 10 if a.model in ("lenet5", "resnet20") else 1000
channels = 1 if a.model == "lenet5" else 3
if a.model == "lenet5":
    from reference_models import LeNet5
    model = LeNet5(num_classes=classes, in_channels=1).to(dev)
elif a.model == "resnet20":
    from reference_models import CifarResNet
    model = CifarResNet(20, num_classes=classes).to(dev)
else:
    model = getattr(torchvision.models, a.model)(num_classes=classes).to(dev)
fmt = torch.channels_last if a.channels_last else torch.contiguous_format
model = model.to(memory_format=fmt)
xs = torch.randn(a.steps, a.batch, channels, a.size, a.size, device=dev)
ys = torch.randint(classes, (a.steps, a.batch), device=dev)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=a.foreach)
forward = torch.compile(model, mode="reduce-overhead") if a.compile else model
dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)
scaler = torch.amp.GradScaler(dev.type) if a.precision == "fp16" else None
model.train()


def epoch():
    for i in range(a.steps):
        x = xs[i].contiguous(memory_format=fmt)
        opt.zero_grad()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(forward(x), ys[i])
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()


epoch()  # warm-up, as tchzoo's first epoch (and torch.compile's compilation and graph recording)
sync()
if a.memory and dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
epoch()
sync()
rate = a.steps * a.batch / (time.perf_counter() - t)
if a.memory and dev.type == "cuda":
    print(f"{rate:.1f} {torch.cuda.max_memory_allocated()} {torch.cuda.max_memory_reserved()}")
else:
    print(f"{rate:.1f}")
