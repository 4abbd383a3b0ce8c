"""SD data: label sharing into loss masks, video reading at 5 Hz, holdout split, balancing,
Table III metrics."""

import numpy as np
import pytest
import torch

from mtopt_core.sd_model import CAMERAS
from mtopt_core.tasks import load_task_registry, parse_task_registry
from mtopt_sd.sd_data import (
    BalancedSampler,
    SDDataError,
    SDDataset,
    SDExample,
    balanced_bce_loss,
    examples_from_episodes,
    load_example_videos,
    masked_bce_loss,
    mean_rate,
    misgraded,
    parse_cell,
    read_video,
    split_by_cell,
    table3,
    table3_csv,
    table3_markdown,
    write_table3,
)

LIFTS = ["lift-banana", "lift-bottle", "lift-sausage", "lift-milk", "lift-box", "lift-can"]
LIFTS.append("lift-carrot")
PLACES = ["place-bottom", "place-top-left", "place-top-right"]


@pytest.fixture(scope="module")
def registry():
    return load_task_registry()


def example(labels, cell=0, source="x"):
    return SDExample(np.zeros((3, 8, 8, 3), np.uint8), cell, labels, source)


def labels_of(dataset, i):
    """{task: bool} for the known entries of row i, and the set of direct tasks."""
    known = {
        t: bool(dataset.targets[i, j] > 0.5)
        for j, t in enumerate(dataset.task_names)
        if dataset.known[i, j]
    }
    direct = {t for j, t in enumerate(dataset.task_names) if dataset.direct[i, j]}
    return known, direct


def test_label_sharing_expected_labels(registry):
    cases = [
        (
            {"lift-carrot": True},
            {"lift-any": True, "lift-carrot": True} | {t: False for t in LIFTS[:-1]},
        ),
        ({"lift-banana": False}, {"lift-banana": False}),  # implies nothing else
        ({"lift-any": True}, {"lift-any": True}),  # which object is unknown
        ({"lift-any": False}, {"lift-any": False} | dict.fromkeys(LIFTS, False)),
        (
            {"place-top-left": True},
            {"place-any": True, "place-top-left": True, "place-bottom": False}
            | {"place-top-right": False},
        ),
        ({"place-any": False}, {"place-any": False} | dict.fromkeys(PLACES, False)),
        (  # an episode graded for two skills at once
            {"lift-milk": True, "place-any": False},
            {"lift-any": True, "lift-milk": True}
            | {t: False for t in LIFTS if t != "lift-milk"}
            | {"place-any": False}
            | dict.fromkeys(PLACES, False),
        ),
    ]
    dataset = SDDataset.from_examples([example(given) for given, _ in cases], registry)
    assert dataset.task_names == registry.names
    for i, (given, expected) in enumerate(cases):
        known, direct = labels_of(dataset, i)
        assert known == expected, given
        assert direct == set(given)
        # Unknown outcomes carry no target: masked out of the loss.
        assert int(dataset.known[i].sum()) == len(expected)


def test_label_conflict_names_the_example(registry):
    bad = example({"lift-carrot": True, "lift-any": False}, source="clip-42#3")
    with pytest.raises(SDDataError, match="clip-42#3.*contradict"):
        SDDataset.from_examples([example({"lift-any": True}), bad], registry)
    with pytest.raises(SDDataError, match="unknown task 'lift-cloth'"):
        SDDataset.from_examples([example({"lift-cloth": True})], registry)


def test_masked_loss_ignores_unknown_entries():
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    known = torch.tensor([[True, True, False], [False, True, False]])
    logits = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    base = masked_bce_loss(logits, targets, known)
    changed = logits.clone()
    changed[~known] += 100.0
    assert torch.equal(masked_bce_loss(changed, targets, known), base)
    changed[0, 0] -= 5.0  # a known entry does count
    assert masked_bce_loss(changed, targets, known) > base


def test_balanced_loss_weighs_outcomes_per_task_equally():
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    # Task 0: 1 success, 3 failures; task 1: failures only; task 2: nothing known.
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    known = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=torch.bool)
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    per = bce(logits, targets, reduction="none")
    task0 = 0.5 * per[0, 0] + 0.5 * per[1:, 0].mean()
    task1 = per[:2, 1].mean()
    assert balanced_bce_loss(logits, targets, known) == pytest.approx(float(task0 + task1) / 2)
    changed = logits.clone()
    changed[:, 2] += 50.0  # unknown entries do not count
    assert balanced_bce_loss(changed, targets, known) == balanced_bce_loss(logits, targets, known)
    assert masked_bce_loss(logits, targets, known) != balanced_bce_loss(logits, targets, known)


def test_parse_cell():
    assert [parse_cell(n) for n in ("3", "cell3", "cell_12", "cell-0")] == [3, 3, 12, 0]
    with pytest.raises(SDDataError, match="not a cell id"):
        parse_cell("robotA")


