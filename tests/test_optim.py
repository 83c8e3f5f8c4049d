"""Optimisers and learning-rate schedules by name (cityseg.optim)."""

from __future__ import annotations

import pytest
import torch

from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.optim import OPTIMIZERS, SCHEDULES, LRSchedule, make_optimizer


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_registered_optimizer_builds_and_steps(name):
    config = Config()
    config.optim.optimizer = name
    config.optim.fused = name != "sgd"
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer([weight], config.optim)
    weight.sum().backward()
    optimizer.step()
    assert (weight < 1).all()
    assert optimizer.defaults["lr"] == config.optim.lr


def test_unknown_optimizer_and_schedule_are_refused():
    config = Config()
    config.optim.optimizer = "lbfgs"  # set directly: Config.set would refuse it already
    with pytest.raises(CitysegError, match="adam, adamw, sgd"):
        make_optimizer([torch.nn.Parameter(torch.ones(1))], config.optim)
    with pytest.raises(CitysegError, match="unknown schedule"):
        LRSchedule("step", 10)


def test_schedules_decay_from_one_to_zero():
    assert set(SCHEDULES) == {"none", "cosine", "poly"}
    poly = LRSchedule("poly", total_steps=110, warmup_steps=10)
    assert poly(0) == pytest.approx(0.01) and poly(10) == 1.0 and poly(110) == 0.0
    assert poly(60) == pytest.approx(0.5**0.9)
    assert LRSchedule("none", 10)(9) == 1.0
