"""The Python side of scripts/gpu-check: images per second of a torchvision ResNet training on synthetic data on
the GPU, as tchzoo's side does it (SGD with momentum, cross-entropy, data already on the device).

usage: gpu_check.py --model resnet50 --size 224 --batch 256 --steps 12 --precision fp32|bf16 [--channels-last]
Prints one number: images per second over the timed steps (after as many warm-up steps).
"""
import argparse
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
a = p.parse_args()

dev = torch.device(a.device)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
torch.manual_seed(0)
model = getattr(torchvision.models, a.model)(num_classes=1000).to(dev)
fmt = torch.channels_last if a.channels_last else torch.contiguous_format
model = model.to(memory_format=fmt)
xs = torch.randn(a.steps, a.batch, 3, a.size, a.size, device=dev)
ys = torch.randint(1000, (a.steps, a.batch), device=dev)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)
scaler = torch.amp.GradScaler(dev.type) if a.precision == "fp16" else None
model.train()


def epoch():
    for i in range(a.steps):
        x = xs[i].contiguous(memory_format=fmt)
        opt.zero_grad()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), ys[i])
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()


epoch()  # warm-up, as tchzoo's first epoch
sync()
t = time.perf_counter()
epoch()
sync()
print(f"{a.steps * a.batch / (time.perf_counter() - t):.1f}")
