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
