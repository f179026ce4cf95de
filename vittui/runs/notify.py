"""Notifications when a run ends or needs a person: `run.notify = ["URL", …]` in the recipe, sent through
`apprise` (the optional `notify` extra: `pip install 'vittui[notify]'`) — ntfy, Slack, Discord, e-mail,
Telegram, a plain `json://host/path` webhook and every other apprise URL.

Sent on: finished, failed, paused by divergence (a `Status(state="paused")` whose reason mentions
divergence) and pruned (`Status(state="pruned")`, or a stop whose reason says pruned). Each message
carries the run's name, state, step and best metric (best top-1, percent).

**Never affects the run.** `notify` catches everything: apprise missing, a malformed URL, a host that
cannot be reached are logged (logger `vittui.notify`, a warning) and `notify` returns False. It is
synchronous (apprise's own connect/read timeouts, 4 s by default; add `?cto=2&rto=2` to a URL to shorten
them): call it at the end of a run, or from a thread. No torch.

`RunNotifier` is the event consumer the worker's emitter feeds: it tracks the step and the best top-1
from the events and calls `notify` on the states above.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Iterable, Sequence

from vittui.runs.events import Eval, Event, Finished, Status, Step

log = logging.getLogger("vittui.notify")

TITLE = "vittui: {run} {state}"
BODY = "run {run}: {state} at step {step}; best top-1 {best}"


def notify_state(state: str, reason: str = "") -> str | None:
    """The state a notification reports for a Status event, or None when this status is not one to send."""
    why = reason.lower()
    if state in ("finished", "failed", "pruned"):
        return state
    if state == "paused" and "diverg" in why:
        return "paused by divergence"
    if state == "stopped" and "prune" in why:
        return "pruned"
    return None


def _fmt_best(best: float | None) -> str:
    return f"{best:.2f}%" if best is not None and math.isfinite(best) else "n/a"


def message(run: str, state: str, step: int, best: float | None) -> tuple[str, str]:
    """(title, body) of the notification."""
    fields = {"run": run, "state": state, "step": int(step), "best": _fmt_best(best)}
    return TITLE.format(**fields), BODY.format(**fields)


def notify(urls: Sequence[str], run: str, state: str, step: int, best: float | None) -> bool:
    """Send one notification to every URL through apprise; True when all were delivered. Never raises:
    failures are logged as warnings."""
    urls = [u for u in (urls or ()) if u]
    if not urls:
        return True
    try:
        title, body = message(run, state, step, best)
        try:
            import apprise
        except ImportError:
            log.warning("run.notify is set but apprise is not installed (pip install 'vittui[notify]'); "
                        "not sent: %s", title)
            return False
        ap = apprise.Apprise()
        bad = [u for u in urls if not ap.add(u)]
        for u in bad:
            log.warning("notify: cannot use URL %s (not an apprise URL)", _redact(u))
        if len(ap) == 0:
            return False
        ok = bool(ap.notify(title=title, body=body))
        if not ok:
            log.warning("notify: could not deliver %r to every URL (%s)", title,
                        ", ".join(_redact(u) for u in urls))
        return ok and not bad
    except Exception as e:  # noqa: BLE001 - a notification must never take the run down
        log.warning("notify: %s: %s", type(e).__name__, e)
        return False


def _redact(url: str) -> str:
    """The URL's scheme and host, without credentials or tokens in its path."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…" if rest else url


class RunNotifier:
    """Feed it every event (`feed`); it sends at the states `notify_state` names, once per state and step."""

    def __init__(self, urls: Sequence[str], run: str,
                 send: Callable[[Sequence[str], str, str, int, float | None], bool] = notify) -> None:
        self.urls = list(urls)
        self.run = run
        self.send = send
        self.step = 0
        self.best: float | None = None
        self.sent: list[tuple[str, int]] = []

    def feed(self, event: Event) -> None:
        if isinstance(event, Step):
            self.step = event.step
        elif isinstance(event, Eval):
            if math.isfinite(event.top1) and (self.best is None or event.top1 > self.best):
                self.best = event.top1
        elif isinstance(event, Finished):
            self.step = event.step
            if event.best_top1 is not None:
                self.best = event.best_top1
        elif isinstance(event, Status):
            state = notify_state(event.state, event.reason)
            step = event.step or self.step
            if state is not None and self.urls and (state, step) not in self.sent:
                self.sent.append((state, step))
                self.send(self.urls, self.run, state, step, self.best)

    def feed_all(self, events: Iterable[Event]) -> "RunNotifier":
        for e in events:
            self.feed(e)
        return self
