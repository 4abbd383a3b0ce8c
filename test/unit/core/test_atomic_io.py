"""atomic_write_bytes: the target holds the old bytes or the new ones, never a mix."""

import pytest

from mtopt_core.atomic_io import atomic_write_bytes, fsync_dir


def test_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "weights.ckpt"  # missing parent directory is created
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in target.parent.iterdir()] == ["weights.ckpt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "weights.ckpt"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # fails inside the write, after the temp exists
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.ckpt"]


def test_fsync_dir_needs_an_existing_directory(tmp_path):
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
