"""Notifications through apprise: a `json://` target posts to a small HTTP server on 127.0.0.1 and the
payload names the run, its state, step and best metric; an unreachable URL is logged, never raised."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from vittui.runs import events as ev
from vittui.runs.notify import RunNotifier, notify, notify_state


@pytest.fixture
def server():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], received
    httpd.shutdown()
    httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_json_target_gets_name_state_step_best(server):
    port, received = server
    assert notify([f"json://127.0.0.1:{port}/hook"], "vit-digits", "finished", 120, 93.456) is True
    (post,) = received
    assert post["path"] == "/hook"
    payload = post["json"]
    assert payload["title"] == "vittui: vit-digits finished"
    assert payload["message"] == "run vit-digits: finished at step 120; best top-1 93.46%"


def test_run_notifier_sends_on_the_four_states_from_events(server):
    port, received = server
    n = RunNotifier([f"json://127.0.0.1:{port}/n"], "r")
    n.feed_all([ev.Step(step=1, epoch=0, loss=1, lr=0, grad_norm=0, images_per_s=0, data_time=0, step_time=0),
                ev.Eval(step=1, epoch=0, loss=1, top1=40.0, top5=90.0),
                ev.Status(state="running", step=1, reason="started"),  # not one to send
                ev.Status(state="paused", step=1, reason="paused by user"),  # neither
                ev.Status(state="paused", step=2, reason="divergence: loss is nan"),
                ev.Eval(step=3, epoch=0, loss=1, top1=55.0, top5=90.0),
                ev.Status(state="failed", step=3, reason="RuntimeError")])
    titles = [r["json"]["title"] for r in received]
    assert titles == ["vittui: r paused by divergence", "vittui: r failed"]
    assert received[-1]["json"]["message"] == "run r: failed at step 3; best top-1 55.00%"
    assert notify_state("pruned") == "pruned" and notify_state("stopped", "pruned by the sweep") == "pruned"
    assert notify_state("finished") == "finished" and notify_state("stopped", "stopped by user") is None


def test_unreachable_url_is_logged_and_never_raises(caplog):
    caplog.set_level(logging.WARNING, logger="vittui.notify")
    url = f"json://127.0.0.1:{free_port()}/nobody?cto=1&rto=1"
    assert notify([url], "r", "finished", 5, None) is False
    assert notify(["not a url at all"], "r", "finished", 5, None) is False
    assert notify([], "r", "finished", 5, None) is True  # nothing to send
    assert "could not deliver 'vittui: r finished'" in caplog.text
    assert "not an apprise URL" in caplog.text


def test_a_broken_notifier_never_reaches_the_run(monkeypatch, caplog):
    import apprise

    def boom(*a, **k):
        raise RuntimeError("network stack on fire")

    monkeypatch.setattr(apprise.Apprise, "notify", boom)
    caplog.set_level(logging.WARNING, logger="vittui.notify")
    assert notify(["json://127.0.0.1:9/x"], "r", "failed", 1, 10.0) is False
    assert "RuntimeError: network stack on fire" in caplog.text


def test_a_real_run_notifies_when_it_finishes_and_a_dead_url_changes_nothing(server, tmp_path):
    """`vittui train` with run.notify: the live target gets one "finished" post naming the run, its last
    step and best top-1; the unreachable one is logged by the worker and the run still finishes (exit 0)."""
    import subprocess

    from tiny import TINY, tiny_toml, vittui_cmd

    from vittui.runs.store import RunDir

    port, received = server
    urls = [f"json://127.0.0.1:{port}/hook", f"json://127.0.0.1:{free_port()}/dead"]
    recipe = tiny_toml(tmp_path / "tiny.toml", TINY + ["schedule.max_steps=4", f"run.notify={json.dumps(urls)}"])
    p = subprocess.run([*vittui_cmd(), "--runs-dir", str(tmp_path / "runs"), "train", str(recipe), "--name", "n"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    run = RunDir(tmp_path / "runs" / "n")
    status = run.read_status()
    assert status.state == "finished" and status.step == 4
    (post,) = received
    assert post["path"] == "/hook" and post["json"]["title"] == "vittui: n finished"
    best = max(e.top1 for e in ev.read_all(run.events_path) if isinstance(e, ev.Eval))
    assert post["json"]["message"] == f"run n: finished at step 4; best top-1 {best:.2f}%"
