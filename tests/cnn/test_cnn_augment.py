"""Batch augmentation (SPEC N6): per-image rotations, zooms and flips, reproducible with a seed."""

from __future__ import annotations

import math

import numpy as np
import torch

from morphomass.cnn.augment import augment_batch, random_affine_matrices


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_identity_when_everything_is_switched_off() -> None:
    images = torch.rand(3, 1, 16, 16)
    out = augment_batch(images, generator=_generator(), rotation_deg=0, zoom=(1, 1), flips=False)
    torch.testing.assert_close(out, images, atol=1e-6, rtol=0)


def test_flips_only_give_one_of_the_four_mirror_images() -> None:
    images = torch.rand(32, 1, 9, 9)
    out = augment_batch(images, generator=_generator(), rotation_deg=0, zoom=(1, 1), flips=True)
    seen = set()
    for image, result in zip(images, out, strict=True):
        candidates = {
            "none": image,
            "x": image.flip(-1),
            "y": image.flip(-2),
            "xy": image.flip(-1).flip(-2),
        }
        match = [k for k, c in candidates.items() if torch.allclose(result, c, atol=1e-6)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {"none", "x", "y", "xy"}


def test_each_image_gets_its_own_rotation() -> None:
    image = torch.zeros(1, 1, 33, 33)
    image[..., 16, 16:30] = 1.0  # a bar pointing right from the centre
    out = augment_batch(image.expand(8, -1, -1, -1), generator=_generator(), zoom=(1, 1), flips=False)
    angles = []
    yy, xx = torch.meshgrid(torch.arange(33.0) - 16, torch.arange(33.0) - 16, indexing="ij")
    for result in out[:, 0]:
        weight = result / result.sum()
        angles.append(math.atan2(float((weight * yy).sum()), float((weight * xx).sum())))
    assert len({round(a, 2) for a in angles}) == 8  # eight different orientations


def test_zoom_changes_apparent_size() -> None:
    coords = torch.arange(32.0) - 15.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / (2 * 3.0**2))[None, None]
    for zoom, ratio in ((0.7, 1 / 0.7), (1.3, 1 / 1.3)):
        out = augment_batch(blob, generator=_generator(), rotation_deg=0, zoom=(zoom, zoom), flips=False)
        # second moment of the light: the blob's width scales as 1 / zoom
        width = float(torch.sqrt((out[0, 0] * (xx**2 + yy**2)).sum() / out[0, 0].sum()))
        width0 = float(torch.sqrt((blob[0, 0] * (xx**2 + yy**2)).sum() / blob[0, 0].sum()))
        assert abs(width / width0 - ratio) < 0.05 * ratio


def test_parameters_stay_in_range() -> None:
    theta = random_affine_matrices(2000, generator=_generator(), zoom=(0.7, 1.3), flips=True)
    scale = torch.sqrt(torch.abs(torch.linalg.det(theta[:, :, :2])))
    assert scale.min() >= 0.7 - 1e-6 and scale.max() <= 1.3 + 1e-6
    assert scale.min() < 0.72 and scale.max() > 1.28
    mirrored = (torch.linalg.det(theta[:, :, :2]) < 0).float().mean()
    assert 0.4 < mirrored < 0.6  # exactly one of the two flips (half of the draws) mirrors the image
    assert torch.all(theta[:, :, 2] == 0)  # no shifts: the galaxy stays centred


def test_same_seed_same_batch() -> None:
    images = torch.rand(4, 1, 20, 20)
    a = augment_batch(images, generator=_generator(5))
    b = augment_batch(images, generator=_generator(5))
    c = augment_batch(images, generator=_generator(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert np.isfinite(a.numpy()).all()
