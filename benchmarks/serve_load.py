"""Load on ``hybridrec serve``: a bounded number of requests at a fixed concurrency, with latencies.

A server process is started on a free localhost port for a saved model (``--model DIR``; without
it a MovieLens-100K model is trained with the defaults of ``hybridrec train --dataset movielens-100k
--min-rating 4`` into a temporary folder), or an already running one is used (``--url``). Then
``--requests`` requests (after ``--warmup`` ones that are not counted) are sent by ``--concurrency``
client threads, each over its own keep-alive connection, in a seeded mix of endpoints:

* ``recommend``: ``POST /recommend`` for one random known user, k = 20;
* ``history``: ``POST /recommend`` for an anonymous history of 3-10 random items, k = 20;
* ``similar``: ``POST /similar`` for one random item, k = 20;
* ``search``: ``POST /search`` for one of a few queries, k = 20 (the text encoder runs per request).

It prints the throughput, p50 / p99 latency (overall and per endpoint) and the number of errors
(any answer but 200, or a failed connection); the exit code is 1 when there was any error.

    python benchmarks/serve_load.py --requests 5000 --concurrency 16
    python benchmarks/serve_load.py --model runs/movielens-100k/model --threads 4 --mix recommend=1
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIX = "recommend=0.6,history=0.15,similar=0.15,search=0.1"
QUERIES = ("star wars", "a love story in paris", "funny animated film for children", "space adventure",
           "crime thriller in new york", "horror", "musical", "documentary about war")
K = 20


def parse_mix(text: str) -> dict[str, float]:
    """``"recommend=0.6,search=0.4"`` -> shares by endpoint kind (normalised to sum 1)."""
    mix = {}
    for part in text.split(","):
        name, _, share = part.partition("=")
        if name not in ("recommend", "history", "similar", "search"):
            raise SystemExit(f"--mix: unknown request kind {name!r}")
        mix[name] = float(share or 1)
    total = sum(mix.values())
    return {name: share / total for name, share in mix.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request_json(connection: http.client.HTTPConnection, method: str, path: str, body=None) -> tuple[int, object]:
    payload = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    text = response.read()
    return response.status, (json.loads(text) if text else None)


def start_server(model: str, threads: int, torch_threads: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "hybridrec.cli", "serve", "--model", model, "--port",
                                    str(port), "--threads", str(threads), "--torch-threads", str(torch_threads)],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            if request_json(connection, "GET", "/health")[0] == 200:
                return process, url
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit(f"no /health after 180 s:\n{log_path.read_text()}")


def train_default_model(folder: Path) -> None:
    """``hybridrec train --dataset movielens-100k --min-rating 4 --out folder`` (the defaults)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hybridrec.cli", "train", "--dataset", "movielens-100k", "--min-rating", "4",
                    "--out", str(folder)], cwd=REPO_ROOT, check=True)
    print(f"trained the default MovieLens-100K model in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def make_requests(n: int, mix: dict[str, float], users: list, items: list, seed: int) -> list[tuple[str, str, dict]]:
    """``n`` seeded ``(kind, path, body)`` requests in the proportions of ``mix``."""
    rng = random.Random(seed)
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=n)
    requests = []
    for kind in kinds:
        if kind == "recommend":
            requests.append((kind, "/recommend", {"user_ids": [rng.choice(users)], "k": K}))
        elif kind == "history":
            requests.append((kind, "/recommend", {"history": rng.sample(items, rng.randint(3, 10)), "k": K}))
        elif kind == "similar":
            requests.append((kind, "/similar", {"item_ids": [rng.choice(items)], "k": K}))
        else:
            requests.append((kind, "/search", {"query": rng.choice(QUERIES), "k": K}))
    return requests


def run_load(url: str, requests: list[tuple[str, str, dict]], concurrency: int) -> tuple[list, float]:
    """Send ``requests`` from ``concurrency`` threads; return ``[(kind, seconds, status or error name)]``
    and the wall seconds."""
    parsed = urllib.parse.urlsplit(url)
    results, lock, position = [], threading.Lock(), iter(range(len(requests)))

    def worker():
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            kind, path, body = requests[index]
            started = time.perf_counter()
            try:
                status, _ = request_json(connection, "POST", path, body)
            except (OSError, http.client.HTTPException, ValueError) as err:
                status = type(err).__name__
                connection.close()
                connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                results.append((kind, elapsed, status))
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def report(results: list, wall_seconds: float, concurrency: int) -> int:
    """Print throughput, p50 / p99 (all and per kind) and errors; return the number of errors."""
    errors = [status for _, _, status in results if status != 200]
    latencies = np.array([seconds for _, seconds, _ in results]) * 1000
    print(f"{len(results):,} requests, {concurrency} concurrent, {wall_seconds:.1f} s: "
          f"{len(results) / wall_seconds:.1f} requests/s, p50 {np.percentile(latencies, 50):.1f} ms, "
          f"p99 {np.percentile(latencies, 99):.1f} ms, errors {len(errors)}")
    print(f"{'kind':<10} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for kind in sorted({kind for kind, _, _ in results}):
        own = [(seconds, status) for k, seconds, status in results if k == kind]
        ms = np.array([seconds for seconds, _ in own]) * 1000
        print(f"{kind:<10} {len(own):>9,} {np.percentile(ms, 50):>8.1f} {np.percentile(ms, 99):>8.1f} "
              f"{sum(status != 200 for _, status in own):>7}")
    if errors:
        print(f"error kinds: {sorted(set(map(str, errors)))}")
    return len(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="saved model folder (default: train MovieLens-100K with the defaults)")
    source.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200, help="requests sent first and not counted")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"request kinds and shares (default {DEFAULT_MIX})")
    parser.add_argument("--threads", type=int, default=4, help="the server's --threads (default 4)")
    parser.add_argument("--torch-threads", type=int, default=1, help="the server's --torch-threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix)
    with tempfile.TemporaryDirectory(prefix="hybridrec-serve-load-") as scratch:
        process = None
        if args.url:
            url = args.url.rstrip("/")
        else:
            model = args.model
            if model is None:
                model = str(Path(scratch) / "model")
                train_default_model(Path(model))
            process, url = start_server(model, args.threads, args.torch_threads, Path(scratch) / "server.log")
        try:
            parsed = urllib.parse.urlsplit(url)
            health = request_json(http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30), "GET",
                                  "/health")[1]["model"]
            users, items = model_ids(health["path"])
            print(f"model {health['class']} ({health['n_users']:,} users, {health['n_items']:,} items) at {url}; "
                  f"server --threads {args.threads} --torch-threads {args.torch_threads}; mix {args.mix}")
            requests = make_requests(args.warmup + args.requests, mix, users, items, args.seed)
            run_load(url, requests[:args.warmup], args.concurrency)
            results, wall_seconds = run_load(url, requests[args.warmup:], args.concurrency)
            n_errors = report(results, wall_seconds, args.concurrency)
        finally:
            if process is not None:
                process.terminate()
                code = process.wait(timeout=60)
                print(f"server stopped by SIGTERM, exit code {code}")
    return 1 if n_errors else 0


def model_ids(folder: str) -> tuple[list, list]:
    """The user and item ids of the saved model in ``folder`` (JSON-ready), from its id tables."""
    import pandas as pd

    plain = lambda values: [value.item() if hasattr(value, "item") else value for value in values]
    return (plain(pd.read_parquet(Path(folder) / "user_ids.parquet")["id"]),
            plain(pd.read_parquet(Path(folder) / "item_ids.parquet")["id"]))


if __name__ == "__main__":
    raise SystemExit(main())
