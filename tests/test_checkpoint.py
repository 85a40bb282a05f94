"""Checkpoint files: atomic, complete only when every rank wrote, loaded safely."""

import pytest
import torch

from sparsetrain import checkpoint


def test_a_step_counts_only_once_every_rank_wrote_and_it_was_marked(tmp_path):
    checkpoint.save_rank(tmp_path, 10, 0, {"x": torch.arange(3)})
    assert checkpoint.latest(tmp_path) is None  # rank 1 missing, not marked
    with pytest.raises(RuntimeError, match=r"lacks ranks \[1\]"):
        checkpoint.mark_complete(tmp_path, 10, world_size=2)
    checkpoint.save_rank(tmp_path, 10, 1, {"x": torch.arange(3) + 1})
    checkpoint.mark_complete(tmp_path, 10, world_size=2)
    assert checkpoint.latest(tmp_path) == checkpoint.step_dir(tmp_path, 10)
    # A later step whose write was interrupted (a temporary file, no COMPLETE) is ignored.
    later = checkpoint.step_dir(tmp_path, 20)
    later.mkdir()
    (later / "rank0.pt.tmp").write_bytes(b"half a file")
    assert checkpoint.latest(tmp_path) == checkpoint.step_dir(tmp_path, 10)
    state = checkpoint.load_rank(checkpoint.latest(tmp_path), 1, world_size=2)
    assert torch.equal(state["x"], torch.arange(3) + 1)
    assert not list(tmp_path.rglob("*.tmp"))[1:]  # only the planted one


def test_loading_refuses_another_world_size_and_unsafe_objects(tmp_path):
    checkpoint.save_rank(tmp_path, 5, 0, {"x": torch.zeros(1)})
    checkpoint.mark_complete(tmp_path, 5, world_size=1)
    with pytest.raises(RuntimeError, match="same dist.nproc"):
        checkpoint.load_rank(checkpoint.latest(tmp_path), 0, world_size=2)
    checkpoint.save_rank(tmp_path, 6, 0, {"x": object()})  # not loadable with weights_only=True
    checkpoint.mark_complete(tmp_path, 6, world_size=1)
    with pytest.raises(Exception, match="[Ww]eights only"):
        checkpoint.load_rank(checkpoint.latest(tmp_path), 0, world_size=1)


def test_only_the_two_newest_complete_checkpoints_are_kept(tmp_path):
    for step in (10, 20, 30):
        checkpoint.save_rank(tmp_path, step, 0, {"step": step})
        checkpoint.mark_complete(tmp_path, step, world_size=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000000020", "step_000000030"]
