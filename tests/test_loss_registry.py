"""Loss terms by name (cityseg.loss_registry): ``optim.loss`` checked against the registry."""

from __future__ import annotations

import pytest

from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.loss_registry import loss_names, loss_terms


def test_loss_names_are_checked():
    assert loss_terms("ce+dice") == ["ce", "dice"]
    assert {"ce", "ce+dice", "ohem+dice"} <= set(loss_names())
    for bad in ("focal", "ce+ce", "ce+"):
        with pytest.raises(CitysegError, match="unknown loss"):
            loss_terms(bad)
    with pytest.raises(CitysegError, match="choose one of"):
        Config().set("optim.loss", "focal")
