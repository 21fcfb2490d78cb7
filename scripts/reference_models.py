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
                blocks.append(self._make_block(inplanes, planes, 2 if i > 0 and j == 0 else 1, shortcut))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_block(self, inplanes, planes, stride, shortcut):
        return _CifarBasicBlock(inplanes, planes, stride, shortcut)

    def forward_features(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


class ChannelBoostedCNN(nn.Module):
    """tchzoo `channel_boost` (Khan et al. 2018, arXiv 1804.08528): a frozen, pretrained `booster` (any module
    with `forward_features` giving feature maps) computes auxiliary channels from the input; `boost` (1×1 conv with
    bias) maps its `booster_channels` feature channels to `boost_channels`, bilinearly resized (align_corners=False)
    to the input's size and concatenated after the input's channels; `learner` (built for C + boost_channels
    channels) classifies. The booster never trains: no gradient, always in eval mode."""

    def __init__(self, booster, booster_channels, learner, boost_channels=8):
        super().__init__()
        self.booster = booster.requires_grad_(False)
        self.boost = nn.Conv2d(booster_channels, boost_channels, 1)
        self.learner = learner

    def train(self, mode=True):
        super().train(mode)
        self.booster.eval()
        return self

    def forward(self, x):
        with torch.no_grad():
            aux = self.booster.forward_features(x)
        aux = nn.functional.interpolate(self.boost(aux), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.learner(torch.cat([x, aux], 1))


def make_divisible(v, divisor=8, round_limit=0.9):
    """Channels rounded to a multiple of `divisor`, never more than 10% below `v` (timm's/torchvision's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


class _DepthwiseSeparable(nn.Module):
    """timm's `DepthwiseSeparableConv` as MobileNet v1 uses it (block type "dsa"): 3×3 depthwise `conv_dw` + `bn1`
    + ReLU6, 1×1 pointwise `conv_pw` + `bn2` + ReLU6, no skip connection."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv_pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = nn.functional.relu6(self.bn1(self.conv_dw(x)))
        return nn.functional.relu6(self.bn2(self.conv_pw(x)))


class MobileNetV1(nn.Module):
    """tchzoo `mobilenetv1_100` (Howard et al. 2017, table 1), laid out and named as timm's `mobilenetv1_100` (an
    `EfficientNet` built from the block string "dsa"), so timm's state dicts load strictly:

    `conv_stem` 3×3/2 (32 channels) + `bn1` + ReLU6; `blocks.<stage>.<block>` = 13 depthwise-separable blocks in
    five stages of 64 (1 block), 128 (2), 256 (2), 512 (6) and 1024 (2) channels, the first block of stages 1–4
    with stride 2; global average pool; `classifier` (no dropout). The width multiplier scales every width
    (stem included) and rounds it with `make_divisible`. Initialisation as timm's `_init_weight_goog`: convs
    N(0, sqrt(2 / fan_out)) with fan_out = k·k·c_out / groups, BatchNorm 1/0, the classifier U(±1/sqrt(classes))
    with zero bias. 4,231,976 parameters at width 1.0 and 1,000 classes."""

    STAGES = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))  # (channels, blocks, first stride)

    def __init__(self, num_classes=1000, width=1.0, in_channels=3):
        super().__init__()
        c = make_divisible(32 * width)
        self.conv_stem = nn.Conv2d(in_channels, c, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        stages = []
        for channels, n, stride in self.STAGES:
            c_out = make_divisible(channels * width)
            blocks = []
            for i in range(n):
                blocks.append(_DepthwiseSeparable(c, c_out, stride if i == 0 else 1))
                c = c_out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.weight.size(0) ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = nn.functional.relu6(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        return self.classifier(torch.flatten(self.global_pool(x), 1))


class _HighwayLayer(nn.Module):
    """y = H(x)·T(x) + x·(1 − T(x)): H = act(`h`(x)), T = sigmoid(`t`(x)), `t`'s bias starting at `gate_bias`.
    `h` and `t` are Linear layers or 3×3 convs (padding 1) of the same width."""

    def __init__(self, make, activation, gate_bias):
        super().__init__()
        self.h = make()
        self.t = make()
        nn.init.constant_(self.t.bias, gate_bias)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x):
        t = torch.sigmoid(self.t(x))
        return self.act(self.h(x)) * t + x * (1 - t)


class HighwayMLP(nn.Module):
    """tchzoo `highway_mlp` (Srivastava et al. 2015): flatten, `stem` Linear to `width` + activation, `depth`
    highway layers `layers.{i}.h/t` (Linear width → width), `classifier`."""

    def __init__(self, in_features, num_classes=10, depth=10, width=50, activation="relu", gate_bias=-2.0):
        super().__init__()
        self.stem = nn.Linear(in_features, width)
        self.act = ACTIVATIONS[activation]()
        self.layers = nn.Sequential(*[
            _HighwayLayer(lambda: nn.Linear(width, width), activation, gate_bias) for _ in range(depth)])
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.act(self.stem(torch.flatten(x, 1)))
        return self.classifier(self.layers(x))


class HighwayCNN(nn.Module):
    """tchzoo `highway_cnn`: `stem` 3×3 conv (padding 1) to `width` + activation; `stages` stages of `depth`
    convolutional highway layers `stages.{s}.{i}.h/t` (3×3 convs, padding 1), a 2×2 max pool before every stage
    but the first; global average pool, `classifier`."""

    def __init__(self, in_channels=1, num_classes=10, stages=3, depth=2, width=32, activation="relu",
                 gate_bias=-2.0):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.act = ACTIVATIONS[activation]()
        self.stages = nn.ModuleList([
            nn.Sequential(*[_HighwayLayer(lambda: nn.Conv2d(width, width, 3, padding=1), activation, gate_bias)
                            for _ in range(depth)])
            for _ in range(stages)])
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.act(self.stem(x))
        for s, stage in enumerate(self.stages):
            if s > 0:
                x = nn.functional.max_pool2d(x, 2)
            x = stage(x)
        return self.classifier(x.mean((2, 3)))


def _inner_image_side(channels):
    """The height of the inner image of `channels` values: the largest divisor not above √channels."""
    return max(d for d in range(1, int(channels ** 0.5) + 1) if channels % d == 0)


class _CmpeSe(nn.Module):
    """Competitive SE (Hu et al. 2018, arXiv 1807.08920): the residual branch's and the identity's global
    averages u and v (C values each) decide the gate g, and the block returns residual · g + identity. The
    bottleneck width R is C / 16, at least 16 (16 at 16–64 channels).

    - "double FC" (the paper's CMPE-SE): [u, v] concatenated (2C), `fc1` (2C → R, no bias) + ReLU, `fc2`
      (R → C, no bias), sigmoid.
    - "inner imaging": u and v as a 2-channel h×w image (h·w = C, h the largest divisor ≤ √C), `conv` (3×3,
      padding 1, 2 → R channels, no bias) + `bn`, averaged over its channels and flattened back to C values, then
      `fc1` (C → R, no bias) + ReLU, `fc2` (R → C, no bias), sigmoid."""

    def __init__(self, channels, inner_imaging=False):
        super().__init__()
        reduced = max(16, channels // 16)
        self.inner_imaging = inner_imaging
        if inner_imaging:
            self.side = _inner_image_side(channels)
            self.conv = nn.Conv2d(2, reduced, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(reduced)
        self.fc1 = nn.Linear(channels if inner_imaging else 2 * channels, reduced, bias=False)
        self.fc2 = nn.Linear(reduced, channels, bias=False)

    def forward(self, residual, identity):
        u, v = residual.mean((2, 3)), identity.mean((2, 3))
        if self.inner_imaging:
            n, c = u.shape
            image = torch.stack((u, v), 1).reshape(n, 2, self.side, c // self.side)
            z = self.bn(self.conv(image)).mean(1).flatten(1)
        else:
            z = torch.cat((u, v), 1)
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))
        return residual * g[:, :, None, None] + identity


class _CmpeSeBlock(_CifarBasicBlock):
    """A CIFAR basic block whose residual branch is gated by competitive SE `se`, registered after `downsample`."""

    def __init__(self, inplanes, planes, stride, shortcut, inner_imaging):
        super().__init__(inplanes, planes, stride, shortcut)
        self.se = _CmpeSe(planes, inner_imaging)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.se(out, identity))


class CmpeSeResNet(CifarResNet):
    """tchzoo `cmpe_se_resnet20/32/44/56/110` (double FC) and `cmpe_se_ii_resnet…` (inner imaging): the CIFAR
    ResNet of `CifarResNet` (post-activation basic blocks, option A shortcuts by default) with competitive SE in
    every block."""

    def __init__(self, depth=20, num_classes=10, in_channels=3, shortcut="A", inner_imaging=False):
        self.inner_imaging = inner_imaging
        super().__init__(depth, num_classes, in_channels, shortcut)

    def _make_block(self, inplanes, planes, stride, shortcut):
        return _CmpeSeBlock(inplanes, planes, stride, shortcut, self.inner_imaging)
