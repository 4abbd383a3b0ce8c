"""CI-sized end-to-end training: synthetic example videos -> mtopt-sd-train -> Table III + ckpt.

Four cells of synthetic clips (each cell has its own lighting); cell 3 is held out. The
detector must learn the three tasks well enough to grade the unseen cell almost perfectly.
"""

import csv

import torch

from mtopt_core.sd_model import load_checkpoint
from mtopt_sd import train_cli


def test_smoke_training_run(tmp_path, small_tasks_file, example_folder_factory, capsys):
    torch.set_num_threads(1)
    data = example_folder_factory(tmp_path / "examples", cells=range(4), clips=2, frames=4)
    out = tmp_path / "ckpt" / "sd.ckpt"
    argv = [
        "--data", str(data), "--holdout-cell", "3", "--out", str(out),
        "--tasks-file", str(small_tasks_file), "--steps", "200", "--batch-size", "32",
        "--image-size", "32", "--no-progress", "--version", "smoke",
        "--errors", str(tmp_path / "errors.csv"),
    ]  # fmt: skip
    assert train_cli.main(argv) == 0
    printed = capsys.readouterr()
    assert "| lift-red |" in printed.out and "wrote checkpoint" in printed.err

    loaded = load_checkpoint(out, expected_tasks=("lift-any", "lift-red", "lift-blue"))
    assert loaded.version.startswith("smoke@")
    assert loaded.meta["holdout_cell"] == 3 and loaded.meta["train_cells"] == [0, 1, 2]
    assert (out.parent / "sd.ckpt.sha256").read_text().split()[0] == loaded.sha256
    assert any((out.parent / "runs" / "sd.ckpt").glob("events.out.tfevents.*"))

    with open(out.parent / "sd.ckpt.table3.csv") as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    assert (out.parent / "sd.ckpt.table3.md").read_text().startswith("## SD holdout: cell 3")
    # Held-out cell 3: per clip kind 2 clips x 4 frames = 8 examples.
    #   lift-red/success (8): lift-any T, lift-red T, lift-blue F (shared)
    #   lift-blue/success (8): lift-any T, lift-blue T, lift-red F (shared)
    #   lift-any/failure (8): all three F (lift-red, lift-blue shared)
    #   lift-red/failure (8): lift-red F only
    counts = {t: (int(r["total"]), int(r["success"]), int(r["failure"])) for t, r in rows.items()}
    assert counts == {"lift-any": (24, 16, 8), "lift-red": (32, 8, 24), "lift-blue": (24, 8, 16)}
    assert int(rows["lift-red"]["false_positive_count"]) == 8  # recorded failures: wrong object
    assert int(rows["lift-red"]["other_false_positive_count"]) == 16
    assert int(rows["lift-any"]["other_false_negative_count"]) == 16
    with open(tmp_path / "errors.csv") as f:
        errors = list(csv.DictReader(f))
    error_count = sum(
        int(r[f"{c}_errors"])
        for r in rows.values()
        for c in ("false_negative", "false_positive", "other_false_negative",
                  "other_false_positive")
    )  # fmt: skip
    assert len(errors) == error_count  # one row per error the table counts
    assert all("cell3" in e["source"] for e in errors)
    for task, r in rows.items():
        for column in ("false_negative", "false_positive", "other_false_negative",
                       "other_false_positive"):  # fmt: skip
            if r[f"{column}_rate"]:
                assert float(r[f"{column}_rate"]) <= 0.1, (task, column, r)


def test_cli_errors(tmp_path, small_tasks_file, example_folder_factory, capsys):
    data = example_folder_factory(tmp_path / "examples", cells=[0, 1], clips=1, frames=1)
    base = ["--data", str(data), "--out", str(tmp_path / "x.ckpt"),
            "--tasks-file", str(small_tasks_file), "--steps", "1", "--no-progress"]  # fmt: skip
    assert train_cli.main([*base, "--holdout-cell", "5"]) == 2
    assert "holdout cell 5 has no examples; cells present: [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x.ckpt").exists()
    assert train_cli.main([*base, "--holdout-cell", "1", "--cells", "1"]) == 2
    assert "at least two cells" in capsys.readouterr().err
    assert train_cli.main([*base[:-1], "--holdout-cell", "0", "--data", str(tmp_path)]) == 2
    assert "unknown task 'examples'" in capsys.readouterr().err
