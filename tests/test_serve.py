"""``hybridrec serve`` as a real server process on localhost, queried with a real HTTP client.

One small hybrid (dim 16, 2 epochs, MovieLens-100K positives with titles and genres; the last 10
movies held back to be added over HTTP) and one EASE model are fitted per module; the server
is started as ``python -m hybridrec.cli serve``, every endpoint is compared with the same call on
the fitted model in this process, bad inputs must get a 4xx naming the field, a reload must swap
models while requests keep succeeding, and SIGTERM must stop it with exit code 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (pip install 'hybridrec[serve]') is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (pip install 'hybridrec[serve]') is not installed")

from evaluation.baselines import EASERecommender
from hybridrec import HybridRecommender
from hybridrec.cli import main as cli_main

REPO_ROOT = Path(__file__).resolve().parents[1]
HELD_BACK = 10  # the last movies, added over HTTP
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(base: str, method: str, path: str, body=None, *, raw: bytes | None = None, timeout: float = 60):
    """``(status, parsed JSON or text)`` of one request; 4xx/5xx answers are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text, kind = response.status, response.read().decode(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        status, text, kind = err.code, err.read().decode(), err.headers.get("content-type", "")
    return status, (json.loads(text) if "json" in kind else text)


def post(base: str, path: str, body=None, **kwargs):
    return call(base, "POST", path, body, **kwargs)


def log_tail(server) -> str:
    return server[2].read_text()[-3000:]


@pytest.fixture(scope="module")
def models(movielens, tmp_path_factory):
    """The hybrid (saved to ``a/``) and an EASE model (``b/``) on MovieLens-100K positives."""
    root = tmp_path_factory.mktemp("serve-models")
    positives = movielens.interactions[movielens.interactions["rating"] >= 4]
    last = np.sort(movielens.items["item_id"].unique())[-HELD_BACK:]
    known = movielens.items.loc[~movielens.items["item_id"].isin(last), ["item_id", "title", "genres"]]
    hybrid = HybridRecommender(dim=16, epochs=2, eval_every=1, tune_ease_l2=False, tune_block_weights=False, seed=0,
                               progress=False, device="cpu")
    hybrid.fit(positives[~positives["item_id"].isin(last)], items=known, item_attr_cols=["genres"],
               item_text_cols=["title"])
    ease = EASERecommender().fit(positives)
    held_back = movielens.items.loc[movielens.items["item_id"].isin(last), ["item_id", "title", "genres"]]
    return hybrid, hybrid.save(root / "a"), ease, ease.save(root / "b"), held_back


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """A ``hybridrec serve`` process on a free port: ``(process, base url, log file)``."""
    _, folder, *_ = models
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "hybridrec.cli", "serve", "--model", str(folder),
                                    "--port", str(port), "--threads", "4"], cwd=REPO_ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if call(base, "GET", "/health", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no /health after {STARTUP_SECONDS} s:\n{log.read_text()}")
        time.sleep(0.25)
    yield process, base, log
    if process.poll() is None:
        process.kill()
        process.wait()


def item_lists(rows, key, value="item_id"):
    found = {}
    for row in sorted(rows, key=lambda row: (str(row[key]), row["rank"])):
        found.setdefault(row[key], []).append(row[value])
    return found


def test_health_names_the_model_and_docs_are_served(server, models):
    _, base, _ = server
    status, health = call(base, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["model"]["class"] == "HybridRecommender" and health["model"]["generation"] == 1
    assert health["model"]["path"] == str(models[1]) and health["model"]["n_items"] == 1682 - HELD_BACK
    status, page = call(base, "GET", "/docs")
    assert status == 200 and "swagger" in page.lower()
    status, schema = call(base, "GET", "/openapi.json")
    assert {"/health", "/recommend", "/similar", "/search", "/explain", "/items", "/reload"} <= set(schema["paths"])


def test_recommend_for_users_and_for_a_history_equals_the_model(server, models):
    _, base, _ = server
    model = models[0]
    status, answer = post(base, "/recommend", {"user_ids": [1, "2", 3], "k": 10, "exclude": [50]})
    assert status == 200
    expected = model.recommend([1, 2, 3], k=10, exclude=[50])
    assert item_lists(answer["results"], "user_id") == {user: group.sort_values("rank")["item_id"].tolist()
                                                        for user, group in expected.groupby("user_id")}
    scores = [row["score"] for row in answer["results"]]
    np.testing.assert_allclose(scores, expected["score"].to_numpy(), rtol=1e-5)
    status, answer = post(base, "/recommend", {"history": [50, 172, 181], "k": 5, "exclude": [174]})
    assert status == 200
    assert [row["item_id"] for row in answer["results"]] == \
        model.recommend_for_history([50, 172, 181], k=5, exclude=[174])["item_id"].tolist()


def test_similar_and_search_equal_the_model(server, models):
    _, base, _ = server
    model = models[0]
    status, answer = post(base, "/similar", {"item_ids": [50, 1], "k": 5})
    assert status == 200
    expected = model.similar_items([50, 1], k=5)
    assert item_lists(answer["results"], "item_id", "similar_item_id") == {
        item: group.sort_values("rank")["similar_item_id"].tolist() for item, group in expected.groupby("item_id")}
    status, answer = post(base, "/search", {"query": "star wars", "k": 5, "user_id": 1})
    assert status == 200, log_tail(server)
    expected = model.search("star wars", k=5, user_id=[1])
    assert [row["item_id"] for row in answer["results"]] == expected["item_id"].tolist()
    assert answer["results"][0]["query"] == "star wars"


def test_explain_equals_the_model(server, models):
    _, base, _ = server
    model = models[0]
    status, answer = post(base, "/explain", {"user_id": 1, "item_ids": [50, 181], "k": 3})
    assert status == 200, log_tail(server)
    expected = model.explain([1], [50, 181], k=3)
    assert len(answer["results"]) == len(expected) > 0

    def reasons(rows):
        return [(row["item_id"], row["reason"], str(row["source"]), row["rank"]) for row in rows]

    assert reasons(answer["results"]) == reasons(expected.to_dict(orient="records"))
    np.testing.assert_allclose([row["value"] for row in answer["results"]], expected["value"], rtol=1e-5)


@pytest.mark.parametrize(("body", "status", "named"), [
    ({"user_ids": [1, 99999, "nobody"], "k": 5}, 400, ["user_ids", "99999", "nobody"]),
    ({"user_ids": [1], "k": 0}, 422, ["k"]),
    ({"user_ids": [1], "k": 100000}, 422, ["k"]),
    ({"user_ids": [1], "k": 5, "exclude": ["no-such-item"]}, 400, ["exclude", "no-such-item"]),
    ({"history": [50, 424242], "k": 5}, 400, ["history", "424242"]),
    ({"user_ids": [1], "history": [50]}, 400, ["user_ids", "history"]),
    ({"user_ids": []}, 422, ["user_ids"]),
    ({"user_ids": [1], "colour": "red"}, 422, ["colour"]),
])
def test_bad_recommend_requests_get_a_4xx_naming_the_field(server, body, status, named):
    _, base, _ = server
    got, answer = post(base, "/recommend", body)
    assert got == status, answer
    assert all(word in answer["detail"] for word in named), answer["detail"]
    assert "Traceback" not in json.dumps(answer)


def test_other_bad_requests_get_a_4xx_too(server):
    _, base, _ = server
    for path, body, raw, status, named in [
        ("/recommend", None, b'{"user_ids": [1], "k": ', 422, "not valid JSON"),
        ("/similar", {"item_ids": [31415926]}, None, 400, "item_ids"),
        ("/search", {"query": ""}, None, 422, "query"),
        ("/search", {"query": "   "}, None, 400, "query"),
        ("/search", {"query": "war", "user_id": "nobody"}, None, 400, "user_id"),
        ("/explain", {"user_id": "nobody", "item_ids": [50]}, None, 400, "user_id"),
        ("/items", {"items": [{"title": "no id"}]}, None, 400, "item_id"),
        ("/reload", {"path": "/no/such/model"}, None, 400, "/no/such/model"),
    ]:
        got, answer = post(base, path, body, raw=raw)
        assert got == status and named in answer["detail"], (path, body, got, answer)
    assert call(base, "GET", "/health")[1]["model"]["generation"] == 1  # a failed reload changes nothing


def test_items_added_over_http_are_recommended_similar_and_searchable(server, models):
    _, base, _ = server
    _, _, _, _, held_back = models
    rows = [{"item_id": int(row.item_id), "title": row.title, "genres": list(row.genres)}
            for row in held_back.itertuples()]
    new_ids = [row["item_id"] for row in rows]
    status, answer = post(base, "/recommend", {"user_ids": [1], "k": 5, "candidates": new_ids})
    assert status == 400 and str(new_ids[0]) in answer["detail"]  # not known yet
    generation = call(base, "GET", "/health")[1]["model"]["generation"]
    status, answer = post(base, "/items", {"items": rows})
    assert status == 200, log_tail(server)
    assert answer["added"] == HELD_BACK and answer["n_items"] == 1682 and answer["generation"] == generation + 1
    assert call(base, "GET", "/health")[1]["model"]["changes"] == [f"add_items({HELD_BACK})"]
    status, answer = post(base, "/recommend", {"user_ids": [1, 2], "k": 5, "candidates": new_ids})
    assert status == 200 and len(answer["results"]) == 10
    assert {row["item_id"] for row in answer["results"]} <= set(new_ids)
    status, answer = post(base, "/similar", {"item_ids": new_ids[:1], "k": 5})
    assert status == 200 and len(answer["results"]) == 5
    status, answer = post(base, "/search", {"query": rows[0]["title"], "k": 3})
    assert new_ids[0] in [row["item_id"] for row in answer["results"]]
    status, answer = post(base, "/items", {"items": rows[:1]})
    assert status == 400 and str(new_ids[0]) in answer["detail"]  # known now: refused without update
    status, answer = post(base, "/items/remove", {"item_ids": new_ids})
    assert status == 200 and answer["removed"] == HELD_BACK
    status, answer = post(base, "/recommend", {"user_ids": [1], "k": 5, "candidates": new_ids})
    assert status == 200 and answer["results"] == []  # hidden: never returned


def test_reload_swaps_the_model_without_failing_requests(server, models):
    _, base, _ = server
    _, _, ease, ease_folder, _ = models
    before = call(base, "GET", "/health")[1]["model"]["generation"]
    failures, answered, stop = [], [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            status, answer = post(base, "/recommend", {"user_ids": [1, 2], "k": 10})
            (answered if status == 200 else failures).append((status, answer))

    clients = [threading.Thread(target=keep_asking) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    status, health = post(base, "/reload", {"path": str(ease_folder)})
    time.sleep(0.5)
    stop.set()
    for client in clients:
        client.join()
    assert status == 200 and health["model"]["class"] == "EASERecommender"
    assert health["model"]["path"] == str(ease_folder) and health["model"]["generation"] == before + 1
    assert not failures and len(answered) >= 8
    status, answer = post(base, "/recommend", {"user_ids": [1], "k": 10})
    assert [row["item_id"] for row in answer["results"]] == ease.recommend([1], k=10)["item_id"].tolist()
    assert answer["generation"] == before + 1


def test_sighup_reloads_and_sigterm_stops_with_exit_code_0(server):
    process, base, log = server
    before = call(base, "GET", "/health")[1]["model"]["generation"]
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while call(base, "GET", "/health")[1]["model"]["generation"] == before:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_without_the_extra_the_command_names_it(models, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "hybridrec.serving", raising=False)
    monkeypatch.delattr(sys.modules["hybridrec"], "serving", raising=False)
    assert cli_main(["serve", "--model", str(models[1])]) == 1
    assert "pip install 'hybridrec[serve]'" in capsys.readouterr().err
