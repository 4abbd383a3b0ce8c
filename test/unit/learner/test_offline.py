"""mtopt-learn: ingest + train + atomic checkpoints, --resume continues the step count."""

import json

import pytest

from mtopt_core.checkpoint import qnet_from_checkpoint, read_checkpoint
from mtopt_learner.offline import main, parse_impersonation

CHEAP = ["--net", "tiny", "--batch-size", "4", "--cem-population", "6", "--cem-elites", "2",
         "--cem-iterations", "1", "--no-progress", "--threads", "1"]  # fmt: skip


def learn(capsys, bags, out, *extra):
    code = main(["--bags", str(bags), "--out", str(out), *CHEAP, *extra])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1]) if code == 0 else None
    return code, summary, captured.err


@pytest.fixture
def bags(tmp_path, write_bag):
    directory = tmp_path / "bags"
    write_bag(directory, "ep0", task="lift-carrot", seed=0, success={"lift-carrot": True})
    write_bag(directory, "ep1", task="lift-any", seed=1, success={"lift-any": False})
    write_bag(directory, "ep2", task="place-any", seed=2, success={"place-any": True})
    write_bag(directory, "ep3", task="lift-any", seed=3, aborted=True)
    return directory


def test_trains_checkpoints_and_resumes(tmp_path, capsys, bags, registry):
    out = tmp_path / "run"
    code, summary, err = learn(capsys, bags, out, "--steps", "3", "--checkpoint-every", "2")
    assert code == 0, err
    assert summary["steps"] == 3 and summary["steps_this_run"] == 3
    assert summary["episodes_ingested"] == 3 and summary["episodes_skipped"] == 1
    assert summary["episodes_quarantined"] == 0 and summary["final_loss"] > 0
    ckpts = out / "checkpoints"
    assert summary["checkpoint"] == str(ckpts / "qnet_3.ckpt")
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["qnet_2.ckpt", "qnet_3.ckpt"]
    assert (ckpts / "latest").read_text().strip() == "qnet_3.ckpt"
    qnet, ckpt = qnet_from_checkpoint(ckpts / "qnet_3.ckpt", registry.names)
    assert ckpt.step == 3 and ckpt.qnet_config.image_size == 16
    assert ckpt.file_sha256 == summary["sha256"]
    assert "skipped 1: aborted" in err

    # without --resume an existing run is not overwritten
    code, _, err = learn(capsys, bags, out, "--steps", "3")
    assert code == 2 and "pass --resume" in err

    code, summary, err = learn(
        capsys, bags, out, "--steps", "6", "--checkpoint-every", "2", "--resume"
    )
    assert code == 0, err
    assert "resumed" in err and "at step 3" in err
    assert summary["steps"] == 6 and summary["steps_this_run"] == 3
    assert summary["episodes_new"] == 0 and summary["episodes_restored"] == 3
    assert summary["episodes_ingested"] == 3
    assert read_checkpoint(ckpts / "qnet_6.ckpt").step == 6
    # the newest 3 are kept (2 was dropped), latest points at the newest
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == [
        "qnet_3.ckpt", "qnet_4.ckpt", "qnet_6.ckpt"
    ]  # fmt: skip
    assert not (ckpts / "qnet_2.ckpt.sha256").exists()
    assert (ckpts / "latest").read_text().strip() == "qnet_6.ckpt"


def test_a_resume_with_another_action_frame_refuses_the_runs_checkpoint(tmp_path, capsys, bags):
    out = tmp_path / "run"
    code, summary, err = learn(capsys, bags, out, "--steps", "2", "--action-frame", "tool")
    assert code == 0, err
    assert read_checkpoint(summary["checkpoint"]).metadata["policy_settings"]["action_frame"] == (
        "tool"
    )
    code, _, err = learn(capsys, bags, out, "--steps", "4", "--resume")  # the default: base
    assert code == 2 and "trained for action_frame 'tool' (this run trains for 'base')" in err
    assert read_checkpoint(out / "checkpoints" / "qnet_2.ckpt").step == 2  # nothing lost