def test_read_video_samples_at_5hz(tmp_path, write_clip):
    frames = [np.full((16, 24, 3), 10 * i, np.uint8) for i in range(20)]  # 2 s at 10 fps
    write_clip(tmp_path, {"overhead": frames}, fps=10.0)
    got = read_video(tmp_path / "overhead.mp4", rate_hz=5.0)
    assert len(got) == 10
    # Every second frame (lossy codec: compare brightness loosely).
    means = [float(f.mean()) for f in got]
    assert all(abs(m - 20 * k) < 8 for k, m in enumerate(means)), means
    assert len(read_video(tmp_path / "overhead.mp4", rate_hz=20.0)) == 20  # never upsampled


def test_load_example_videos_layout(tmp_path, small_registry, write_clip):
    colours = {
        "overhead": (200, 0, 0),
        "left_shoulder": (0, 200, 0),
        "right_shoulder": (0, 0, 200),
    }
    views = {c: [np.full((40, 60, 3), rgb, np.uint8)] * 4 for c, rgb in colours.items()}
    views["right_shoulder"] = views["right_shoulder"][:3]  # shortest camera bounds the clip
    write_clip(tmp_path / "lift-red" / "success" / "cell2" / "a", views)
    write_clip(tmp_path / "lift-any" / "failure" / "5" / "b", views)
    examples = load_example_videos(tmp_path, small_registry, image_size=32)
    assert len(examples) == 6
    by_task = {}
    for ex in examples:
        assert ex.images.shape == (3, 32, 32, 3) and ex.images.dtype == np.uint8
        # Camera order is CAMERAS order and colours arrive as RGB.
        for v, camera in enumerate(CAMERAS):
            assert np.abs(ex.images[v].mean((0, 1)) - colours[camera]).max() < 12
        by_task.setdefault((tuple(ex.labels.items()), ex.cell), 0)
        by_task[(tuple(ex.labels.items()), ex.cell)] += 1
    assert by_task == {((("lift-red", True),), 2): 3, ((("lift-any", False),), 5): 3}
    assert len(load_example_videos(tmp_path, small_registry, 32, cells=[5])) == 3
    # A clip the generator is still writing (`.part`, one camera so far) is not read.
    partial = tmp_path / "lift-red" / "success" / "cell2" / "c.part"
    write_clip(partial, {"overhead": views["overhead"]})
    assert len(load_example_videos(tmp_path, small_registry, image_size=32)) == 6


def test_load_example_videos_errors(tmp_path, small_registry, write_clip):
    views = {c: [np.zeros((8, 8, 3), np.uint8)] * 2 for c in CAMERAS}
    write_clip(tmp_path / "lift-cloth" / "success" / "0" / "a", views)
    with pytest.raises(SDDataError, match="unknown task 'lift-cloth'"):
        load_example_videos(tmp_path, small_registry)
    (tmp_path / "lift-cloth").rename(tmp_path / "lift-red")
    (tmp_path / "lift-red" / "success" / "0" / "a" / "left_shoulder.mp4").unlink()
    with pytest.raises(SDDataError, match="missing camera video left_shoulder.mp4"):
        load_example_videos(tmp_path, small_registry)
    (tmp_path / "lift-red" / "maybe").mkdir()
    with pytest.raises(SDDataError, match="'success' or 'failure'"):
        load_example_videos(tmp_path, small_registry)
    with pytest.raises(SDDataError, match="does not exist"):
        load_example_videos(tmp_path / "nope", small_registry)


def test_examples_from_episodes(registry):
    images = [np.full((120, 160, 3), v, np.uint8) for v in (10, 20, 30)]
    (ex,) = examples_from_episodes([(images, 4, {"place-any": True})], image_size=48)
    assert ex.images.shape == (3, 48, 48, 3) and ex.cell == 4
    assert ex.images[:, 0, 0, 0].tolist() == [10, 20, 30]
    dataset = SDDataset.from_examples([ex], registry)
    assert labels_of(dataset, 0)[0] == {"place-any": True}
    with pytest.raises(SDDataError, match="expected 3 images"):
        examples_from_episodes([(images[:2], 0, {})])
    with pytest.raises(SDDataError, match="left_shoulder image must be uint8"):
        examples_from_episodes([([images[0], images[1].astype(np.float32), images[2]], 0, {})])


def test_holdout_split_never_leaks(registry):
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 7, size=300)
    examples = [example({"lift-any": bool(i % 2)}, int(c), f"e{i}") for i, c in enumerate(cells)]
    dataset = SDDataset.from_examples(examples, registry)
    for holdout in range(7):
        train, held = split_by_cell(dataset, holdout)
        assert holdout not in set(train.cells.tolist())
        assert set(held.cells.tolist()) == {holdout}
        assert len(train) + len(held) == len(dataset)
        assert not set(train.sources) & set(held.sources)
        assert len(held) == int((cells == holdout).sum())
    with pytest.raises(SDDataError, match="holdout cell 9 has no examples"):
        split_by_cell(dataset, 9)


