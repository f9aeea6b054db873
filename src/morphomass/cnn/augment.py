"""On-the-fly augmentation of image batches (SPEC N6): random rotation, zoom and flips, one draw per image.

The whole batch is resampled at once with :func:`torch.nn.functional.affine_grid` and
:func:`~torch.nn.functional.grid_sample` on the device that holds it (the GPU when training there), so the
data loader needs no worker processes. torchvision's ``RandomAffine`` would draw one set of parameters per
call, i.e. the same rotation for a whole batch, or need a call per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment_batch", "random_affine_matrices"]


def random_affine_matrices(
    n: int,
    *,
    generator: torch.Generator,
    rotation_deg: float = 360.0,
    zoom: tuple[float, float] = (0.7, 1.3),
    flips: bool = True,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw ``n`` random 2x3 sampling matrices (rotation, isotropic zoom, horizontal and vertical flips).

    Parameters
    ----------
    n : int
        Number of images.
    generator : torch.Generator
        Source of randomness, on ``device``.
    rotation_deg : float
        Rotation angles are uniform in [0, rotation_deg) degrees.
    zoom : (float, float)
        Zoom factors are uniform in [zoom[0], zoom[1]]; a factor above 1 samples a larger field (zooms out).
    flips : bool
        Flip each axis with probability 1/2.
    device : torch.device or str

    Returns
    -------
    torch.Tensor, shape (n, 2, 3), float32
        Matrices mapping output to input coordinates, for :func:`torch.nn.functional.affine_grid`.
    """
    angle = torch.rand(n, generator=generator, device=device) * math.radians(rotation_deg)
    scale = zoom[0] + torch.rand(n, generator=generator, device=device) * (zoom[1] - zoom[0])
    if flips:
        signs = torch.randint(0, 2, (n, 2), generator=generator, device=device).float() * 2 - 1
    else:
        signs = torch.ones(n, 2, device=device)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 1] = cos * signs[:, 0], -sin * signs[:, 1]
    theta[:, 1, 0], theta[:, 1, 1] = sin * signs[:, 0], cos * signs[:, 1]
    return theta


def augment_batch(
    images: torch.Tensor,
    *,
    generator: torch.Generator,
    rotation_deg: float = 360.0,
    zoom: tuple[float, float] = (0.7, 1.3),
    flips: bool = True,
) -> torch.Tensor:
    """Rotate, zoom and flip every image of a batch by its own random amounts (bilinear, reflected borders).

    Parameters
    ----------
    images : torch.Tensor, shape (B, C, S, S), floating
    generator : torch.Generator
        On the same device as ``images``.
    rotation_deg, zoom, flips
        See :func:`random_affine_matrices`.

    Returns
    -------
    torch.Tensor, shape (B, C, S, S), same dtype
        Pixels sampled outside the image are reflected back inside, so the sky noise continues to the edge.
    """
    theta = random_affine_matrices(
        images.shape[0],
        generator=generator,
        rotation_deg=rotation_deg,
        zoom=zoom,
        flips=flips,
        device=images.device,
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
