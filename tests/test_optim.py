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


def test_cosine_and_poly_fall_warmup_rises_and_the_total_can_change():
    cosine = LRSchedule("cosine", total_steps=100)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)
    assert cosine(150) == pytest.approx(0.0)
    poly = LRSchedule("poly", total_steps=10)
    values = [poly(step) for step in range(11)]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0
    warm = LRSchedule("none", total_steps=10, warmup_steps=4)
    assert warm(0) == pytest.approx(0.01) and warm(2) < warm(3) < 1.0 and warm(4) == 1.0 and warm(9) == 1.0
    poly.total_steps = 20  # the budget planner stretches or shrinks a running schedule
    assert poly(10) == pytest.approx(0.5**0.9)
