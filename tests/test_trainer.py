"""Trainer pieces that need no process group."""

from types import SimpleNamespace

import torch

from sparsetrain.trainer import Trainer


def test_reject_factor_skips_steps_whose_aggregate_jumps():
    state = SimpleNamespace(reject_factor=100.0, rejected_steps=0, _accepted_norm=None)
    norms = [1.0, 50.0, 6000.0, 4000.0, 1e6]  # squared norms: accept, accept, reject, accept, reject
    decisions = [Trainer._accept(state, torch.tensor([n**0.5])) for n in norms]
    assert decisions == [True, True, False, True, False]
    assert state.rejected_steps == 2


def test_no_reject_factor_accepts_everything():
    state = SimpleNamespace(reject_factor=None, rejected_steps=0, _accepted_norm=None)
    assert all(Trainer._accept(state, torch.tensor([x])) for x in (1.0, 1e30, float("inf")))