def test_balanced_sampler_balances_tasks_and_outcomes():
    reg = parse_task_registry(
        {"skills": {"s": ""}, "tasks": [{"name": "a", "skill": "s"}, {"name": "b", "skill": "s"}]}
    )
    examples = (
        [example({"a": False})] * 100
        + [example({"a": True})] * 5
        + [example({"b": True})] * 20
        + [example({"b": False})] * 1
    )
    dataset = SDDataset.from_examples(examples, reg)
    sampler = BalancedSampler(dataset, torch.Generator().manual_seed(0))
    index = sampler.sample(40000)
    groups = [(0, 100), (100, 105), (105, 125), (125, 126)]
    shares = [float(((index >= lo) & (index < hi)).float().mean()) for lo, hi in groups]
    assert shares == pytest.approx([0.25] * 4, abs=0.01)

    def draw(seed):
        return BalancedSampler(dataset, torch.Generator().manual_seed(seed)).sample(100)

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_balanced_sampler_single_outcome_task():
    reg = parse_task_registry(
        {"skills": {"s": ""}, "tasks": [{"name": "a", "skill": "s"}, {"name": "b", "skill": "s"}]}
    )
    dataset = SDDataset.from_examples([example({"a": True})] * 3, reg)
    sampler = BalancedSampler(dataset, torch.Generator().manual_seed(0))
    assert sampler.single_outcome_tasks == ["a"]
    assert set(sampler.sample(50).tolist()) <= {0, 1, 2}


def test_table3_metrics(registry):
    # Holdout: 2 lift-carrot successes, 2 lift-banana failures, 1 lift-any failure.
    labels = [
        {"lift-carrot": True},
        {"lift-carrot": True},
        {"lift-banana": False},
        {"lift-banana": False},
        {"lift-any": False},
    ]
    examples = [example(x, source=f"clip{i}") for i, x in enumerate(labels)]
    dataset = SDDataset.from_examples(examples, registry)
    p = torch.full((5, len(registry)), 0.1)
    col = registry.index
    p[0, col("lift-carrot")] = p[1, col("lift-carrot")] = 0.9
    p[0, col("lift-any")] = 0.9  # example 1's lift-any: an implied success graded failure
    p[2, col("lift-banana")] = 0.7  # a recorded lift-banana failure graded success
    p[0, col("lift-banana")] = 0.6  # a lift-carrot success triggering lift-banana
    rows = {r.task: r for r in table3(p, dataset)}

    carrot = rows["lift-carrot"]
    assert (carrot.total, carrot.success, carrot.failure) == (3, 2, 1)
    assert (carrot.false_negative.errors, carrot.false_negative.count) == (0, 2)
    assert carrot.false_positive.count == 0 and carrot.false_positive.value is None
    assert (carrot.other_false_positive.errors, carrot.other_false_positive.count) == (0, 1)

    banana = rows["lift-banana"]
    assert (banana.total, banana.success, banana.failure) == (5, 0, 5)
    assert (banana.false_positive.errors, banana.false_positive.count) == (1, 2)
    assert (banana.other_false_positive.errors, banana.other_false_positive.count) == (1, 3)
    assert banana.false_negative.value is None

    any_ = rows["lift-any"]
    assert (any_.total, any_.success, any_.failure) == (3, 2, 1)
    assert (any_.false_positive.errors, any_.false_positive.count) == (0, 1)
    assert (any_.other_false_negative.errors, any_.other_false_negative.count) == (1, 2)
    assert rows["place-any"].total == 0

    assert mean_rate(list(rows.values()), "false_positive") == pytest.approx(0.5 / 2)
    md = table3_markdown(list(rows.values()), "holdout")
    assert "| lift-banana | 5 | 0 | 5 | 0% | n/a | 50.0% (1/2) | n/a | 33.3% (1/3) |" in md
    csv_lines = table3_csv(list(rows.values())).splitlines()
    assert csv_lines[0].startswith("task,total,success,failure,success_rate,false_negative_rate")
    assert len(csv_lines) == 1 + len(registry)
    with pytest.raises(ValueError, match="do not match"):
        table3(p[:3], dataset)

    # The error list has exactly the errors the table counts, each with its example.
    errors = misgraded(p, dataset)
    assert [(e["source"], e["task"], e["label"], e["recorded"]) for e in errors] == [
        ("clip0", "lift-banana", "failure", False),
        ("clip1", "lift-any", "success", False),
        ("clip2", "lift-banana", "failure", True),
    ]
    assert errors[0]["probability"] == pytest.approx(0.6)


def test_write_table3_atomic_files(tmp_path, registry):
    dataset = SDDataset.from_examples([example({"lift-any": True})], registry)
    rows = table3(torch.full((1, len(registry)), 0.9), dataset)
    md, csv_path = write_table3(rows, tmp_path / "out" / "table3.v1")
    assert md.name == "table3.v1.md" and csv_path.name == "table3.v1.csv"
    assert "lift-any" in md.read_text() and csv_path.read_text().count("\n") == 13
    assert sorted(p.name for p in md.parent.iterdir()) == ["table3.v1.csv", "table3.v1.md"]
