"""Data augmentation of image batches on the device: horizontal flips and small shifts.

A batch of flattened ``side x side`` images (Fashion-MNIST: 784 = 28 x 28) is augmented as one
tensor operation, so augmentation costs a gather per batch, not a Python loop over images. The
random draws come from an explicit CPU generator (the one that orders the batches in
:func:`mlplab.train.fit`), so a seed gives the same augmented batches on every device and a
resumed run continues the same stream.

- ``flip``: each image is mirrored left-right with probability 1/2 (a shirt mirrored is a shirt);
- ``shift``: each image moves by ``dy, dx`` pixels drawn uniformly from ``-SHIFT .. SHIFT``, the
  uncovered border filled with 0 (the background of Fashion-MNIST);
- ``flip+shift``: both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlplab.errors import ConfigError

AUGMENTS = ("none", "flip", "shift", "flip+shift")
SHIFT = 2  # the largest shift in pixels, in each direction


def image_side(n_inputs: int) -> int:
    """The side of the square images of ``n_inputs`` pixels; a ConfigError when not square."""
    side = math.isqrt(n_inputs)
    if side * side != n_inputs:
        raise ConfigError(
            "augment", n_inputs, "augmentation flips and shifts square images: the inputs must have side^2 pixels"
        )
    return side


def augment(X: torch.Tensor, kind: str, generator: torch.Generator, shift: int = SHIFT) -> torch.Tensor:
    """``X`` (B, side*side) with each image flipped and/or shifted at random (a new tensor).

    ``kind`` is one of :data:`AUGMENTS`; ``"none"`` returns ``X`` itself. The draws (one flip
    bit and two offsets per image) are made on the CPU from ``generator`` and moved to X's device.
    """
    if kind == "none":
        return X
    if kind not in AUGMENTS:
        raise ConfigError("augment", kind, f"expected one of {', '.join(AUGMENTS)}")
    B, side = X.shape[0], image_side(X.shape[1])
    images = X.reshape(B, side, side)
    if "flip" in kind:
        flip = torch.rand(B, generator=generator) < 0.5
        images = torch.where(flip.to(X.device)[:, None, None], images.flip(-1), images)
    if "shift" in kind:
        offsets = torch.randint(0, 2 * shift + 1, (2, B), generator=generator).to(X.device)
        padded = F.pad(images, (shift, shift, shift, shift))
        span = torch.arange(side, device=X.device)
        rows = span[None, :] + offsets[0][:, None]  # (B, side): the padded rows each output row reads
        cols = span[None, :] + offsets[1][:, None]
        batch = torch.arange(B, device=X.device)[:, None, None]
        images = padded[batch, rows[:, :, None], cols[:, None, :]]
    return images.reshape(B, side * side)
