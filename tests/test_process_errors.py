"""Errors from other processes (labelling pool, DataLoader workers) reach the user as one line."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cityseg.errors import CitysegError
from cityseg.process_errors import from_worker, guarded_pool, one_line


def failing_init(message: str) -> None:
    raise CitysegError(message)


def quiet_init() -> None:
    pass


def square(value: int) -> int:
    if value == 3:
        raise ValueError("three is not allowed\nsecond line")
    return value * value


def die(value: int) -> int:
    os._exit(1)  # a worker killed from outside looks the same to the pool


def test_a_failing_initializer_gives_its_one_line_not_a_broken_pool():
    with pytest.raises(CitysegError, match=r"^cache folder x/y is not writable$"):  # noqa: SIM117
        with guarded_pool(2, failing_init, ("cache folder x/y is not writable",), "labelling") as pool_map:
            list(pool_map(square, range(4)))


def test_a_task_error_names_the_item_on_one_line():
    with pytest.raises(CitysegError, match=r"^3: three is not allowed$"):  # noqa: SIM117
        with guarded_pool(2, quiet_init, (), "labelling") as pool_map:
            list(pool_map(square, range(5)))
    with guarded_pool(2, quiet_init, (), "labelling") as pool_map:
        assert list(pool_map(square, [1, 2, 4])) == [1, 4, 16]


def test_a_dead_worker_is_a_one_line_error():
    with pytest.raises(CitysegError, match="a labelling worker process died"):  # noqa: SIM117
        with guarded_pool(2, quiet_init, (), "labelling") as pool_map:
            list(pool_map(die, range(4)))


class Broken(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        if index == 2:
            raise CitysegError("photos/2.jpg: truncated JPEG; re-download it or pass --skip-bad")
        return torch.zeros(1)


def test_a_dataloader_worker_error_comes_back_as_its_own_line():
    with pytest.raises(CitysegError) as error:
        list(DataLoader(Broken(), batch_size=1, num_workers=1))
    assert from_worker(error.value) and "Traceback" in str(error.value)  # what PyTorch hands back
    assert one_line(error.value) == (
        "photos/2.jpg: truncated JPEG; re-download it or pass --skip-bad (in DataLoader worker process 0)"
    )


def test_the_cli_reports_an_unwritable_cache_from_labelling_workers_on_one_line(tiny_pairs, tmp_path, capsys):
    from cityseg.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["label", str(tiny_pairs), "--cache-dir", str(blocker / "cache"), "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("cityseg: error: ") and str(blocker) in err
    assert "Traceback" not in err and "BrokenProcessPool" not in err


# ---- DDP ranks: the process group's own store carries the first failure to rank 0 -----------------------


def _rank(rank: int, port: int, failing: int, error: Exception, queue) -> None:
    import torch.distributed as dist

    from cityseg.process_errors import settle

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        if rank == failing:
            raise error
        dist.broadcast(torch.zeros(4), src=failing)  # waits for the failing rank, as a DDP step would
    except Exception as exc:
        queue.put((rank, settle(exc)))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


BAD_FILE = CitysegError("photos/7.jpg: truncated JPEG; re-download it or pass --skip-bad")


@pytest.mark.parametrize(
    ("failing", "error", "rank_zero_prints"),
    [
        (1, BAD_FILE, "photos/7.jpg: truncated JPEG; re-download it or pass --skip-bad (in rank 1)"),
        (0, BAD_FILE, "photos/7.jpg: truncated JPEG; re-download it or pass --skip-bad (in rank 0)"),
        (1, KeyError("a bug"), "rank 1 stopped on the error above"),  # its traceback, printed by rank 1
        (0, KeyError("a bug"), None),  # None: the CLI re-raises, so rank 0 shows the traceback itself
    ],
    ids=["bad-file-in-rank-1", "bad-file-in-rank-0", "bug-in-rank-1", "bug-in-rank-0"],
)
def test_a_rank_failure_is_printed_once_by_rank_zero(failing, error, rank_zero_prints, capfd):
    import torch.multiprocessing as mp

    context = mp.get_context("fork")  # fork: the children reuse the imported torch (CPU-only, gloo)
    queue = context.Queue()
    port = _free_port()
    ranks = [context.Process(target=_rank, args=(rank, port, failing, error, queue)) for rank in range(2)]
    for process in ranks:
        process.start()
    said = dict(queue.get(timeout=60) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
    assert said == {0: rank_zero_prints, 1: ""}  # "": the CLI prints nothing there and exits 2
    bug_traceback = "KeyError: 'a bug'" in capfd.readouterr().err
    assert bug_traceback == (failing == 1 and isinstance(error, KeyError))
