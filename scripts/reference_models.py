"""Python reference definitions for the tchzoo models that torchvision/timm lack.

Parameter names, shapes and registration order match the Rust models, so a state dict moves either way with
load_state_dict(strict=True).
"""
import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "silu": nn.SiLU,
    "elu": nn.ELU, "selu": nn.SELU, "leaky_relu": nn.LeakyReLU, "mish": nn.Mish, "softplus": nn.Softplus,
}


class MLP(nn.Module):
    """tchzoo `mlp`: features = Flatten, then Linear [+BatchNorm1d] + activation [+Dropout] per hidden layer."""

    def __init__(self, in_features, hidden=(64, 64), num_outputs=2, activation="relu", dropout=0.0, batch_norm=False):
        super().__init__()
        layers = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """tchzoo `lenet5` for 32×32 inputs (ReLU and max pooling by default; tanh/avg for the 1998 form)."""

    def __init__(self, num_classes=10, in_channels=1, activation="relu", pool="max"):
        super().__init__()
        act = ACTIVATIONS[activation]
        pool_layer = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), act(), pool_layer(2),
            nn.Conv2d(6, 16, 5), act(), pool_layer(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class _PadShortcut(nn.Module):
    """Option A shortcut (He et al. 2016 §4.2): subsample by the stride, zero-pad the new channels evenly."""

    def __init__(self, stride, extra_channels):
        super().__init__()
        self.stride = stride
        self.front = extra_channels // 2
        self.back = extra_channels - self.front

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.front, self.back))


class _CifarBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            if shortcut == "A":
                self.downsample = _PadShortcut(stride, planes - inplanes)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class CifarResNet(nn.Module):
    """tchzoo `resnet20/32/44/56/110` (He et al. 2016 §4.2), depth 6n+2: 3×3 conv stem (16), three stages of n
    basic blocks (16/32/64 planes, strides 1/2/2), global average pool, `fc`. Shortcuts across a change of shape:
    option "A" (parameter-free subsample + zero-pad, the default) or "B" (1×1 conv + BatchNorm `downsample`).
    Names follow torchvision's ResNet."""

    def __init__(self, depth=20, num_classes=10, in_channels=3, shortcut="A"):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        inplanes = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(_CifarBasicBlock(inplanes, planes, 2 if i > 0 and j == 0 else 1, shortcut))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
