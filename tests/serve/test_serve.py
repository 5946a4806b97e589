"""`runner serve` over real HTTP on loopback: a `runner serve` process on the session's tiny exported run.

- answers equal `runner predict`'s on the test split, sent as concurrent requests the server merges;
- every bad request is a 4xx JSON answer naming what is wrong, and the server keeps serving;
- a full queue answers 503 with Retry-After; SIGTERM answers the request in flight, refuses new
  connections and exits 0;
- bad arguments exit 2 before anything listens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from predict_helpers import cli, probs_of, read_output, split_csv, trained

# `runner predict` writes 6 significant digits to csv (<= 5e-7 off for probabilities); merged batches
# pad differently from predict's, which moves float32 probabilities by ~1e-7 (measured: max 2.4e-7)
TOLERANCE = 1e-5
START_S = 180  # a server process imports torch and loads 3 members: ~16 s on a busy 2-core CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, source: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", str(source), "--port",
                                      str(self.port), *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"runner serve did not answer /health within {START_S} s")

    def post(self, body=None, **kw) -> httpx.Response:
        return httpx.post(self.url + "/predict", json=body, timeout=60, **kw) if body is not None else \
            httpx.post(self.url + "/predict", timeout=60, **kw)

    def terminate(self) -> None:
        """SIGTERM, once: a second one while the server is still exiting would end it by the default handler."""
        self.signalled = True
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None and not getattr(self, "signalled", False):
            self.terminate()
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve_export") / "model"
    code, out, err = cli("export", run.run_id, d, "--store", run.store)
    assert code == 0, err + out
    return d


@pytest.fixture(scope="module")
def server(exported):
    s = Server(exported, "--max-texts", "50", "--max-text-bytes", "1000", "--max-wait-ms", "20")
    yield s
    code, err = s.stop()
    assert code == 0, err


def test_answers_equal_predicts_in_merged_batches(run, exported, server, tmp_path):
    test_csv = split_csv(run, "test", tmp_path / "test.csv")
    out = tmp_path / "p.csv"
    code, _, err = cli("predict", exported, test_csv, "--members", "-o", out)
    assert code == 0, err
    labels, cols = read_output(out)
    texts = _texts(test_csv)
    before = httpx.get(server.url + "/health").json()["batches"]

    async def send():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            chunks = [texts[i:i + 7] for i in range(0, len(texts), 7)]
            answers = await asyncio.gather(*[client.post("/predict", json={"texts": c, "members": True})
                                             for c in chunks])
            return answers

    answers = asyncio.run(send())
    assert all(a.status_code == 200 for a in answers)
    rows = [p for a in answers for p in a.json()["predictions"]]
    assert [r["pred_label"] for r in rows] == labels
    got = np.array([[r[f"p_{name}"] for name in run.labels] for r in rows])
    assert np.abs(got - probs_of(cols, run.labels)).max() <= TOLERANCE
    for m in ("a", "b", "c"):
        member = np.array([[r[f"{m}.p_{name}"] for name in run.labels] for r in rows])
        assert np.abs(member - probs_of(cols, run.labels, f"{m}.")).max() <= TOLERANCE
    one = server.post({"text": texts[0]}).json()["predictions"]
    assert len(one) == 1 and one[0]["pred_label"] == labels[0] and "a.p_" + run.labels[0] not in one[0]
    # the test texts, in concurrent requests of 7, went through fewer engine calls than requests
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ready" and health["batches"] - before - 1 < len(answers)


def _texts(path: Path) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)]


@pytest.mark.parametrize("send, status, words", [
    (dict(content=b'{"texts": ["a"', headers={"content-type": "application/json"}), 400, "not valid JSON"),
    (dict(content=b'["a"]', headers={"content-type": "application/json"}), 400, "send an object"),
    ({"texts": ["a"], "text": "b"}, 422, "not both"),
    ({"members": True}, 422, "either 'texts'"),
    ({"texts": ["a", 3]}, 422, "texts[1]"),
    ({"text": 3}, 422, "text"),
    ({"texts": "a"}, 422, "texts"),
    ({"texts": []}, 422, "empty"),
    ({"texts": ["a"], "colour": 1}, 422, "colour"),
    ({"texts": ["a"] * 51}, 413, "limit is 50"),
    ({"text": "é" * 501}, 413, "1002 bytes"),
    (dict(content=b'{"text": "a"}', headers={"content-type": "text/plain"}), 415, "application/json"),
    (dict(content=b'{"text": "a"}'), 415, "application/json"),
])
def test_every_bad_request_is_a_4xx_json_answer(server, send, status, words):
    r = server.post(**send) if "content" in send else server.post(send)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and words in body["error"]
    assert server.post({"text": "still serving"}).status_code == 200


def test_unknown_paths_and_methods_are_json_too(server):
    assert httpx.get(server.url + "/nope").json() == {"error": "Not Found", "status": 404}
    r = httpx.get(server.url + "/predict")
    assert r.status_code == 405 and r.json()["status"] == 405


def test_metadata_and_docs(run, server):
    meta = httpx.get(server.url + "/metadata").json()
    assert meta["labels"] == run.labels and meta["members"] == ["a", "b", "c"]
    assert meta["run"]["run_id"] == run.run_id and meta["run"]["dataset_id"] == run.dataset_id
    assert sum(meta["weights"].values()) == pytest.approx(1.0) and meta["versions"]["runner"]
    assert meta["limits"]["max_texts"] == 50
    assert "swagger" in httpx.get(server.url + "/docs").text.lower()
    schema = httpx.get(server.url + "/openapi.json").json()
    assert "texts" in str(schema["paths"]["/predict"]["post"]["requestBody"])


def test_listens_on_loopback_only_by_default(server):
    with socket.socket() as s:  # the same port on another address of this machine is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        try:
            s.bind(("127.0.0.2", server.port))
        except OSError as e:
            pytest.fail(f"the server holds more than 127.0.0.1: {e}")


def test_a_full_queue_answers_503_then_sigterm_drains(exported):
    # batch size 1: a request of 40 texts is 120 forward passes (~0.45 s measured on a 2-core CPU), so
    # requests sent together wait in the queue behind one another
    s = Server(exported, "--batch-size", "1", "--max-queue", "120", "--max-batch", "40")
    texts = [f"text number {i} " * 6 for i in range(40)]

    async def burst(n: int, signal_at: float | None = None):
        async with httpx.AsyncClient(base_url=s.url, timeout=120) as client:
            tasks = [asyncio.create_task(client.post("/predict", json={"texts": texts})) for _ in range(n)]
            refused = None
            if signal_at is not None:
                await asyncio.sleep(signal_at)  # the requests are queued or computing
                s.terminate()
                await asyncio.sleep(0.15)  # uvicorn sees the signal within 0.1 s
                pending = sum(not t.done() for t in tasks)
                try:  # a new connection while those are still being answered
                    await asyncio.to_thread(httpx.get, s.url + "/health", timeout=5)
                except httpx.TransportError as e:
                    refused = e
                assert pending, "every request was answered before the check: the test did not test the drain"
            return await asyncio.gather(*tasks), refused

    try:
        answers, _ = asyncio.run(burst(8))
        codes = sorted(a.status_code for a in answers)
        assert set(codes) == {200, 503}, codes  # those the queue held were answered, the rest refused at once
        full = next(a for a in answers if a.status_code == 503)
        assert full.headers["retry-after"] == "1" and "queue is full" in full.json()["error"]

        answers, refused = asyncio.run(burst(3, signal_at=0.1))
        assert refused is not None, "a new connection was accepted after SIGTERM"
        assert [a.status_code for a in answers] == [200] * 3
        assert all(len(a.json()["predictions"]) == 40 for a in answers)
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert "stopped" in err and "Traceback" not in err


@pytest.mark.parametrize("args, words", [
    (["no-such-run", "--store", "{store}"], "no-such-run"),
    (["{export}", "--strategy", "swa"], "holds strategy"),
    (["{export}", "--calibrated"], "--calibrated"),
    (["{export}", "--host", "no.such.host.invalid"], "--host"),
    (["{export}", "--port", "0"], "--port"),
])
def test_bad_arguments_exit_2_before_listening(run, exported, args, words):
    args = [a.format(store=run.store, export=exported) for a in args]
    code, out, err = cli("serve", *args)
    assert code == 2, out + err
    assert words in err and "Traceback" not in err


def test_a_port_in_use_exits_2(exported):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code, _, err = cli("serve", exported, "--port", s.getsockname()[1])
    assert code == 2 and "--port" in err and "in use" in err.lower()


def _children(pid: int) -> list[int]:
    """The process ids whose parent is `pid` (from /proc)."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue  # a process that ended meanwhile
        if fields.get("PPid", "").strip() == str(pid):
            out.append(int(status.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="counts worker processes through /proc")
def test_workers_serve_the_same_answers_and_all_stop_on_sigterm(exported, server):
    texts = [f"a film I would see again {i}" for i in range(12)]
    one = server.post({"texts": texts}).json()["predictions"]
    s = Server(exported, "--workers", "2")
    try:
        # uvicorn's supervisor spawns one process per worker (multiprocessing's spawn_main; a resource
        # tracker may run beside them)
        workers = [p for p in _children(s.proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, [Path(f"/proc/{p}/cmdline").read_bytes() for p in _children(s.proc.pid)]

        async def send():
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as client:
                return await asyncio.gather(*[client.post("/predict", json={"texts": texts}) for _ in range(8)])

        answers = asyncio.run(send())
        assert [a.status_code for a in answers] == [200] * 8
        for a in answers:
            got = a.json()["predictions"]
            assert [r["pred_label"] for r in got] == [r["pred_label"] for r in one]
            assert max(abs(r[k] - o[k]) for r, o in zip(got, one) for k in r if k.startswith("p_")) <= TOLERANCE
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert all(not Path(f"/proc/{p}").exists() or "zombie" in Path(f"/proc/{p}/status").read_text().lower()
               for p in workers)
