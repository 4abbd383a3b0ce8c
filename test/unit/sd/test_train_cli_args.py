"""mtopt-sd-train argument parsing that does not need data."""

import pytest

from mtopt_sd.augment import AugmentConfig
from mtopt_sd.train_cli import parse_augment


def test_augment_overrides_change_only_the_named_fields():
    config = parse_augment("flat_recolour=0.4, shadow_probability=0.25")
    assert config.flat_recolour == 0.4 and config.shadow_probability == 0.25
    assert config.brightness == AugmentConfig().brightness
    assert parse_augment("") == AugmentConfig()


@pytest.mark.parametrize(
    "text, match",
    [("bogus=1", "bogus"), ("flat_recolour", "KEY=VALUE"), ("flat_recolour=x", "float")],
)
def test_augment_overrides_name_the_bad_item(text, match):
    with pytest.raises(ValueError, match=match):
        parse_augment(text)


def test_augment_override_out_of_range_is_refused_by_the_config():
    with pytest.raises(ValueError, match="flat_recolour"):
        parse_augment("flat_recolour=3")


def test_crops_presets_and_explicit_boxes():
    from mtopt_sd.train_cli import CROP_PRESETS, parse_crops

    assert parse_crops("sim") == CROP_PRESETS["sim"] and parse_crops("none") == ()
    assert parse_crops("0,0,1,1;0,0,.5,.5;.5,.5,1,1")[1] == (0.0, 0.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="--crops"):
        parse_crops("0,0,one,1")


def test_per_view_augment_values():
    assert parse_augment("view_max_rotation_deg=180/8/8").view_max_rotation_deg == (180, 8, 8)
    with pytest.raises(ValueError, match="180/8/8"):
        parse_augment("view_max_rotation_deg=a/b")
