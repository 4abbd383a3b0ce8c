"""SD augmentation: shapes and ranges kept, seeded, which parts are shared across views."""

import pytest
import torch

from mtopt_sd.augment import AugmentConfig, augment_views, random_affine, shadow_masks


def batch(seed=0, b=6, v=3, size=32):
    return torch.rand((b, v, 3, size, size), generator=torch.Generator().manual_seed(seed))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_shape_dtype_range_and_input_untouched():
    x = batch()
    before = x.clone()
    y = augment_views(x, AugmentConfig(brightness=0.9, shadow_probability=1.0), gen(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(x, before)
    assert not torch.allclose(y, x)
    # Non-square images and a single view work too.
    z = augment_views(torch.rand(2, 1, 3, 24, 40), None, gen(0))
    assert z.shape == (2, 1, 3, 24, 40)


def test_seeded():
    x = batch()
    a = augment_views(x, None, gen(7))
    b = augment_views(x, None, gen(7))
    c = augment_views(x, None, gen(8))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.01


def test_none_config_is_identity():
    x = batch()
    assert torch.equal(augment_views(x, AugmentConfig.none(), gen(0)), x)


def test_scene_brightness_shared_across_views_exposure_per_view():
    x = torch.full((4, 3, 3, 8, 8), 0.4)
    only_scene = AugmentConfig(
        crop_min_scale=1.0, max_rotation_deg=0.0, brightness=0.5, view_brightness=0.0,
        colour_gain=0.0, saturation=0.0, shadow_probability=0.0,
    )  # fmt: skip
    y = augment_views(x, only_scene, gen(1))
    gains = y.mean(dim=(2, 3, 4)) / 0.4  # (B, V)
    assert torch.allclose(gains, gains[:, :1].expand_as(gains), atol=1e-6)  # same per example
    assert gains[:, 0].std() > 0.05  # different between examples
    per_view = AugmentConfig(**{**only_scene.to_dict(), "view_brightness": 0.2})
    gains = augment_views(x, per_view, gen(1)).mean(dim=(2, 3, 4)) / 0.4
    assert (gains.max(dim=1).values - gains.min(dim=1).values).min() > 1e-3


def test_colour_cast_and_saturation_shared_across_views():
    rgb = torch.tensor([0.6, 0.4, 0.2]).view(1, 1, 3, 1, 1).expand(5, 3, 3, 8, 8).contiguous()
    colour = AugmentConfig(
        crop_min_scale=1.0, max_rotation_deg=0.0, brightness=0.0, view_brightness=0.0,
        colour_gain=0.3, saturation=0.5, shadow_probability=0.0,
    )  # fmt: skip
    y = augment_views(rgb, colour, gen(3))
    pixel = y[:, :, :, 0, 0]  # (B, V, 3): every view of an example gets the same colour
    assert torch.allclose(pixel, pixel[:, :1].expand_as(pixel), atol=1e-6)
    assert (pixel[:, 0] - rgb[:, 0, :, 0, 0]).abs().max() > 0.02  # the colour did change
    assert pixel[:, 0].std(dim=0).max() > 0.01  # differently per example
    grey = torch.full((2, 3, 3, 8, 8), 0.5)  # a grey image has no saturation to change
    only_saturation = AugmentConfig(**{**colour.to_dict(), "colour_gain": 0.0})
    assert torch.allclose(augment_views(grey, only_saturation, gen(3)), grey, atol=1e-6)


def test_flat_recolour_changes_backgrounds_not_texture():
    x = torch.empty(4, 3, 3, 32, 32)
    x[:] = torch.tensor([0.2, 0.3, 0.7]).view(1, 1, 3, 1, 1)  # a flat blue "bin"
    checker = (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2
    x[..., 12:20, 12:20] = checker.float() * 0.9  # a small textured "object"
    only = AugmentConfig(
        crop_min_scale=1.0, max_rotation_deg=0.0, brightness=0.0, view_brightness=0.0,
        colour_gain=0.0, saturation=0.0, flat_recolour=0.5, shadow_probability=0.0,
    )  # fmt: skip
    y = augment_views(x, only, gen(6))
    background = (y - x)[..., :6, :6].abs().mean()
    texture = (y - x)[..., 14:18, 14:18].abs().mean()
    assert background > 0.05 and texture < 0.2 * background
    corner = y[:, :, :, 0, 0]  # (B, V, 3): same new background colour in every view
    assert torch.allclose(corner, corner[:, :1].expand_as(corner), atol=1e-6)
    assert torch.equal(augment_views(x, AugmentConfig.none(), gen(6)), x)


def test_geometry_independent_per_view():
    # Identical views of a gradient image come out different: crop/rotation drawn per view.
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 1, 32).expand(2, 3, 3, 32, 32).contiguous()
    geometry = AugmentConfig(
        brightness=0.0, view_brightness=0.0, colour_gain=0.0, saturation=0.0,
        shadow_probability=0.0,
    )  # fmt: skip
    y = augment_views(ramp, geometry, gen(2))
    assert (y[:, 0] - y[:, 1]).abs().mean() > 1e-3
    assert (y[:, 1] - y[:, 2]).abs().mean() > 1e-3
    # A constant image stays constant (crop window inside the image, reflection padding).
    flat = torch.full((2, 3, 3, 32, 32), 0.3)
    assert torch.allclose(augment_views(flat, geometry, gen(2)), flat, atol=1e-6)


def test_affine_crop_window_inside_image():
    cfg = AugmentConfig(crop_min_scale=0.6, max_rotation_deg=0.0)
    theta = random_affine(1000, cfg, gen(3))
    scale = theta[:, 0, 0]
    assert float(scale.min()) >= 0.6 and float(scale.max()) <= 1.0
    assert bool((theta[:, :, 2].abs() <= (1.0 - scale)[:, None] + 1e-6).all())


def test_shadows_are_convex_and_darken():
    cfg = AugmentConfig(shadow_vertices=6)
    masks = shadow_masks(200, 32, 32, cfg, gen(4))
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert 0.02 < float(masks.mean()) < 0.8
    # Convexity: every row of every mask is one contiguous run of ones.
    for row in masks.flatten(0, 1):
        idx = torch.nonzero(row).flatten()
        if len(idx):
            assert int(idx[-1] - idx[0]) + 1 == len(idx)
    only_shadow = AugmentConfig(
        crop_min_scale=1.0, max_rotation_deg=0.0, brightness=0.0, view_brightness=0.0,
        colour_gain=0.0, saturation=0.0, shadow_probability=1.0,
    )  # fmt: skip
    x = torch.full((8, 3, 3, 32, 32), 0.8)
    y = augment_views(x, only_shadow, gen(5))
    assert float(y.max()) <= 0.8 + 1e-6
    darkened = (y < 0.8 - 1e-4).float().mean(dim=(2, 3, 4))
    assert bool((darkened > 0).all())  # probability 1: every view has a shadow
    assert float(y.min()) >= 0.8 * (1 - cfg.shadow_darkness_max) - 1e-6


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(B, V, C, H, W\)"):
        augment_views(torch.rand(3, 3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        augment_views(torch.zeros((1, 3, 3, 8, 8), dtype=torch.uint8))
    with pytest.raises(ValueError, match="crop_min_scale"):
        AugmentConfig(crop_min_scale=0.0)
    with pytest.raises(ValueError, match="shadow_vertices"):
        AugmentConfig(shadow_vertices=2)


def test_rotation_limit_per_view():
    # Only the first view may turn; a disc at the centre of a square keeps its pixels while
    # an off-centre mark moves, and the views with limit 0 are untouched.
    x = torch.zeros(8, 3, 3, 33, 33)
    x[..., 4:8, 15:18] = 1.0  # a mark above the centre
    only_turn = AugmentConfig(
        crop_min_scale=1.0, max_rotation_deg=0.0, view_max_rotation_deg=(180.0, 0.0, 0.0),
        brightness=0.0, view_brightness=0.0, colour_gain=0.0, saturation=0.0,
        shadow_probability=0.0,
    )  # fmt: skip
    y = augment_views(x, only_turn, gen(4))
    assert torch.allclose(y[:, 1:], x[:, 1:], atol=1e-6)
    moved = (y[:, 0] - x[:, 0]).abs().flatten(1).mean(1)
    assert (moved > 0.01).sum() >= 6  # most of 8 examples turned noticeably
    with pytest.raises(ValueError, match="view_max_rotation_deg"):
        augment_views(x, AugmentConfig(view_max_rotation_deg=(10.0, 10.0)), gen(0))
    with pytest.raises(ValueError, match="view_max_rotation_deg"):
        AugmentConfig(view_max_rotation_deg=(200.0, 0.0, 0.0))
