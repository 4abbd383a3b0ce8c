"""mtopt-sd-examples with tiny settings in the real MuJoCo cell: layout, oracle labels, reuse.

Each clip's folder outcome must be the privileged oracle's at the clip's final frame (written
to meta.json by the generator), and the loader must read what the generator wrote.
"""

import json

import numpy as np
import pytest

from mtopt_core.sd_model import CAMERAS
from mtopt_core.tasks import load_task_registry
from mtopt_sd.sd_data import SDDataset, load_example_videos
from mtopt_sim import sd_examples as examples

TASKS = ["lift-carrot", "place-top-left"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sd_examples")
    argv = ["--out", str(out), "--cells", "4", "--clips", "1", "--frames", "3",
            "--size", "48", "--tasks", ",".join(TASKS), "--quiet"]  # fmt: skip
    assert examples.main(argv) == 0
    return out


def test_layout_and_oracle_labels(generated):
    manifest = json.loads((generated / "manifest.json").read_text())
    (cell_stats,) = manifest["cells"]
    assert cell_stats["cell"] == 4 and cell_stats["given_up"] == []
    assert cell_stats["written"] == 4  # 2 tasks x (success, failure) x 1 clip
    for task in TASKS:
        for outcome in ("success", "failure"):
            clip = generated / task / outcome / "cell4" / "clip000"
            assert sorted(p.name for p in clip.iterdir()) == sorted(
                [f"{c}.mp4" for c in CAMERAS] + ["meta.json"]
            )
            meta = json.loads((clip / "meta.json").read_text())
            assert meta["task"] == task
            assert meta["label"] is (outcome == "success")
            assert meta["oracle_final"][task] is meta["label"]  # label = final-frame oracle
            assert 1 <= meta["frames"] <= 3
    success_meta = json.loads(
        (generated / "lift-carrot" / "success" / "cell4" / "clip000" / "meta.json").read_text()
    )
    assert any(name.startswith("carrot") for name in success_meta["objects"]["lifted"])
    placed = json.loads(
        (generated / "place-top-left" / "success" / "cell4" / "clip000" / "meta.json").read_text()
    )["objects"]["placed"]
    assert list(placed) == ["top-left"]


def test_loader_reads_generated_examples(generated):
    registry = load_task_registry()
    loaded = load_example_videos(generated, registry, image_size=32)
    metas = {
        p.parent: json.loads(p.read_text()) for p in generated.glob("*/*/cell4/clip000/meta.json")
    }
    assert len(loaded) == sum(m["frames"] for m in metas.values())
    assert {ex.cell for ex in loaded} == {4}
    dataset = SDDataset.from_examples(loaded, registry)
    carrot = registry.index("lift-carrot")
    successes = dataset.known[:, carrot] & (dataset.targets[:, carrot] > 0.5)
    assert (
        int(successes.sum())
        == metas[generated / "lift-carrot" / "success" / "cell4" / "clip000"]["frames"]
    )
    # The scene is not blank: the three cameras see different images.
    images = dataset.images[0].float()
    assert float((images[0] - images[1]).abs().mean()) > 5
    assert np.isfinite(images.numpy()).all()


def test_existing_clips_are_kept(generated):
    clip = generated / "lift-carrot" / "success" / "cell4" / "clip000" / "overhead.mp4"
    before = clip.stat().st_mtime_ns
    argv = ["--out", str(generated), "--cells", "4", "--clips", "1", "--frames", "3",
            "--size", "48", "--tasks", "lift-carrot", "--quiet"]  # fmt: skip
    assert examples.main(argv) == 0
    assert clip.stat().st_mtime_ns == before
    manifest = json.loads((generated / "manifest.json").read_text())
    assert manifest["cells"][0]["existing"] == 2 and manifest["cells"][0]["written"] == 0


def test_a_stopped_cell_records_nothing_more(generated, tmp_path):
    """What an orphaned pool worker does: existing clips are counted, no new clip is recorded."""
    config = examples.GeneratorConfig(frames=3, size=48, min_frames=3)
    stats = examples.generate_cell(
        generated, 4, 2, config, None, ["lift-carrot"], progress=False, stop=lambda: True
    )
    assert stats["stopped"] and stats["written"] == 0 and stats["existing"] == 1
    assert not (generated / "lift-carrot" / "success" / "cell4" / "clip001").exists()


def test_bad_arguments(tmp_path, capsys):
    assert examples.main(["--out", str(tmp_path), "--tasks", "lift-cloth"]) == 2
    assert "unknown task 'lift-cloth'" in capsys.readouterr().err
    assert examples.main(["--out", str(tmp_path), "--cells", "6-2"]) == 2
    assert "cells must look like" in capsys.readouterr().err


def test_place_aim_points_keep_clear_of_the_dividers():
    config = examples.GeneratorConfig(size=32)
    recorder = examples.ClipRecorder(2, load_task_registry(), config)
    try:
        recorder.env.respawn(seed=5)  # a plate yaw other than the default
        origin, rotation = recorder.cell.plate_frame()
        for section in ("bottom", "top-left", "top-right"):
            for _ in range(30):
                xy = recorder.plate_point(section)
                local = rotation.T @ (np.array([*xy, origin[2]]) - origin)
                assert recorder.cell.plate_section_of(np.array([*xy, origin[2]])) == section
                assert abs(local[0]) >= config.section_margin_m - 1e-9
                if local[0] > 0:  # the top quarters: also clear of the stem (y = 0)
                    assert abs(local[1]) >= config.section_margin_m - 1e-9
    finally:
        recorder.close()