def test_image_size_resizes_the_recorded_observations(tmp_path, capsys, bags):
    out = tmp_path / "run"  # the bags hold 16 px observations
    code, summary, err = learn(capsys, bags, out, "--steps", "2", "--image-size", "8")
    assert code == 0, err
    assert read_checkpoint(summary["checkpoint"]).qnet_config.image_size == 8
    code, summary, err = learn(capsys, bags, out, "--steps", "3", "--resume")  # the ckpt's size
    assert code == 0, err
    assert read_checkpoint(summary["checkpoint"]).qnet_config.image_size == 8
    code, _, err = learn(capsys, bags, out, "--steps", "4", "--resume", "--image-size", "16")
    assert code == 2 and "takes 8 px images, --image-size is 16" in err
    code, _, err = learn(capsys, bags, tmp_path / "o2", "--steps", "1", "--image-size", "4")
    assert code == 2 and "--image-size must be 0 or >= 8, got 4" in err


def test_clear_errors(tmp_path, capsys, write_bag):
    empty = tmp_path / "empty"
    (empty / "ep0.part").mkdir(parents=True)  # only a bag still being written
    code, _, err = learn(capsys, empty, tmp_path / "o1", "--steps", "1")
    assert code == 2 and f"no complete episode bags in {empty}" in err

    aborted = tmp_path / "aborted"
    write_bag(aborted, "ep0", aborted=True)
    code, _, err = learn(capsys, aborted, tmp_path / "o2", "--steps", "1")
    assert code == 2 and "no usable episodes" in err and "1 skipped" in err

    code, _, err = learn(capsys, aborted, tmp_path / "o3", "--steps", "1", "--resume")
    assert code == 2 and "--resume: no checkpoint" in err

    with pytest.raises(SystemExit) as exit_info:
        main(["--bags", str(aborted), "--out", str(tmp_path), "--steps", "1",
              "--impersonation", "skill_stochastic:1"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "argument --impersonation" in capsys.readouterr().err


def test_impersonation_option_syntax():
    assert parse_impersonation("skill") == "skill"
    assert parse_impersonation("skill_stochastic:1,0.25") == "skill_stochastic(1, 0.25)"
    assert parse_impersonation("skill_stochastic(1, 0.25)") == "skill_stochastic(1, 0.25)"
    for bad in ("skills", "skill_stochastic:1", "skill_stochastic:1,2", "skill_stochastic:a,b"):
        with pytest.raises(Exception, match=r"impersonation|PS|PF"):
            parse_impersonation(bad)


def test_ctrl_c_writes_the_steps_done_so_far(tmp_path, capsys, bags, monkeypatch):
    from mtopt_core.trainer import Trainer

    real_step = Trainer.step

    def step_then_interrupt(self):
        if self.step_count == 5:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step_then_interrupt)
    out = tmp_path / "run"
    code, _, err = learn(capsys, bags, out, "--steps", "20", "--checkpoint-every", "2")
    assert code == 130 and "interrupted" in err
    ckpts = out / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "qnet_5.ckpt"
    assert read_checkpoint(ckpts / "qnet_5.ckpt").step == 5


def test_trainer_options_reach_the_trainer_config():
    from mtopt_learner.offline import build_parser, trainer_config_from_args

    argv = ["--bags", "b", "--out", "o", "--steps", "1", "--conservative-weight", "0.5", "--gamma"]
    argv.append("0.8")
    cfg = trainer_config_from_args(build_parser().parse_args(argv))
    assert cfg.conservative_weight == 0.5 and cfg.gamma == 0.8
    default = trainer_config_from_args(build_parser().parse_args(argv[:6]))
    assert default.conservative_weight == 1.0  # the measured default (config.DEFAULT_*)
    with pytest.raises(ValueError, match="conservative_weight"):
        trainer_config_from_args(build_parser().parse_args([*argv[:6], "--conservative-weight",
                                                            "-1"]))  # fmt: skip
