"""Fuzz every reader (and the HTTP API against its schema) for minutes, not the suite's seconds.

The targets are the suite's (``tests/fuzz_targets.py``): photos, uploads, arrays, pair images, the label formats,
layouts' name matching, videos, class tables, config files and ``--set``, model folders and checkpoints, each
input held to the same promise (a result, or a one-line ``CitysegError`` naming it; no other exception, hang,
memory out of proportion or file left). Each target gets an equal share of ``--minutes``, run as Hypothesis
batches of fresh seeds (``--seed`` makes the run repeatable); a broken promise is printed with the input
Hypothesis shrank it to, counted, and the target goes on.

With ``--api-minutes M``, ``cityseg serve`` (the built-in model, a token) runs on loopback and Schemathesis sends
each route valid and invalid requests for a share of M minutes: server errors, schema violations and answers
without the token are counted per route.

Usage:
    python benchmarks/fuzz.py --minutes 20 [--targets photo video ...] [--seed 1] [--api-minutes 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one input at a time: no thread pool to start per decode
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

BATCH = 200  # inputs per Hypothesis run; a fresh seed each


@dataclass
class Tally:
    """What one target (or API route) met: inputs, how they were answered, the promises broken."""

    name: str
    inputs: int = 0
    results: int = 0
    errors: int = 0
    seconds: float = 0.0
    broken: list[str] = field(default_factory=list)


def fuzz_target(name: str, seconds: float, seed: int) -> Tally:
    """Run one target in batches until ``seconds`` are spent."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    from fuzz_targets import TARGETS, BrokenPromise, check

    fuzzed, tally = TARGETS[name], Tally(name)
    strategy = fuzzed.inputs()
    started = time.monotonic()
    batch = 0
    while time.monotonic() - started < seconds:

        @seeded(seed * 100_000 + batch)
        @settings(
            max_examples=BATCH,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.generate, Phase.shrink),
        )
        @given(strategy)
        def run(value):
            if time.monotonic() - started > seconds:
                return  # the share is spent: the rest of the batch passes at once
            tally.inputs += 1
            message = check(fuzzed, value)
            tally.results += message is None
            tally.errors += message is not None

        try:
            run()
        except (BrokenPromise, BaseExceptionGroup) as exc:  # Hypothesis groups distinct failures of one batch
            for broken in getattr(exc, "exceptions", [exc]):
                tally.broken.append(str(broken).splitlines()[0])
                print(f"  broken promise in {name}: {tally.broken[-1]}", flush=True)
        batch += 1
    tally.seconds = time.monotonic() - started
    return tally


def fuzz_api(seconds: float, seed: int) -> list[Tally]:
    """Schemathesis against a served built-in model, each route and mode for an equal share of ``seconds``."""
    import threading

    import schemathesis
    from schemathesis.generation import GenerationMode

    from cityseg.engine import Segmenter
    from cityseg.serve import ServeSettings, make_server

    token = "fuzz-token"
    auth = {"Authorization": f"Bearer {token}"}
    server = make_server(Segmenter.from_pretrained("cityscapes-fpn-lite0"), "127.0.0.1", 0, ServeSettings(token=token))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    schema = schemathesis.openapi.from_url(f"{server.url}openapi.json", headers=auth)
    routes = [(path, method) for path, methods in schema.raw_schema["paths"].items() for method in methods]
    uploads = valid_uploads()
    share = seconds / (2 * len(routes))
    tallies = []
    for path, method in routes:
        for mode in ("positive", "negative"):
            # a schema cannot say "a decodable image": valid requests carry a real photo (video), their query
            # parameters generated; invalid ones a generated body
            upload = uploads.get(path, {}) if mode == "positive" else {}
            strategy = schema[path][method.upper()].as_strategy(generation_mode=GenerationMode(mode), **upload)
            tallies.append(fuzz_route(Tally(f"{method.upper()} {path} ({mode})"), strategy, share, seed, auth))
    server.stop()
    return tallies


def fuzz_route(tally: Tally, strategy, seconds: float, seed: int, auth: dict) -> Tally:
    """Send one route's generated requests for ``seconds`` in batches of fresh seeds; Schemathesis checks each."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as seeded

    from fuzz_targets import token_unless_negative

    started, batch = time.monotonic(), 0
    while time.monotonic() - started < seconds:

        @seeded(seed * 100_000 + batch)
        @settings(max_examples=50, database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(case):
            if time.monotonic() - started > seconds:
                return
            tally.inputs += 1
            headers = token_unless_negative(case, auth)
            response = case.call(headers=headers, timeout=120)
            tally.errors += response.status_code >= 400
            tally.results += response.status_code < 400
            case.validate_response(response, headers=headers)

        try:
            run()
        except Exception as exc:  # a Schemathesis failure group: a server error, a schema violation, an open route
            tally.broken.append(str(exc).strip().splitlines()[0])
            print(f"  {tally.name}: {tally.broken[-1]}", flush=True)
        batch += 1
    tally.seconds = time.monotonic() - started
    return tally


def valid_uploads() -> dict[str, dict]:
    """A photo and a short video the upload routes accept, as ``as_strategy`` keyword arguments."""
    import io
    import tempfile

    import numpy as np
    from PIL import Image

    from cityseg.synth import render_scene
    from cityseg.synth.drive import write_drive

    buffer = io.BytesIO()
    Image.fromarray(render_scene(np.random.default_rng(0), size=(256, 512))[0]).save(buffer, "JPEG")
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "drive.mp4"
        write_drive(video, seconds=1, fps=10, size=(128, 256), seed=1)
        clip = video.read_bytes()
    return {
        "/predict": {"body": buffer.getvalue(), "media_type": "image/jpeg"},
        "/predict/video": {"body": clip, "media_type": "application/octet-stream"},
    }


def table(tallies: list[Tally]) -> str:
    rows = [
        "| target | inputs | results | one-line errors | broken promises | inputs/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in tallies:
        rate = t.inputs / t.seconds if t.seconds else 0.0
        rows.append(f"| {t.name} | {t.inputs} | {t.results} | {t.errors} | {len(t.broken)} | {rate:.0f} |")
    total = sum(t.inputs for t in tallies)
    rows.append(f"| all | {total} | {sum(t.results for t in tallies)} | {sum(t.errors for t in tallies)} | "
                f"{sum(len(t.broken) for t in tallies)} | |")  # fmt: skip
    return "\n".join(rows)


def main() -> int:
    from fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="for all readers together")
    parser.add_argument("--targets", nargs="*", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--api-minutes", type=float, default=0.0)
    parser.add_argument("--json", type=Path, help="write the tallies here")
    args = parser.parse_args()
    tallies = []
    for name in args.targets:
        print(f"fuzzing {name} for {args.minutes * 60 / len(args.targets):.0f} s", flush=True)
        tallies.append(fuzz_target(name, args.minutes * 60 / len(args.targets), args.seed))
    if tallies:
        print(table(tallies), flush=True)
    write_tallies(args.json, tallies, [])  # the readers' figures are kept whatever the API part meets
    api = fuzz_api(args.api_minutes * 60, args.seed) if args.api_minutes > 0 else []
    if api:
        print(table(api))
    write_tallies(args.json, tallies, api)
    return 1 if any(t.broken for t in tallies + api) else 0


def write_tallies(path: Path | None, readers: list[Tally], api: list[Tally]) -> None:
    if path is not None:
        path.write_text(json.dumps({"readers": [asdict(t) for t in readers], "api": [asdict(t) for t in api]}))


if __name__ == "__main__":
    raise SystemExit(main())
