"""The book's way of training on Fashion-MNIST, as a baseline for the benchmarks.

``d2l.load_data_fashion_mnist`` wraps torchvision's FashionMNIST, whose ``ToTensor`` turns one
uint8 image at a time into a float tensor inside ``DataLoader(num_workers=4)`` workers; the
book's ``train_ch3`` then accumulates metrics per batch with ``float()`` and measures test
accuracy over another DataLoader every epoch. torchvision is not needed: the per-item conversion
is written out below.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


class PerItemImages(torch.utils.data.Dataset):
    """One uint8 image at a time becomes a (1, 28, 28) float tensor in [0, 1], as ToTensor does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]).float().div(255).unsqueeze(0), int(self.labels[i])


def book_mlp(hidden: tuple[int, ...], dropout: tuple[float, ...] = ()) -> nn.Sequential:
    """The book's concise MLP with normal(0, 0.01) weights and zero biases."""
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [784, *hidden]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout[i]))
    layers.append(nn.Linear(sizes[-1], 10))
    net = nn.Sequential(*layers)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    return net


def train_book_style(
    raw, net: nn.Module, lr: float, epochs: int, device: str = "cpu", seed: int = 0
) -> tuple[float, float]:
    """``train_ch3`` with the book's DataLoaders; returns (seconds incl. loader start-up, test accuracy)."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train_iter = torch.utils.data.DataLoader(
        PerItemImages(raw.train_images, raw.train_labels), 256, shuffle=True, num_workers=4
    )
    test_iter = torch.utils.data.DataLoader(
        PerItemImages(raw.test_images, raw.test_labels), 256, shuffle=False, num_workers=4
    )
    net.to(device)
    loss = nn.CrossEntropyLoss(reduction="none")
    updater = torch.optim.SGD(net.parameters(), lr=lr)
    correct = total = 0
    for _ in range(epochs):
        net.train()
        metric = [0.0, 0.0, 0.0]
        for X, y in train_iter:
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)
            updater.zero_grad()
            l.mean().backward()
            updater.step()
            metric[0] += float(l.detach().sum())
            metric[1] += float((y_hat.argmax(dim=1) == y).sum())
            metric[2] += y.numel()
        net.eval()
        correct = total = 0
        with torch.no_grad():
            for X, y in test_iter:
                X, y = X.to(device), y.to(device)
                correct += float((net(X).argmax(dim=1) == y).sum())
                total += y.numel()
    return time.perf_counter() - t0, correct / total
