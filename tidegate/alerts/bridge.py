"""Alertmanager → ``control.events``: a firing critical alert trips the executor's fail-safe.

Why this exists: the executor routes everything to paper for
``executor.fail_safe_cooldown`` when a CRIT control event arrives, but the
conditions that should trip it (a precision collapse, drift, execution
degradation) are measured in Prometheus and fire as alerts. This receiver is
the link: Alertmanager POSTs its webhook (payload version 4) to
``/alertmanager``, and every alert that is ``firing`` with
``labels.severity == "critical"`` becomes one CRIT event (``reason`` = the
alert name, a low-cardinality label of ``fail_safe_switch_total``; ``detail`` =
its summary). Warnings and resolved notifications change nothing: the fail-safe
ends by its cooldown, never by an alert resolving.

Idempotency: Alertmanager resends the same firing alert on every group change
and every ``repeat_interval``. One firing episode of one alert is identified by
``fingerprint`` + ``startsAt``; that pair is the event id, remembered in memory
(no second publish while the bridge runs) and sent as ``Nats-Msg-Id`` (the
stream drops a repeat inside its duplicate window, e.g. after a quick restart).
A bridge restarted later publishes a resend again, which only re-arms the
fail-safe: the safe direction. The same alert firing anew (a new ``startsAt``)
is a new event.

The response tells Alertmanager whether to retry: 200 once every event is
stored on the stream (the JetStream ack was awaited), 400 naming the first bad
field of a payload that is not an Alertmanager webhook (a retry would not
help), 503 when NATS did not store an event (Alertmanager retries; events
already stored are not sent twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tidegate.bus.control import ControlEvent, publish_control
from tidegate.bus.dedupe import RecentIds
from tidegate.bus.messages import first_error
from tidegate.bus.subjects import Subjects
from tidegate.config.schema import AppConfig

log = logging.getLogger("tidegate.alerts")

WEBHOOK_PATH = "/alertmanager"
DEFAULT_PORT = 9106
MANUAL_REASON = "manual"


class BadWebhook(ValueError):
    """A request body that is not an Alertmanager webhook; the text names the first failing field."""


class ControlUnavailable(RuntimeError):
    """NATS could not be reached or did not store the event."""


# Alertmanager adds fields across releases (receiver, groupKey, truncatedAlerts, ...): unknown keys are
# allowed, and only what the mapping reads is validated, so a new Alertmanager does not silence the bridge.
class AlertLabels(BaseModel):
    model_config = ConfigDict(extra="allow")

    alertname: str = Field(min_length=1)
    severity: str = ""


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: AlertLabels
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = Field(min_length=1)  # Alertmanager's field name, kept as sent (part of the event id)
    fingerprint: str = Field(min_length=1)


class AlertmanagerWebhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str = "4"
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert]


def parse_webhook(body: bytes) -> AlertmanagerWebhook:
    """The validated payload, or BadWebhook naming the failing field (``alerts.0.labels.alertname: ...``)."""
    try:
        return AlertmanagerWebhook.model_validate_json(body)
    except ValidationError as exc:
        raise BadWebhook(first_error(exc, "<body>")) from None


def alert_event_id(alert: WebhookAlert) -> str:
    """One firing episode of one alert: Alertmanager's fingerprint plus the episode's start."""
    return f"alert:{alert.fingerprint}:{alert.startsAt}"


def is_critical_firing(alert: WebhookAlert) -> bool:
    return alert.status == "firing" and alert.labels.severity == "critical"


def crit_events(payload: AlertmanagerWebhook) -> list[ControlEvent]:
    """The CRIT control events a webhook asks for: one per firing critical alert, nothing for the rest."""
    return [ControlEvent(kind="CRIT", severity="CRIT", reason=a.labels.alertname,
                         detail=a.annotations.get("summary", ""), event_id=alert_event_id(a))
            for a in payload.alerts if is_critical_firing(a)]


class AlertBridge:
    """The webhook handler: payload in, CRIT events stored on the control stream, a status for Alertmanager."""

    def __init__(self, nc: Client, subjects: Subjects | None = None, *, publish_timeout: float = 2.0,
                 memory: int = 10_000):
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.subjects = subjects or Subjects()
        self.publish_timeout = publish_timeout
        self.seen = RecentIds(capacity=memory)

    async def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for one webhook delivery."""
        try:
            payload = parse_webhook(body)
        except BadWebhook as exc:
            log.warning("alertmanager webhook refused: %s", exc)
            return 400, {"error": str(exc)}
        events = crit_events(payload)
        published: list[str] = []
        duplicates: list[str] = []
        for ev in events:
            if ev.event_id in self.seen:
                duplicates.append(ev.event_id)
                continue
            try:
                new, seq = await publish_control(self.js, ev, self.subjects, timeout=self.publish_timeout)
            except Exception as exc:  # timeouts, no responders, connection closed: all mean "not stored"
                log.error("CRIT %s (%s) NOT stored on %s: %s", ev.reason, ev.event_id, self.subjects.control,
                          str(exc) or type(exc).__name__)
                return 503, {"error": f"control event not stored: {str(exc) or type(exc).__name__}",
                             "published": published, "duplicates": duplicates}
            self.seen.add(ev.event_id)
            if new:
                published.append(ev.event_id)
                log.warning("CRIT published (seq %d): %s: %s", seq, ev.reason, ev.detail)
            else:
                duplicates.append(ev.event_id)
        return 200, {"published": published, "duplicates": duplicates, "ignored": len(payload.alerts) - len(events)}

    def app(self) -> web.Application:
        async def webhook(request: web.Request) -> web.Response:
            status, body = await self.handle(await request.read())
            return web.json_response(body, status=status)

        async def healthz(request: web.Request) -> web.Response:
            ok = bool(self.nc.is_connected)
            return web.json_response({"service": "alert_bridge", "status": "ok" if ok else "unavailable"},
                                     status=200 if ok else 503)

        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, webhook)
        app.router.add_get("/healthz", healthz)
        return app


async def _connect(cfg: AppConfig, *, reconnect: bool) -> Client:
    """NATS, or ControlUnavailable; a long-running bridge reconnects forever, a one-shot command does not."""
    import nats

    from tidegate.bus.connection import connect

    async def quiet(exc: Exception) -> None:  # nats-py logs every failed attempt with a traceback otherwise
        return None

    try:
        if reconnect:
            return await asyncio.wait_for(connect(cfg.nats.url, name="alert_bridge",
                                                  connect_timeout=cfg.nats.connect_timeout_s),
                                          timeout=cfg.nats.connect_timeout_s + 1.0)
        return await asyncio.wait_for(nats.connect(cfg.nats.url, connect_timeout=cfg.nats.connect_timeout_s,
                                                   allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet),
                                      timeout=cfg.nats.connect_timeout_s + 1.0)
    except Exception as exc:  # nats raises several unrelated types for "not there"
        raise ControlUnavailable(f"NATS at {cfg.nats.url} unreachable: {str(exc) or type(exc).__name__}") from None


async def serve_bridge(cfg: AppConfig, *, host: str, port: int, stop: asyncio.Event,
                       on_ready: Callable[[int], None] | None = None) -> None:
    """Serve the webhook until ``stop`` is set; ``on_ready`` hears the bound port (``port=0`` picks one)."""
    nc = await _connect(cfg, reconnect=True)
    subjects = Subjects(cfg.nats.namespace)
    runner = web.AppRunner(AlertBridge(nc, subjects).app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = int(runner.addresses[0][1])
        log.info("alert bridge on http://%s:%d%s -> %s (NATS %s)", host, bound, WEBHOOK_PATH, subjects.control,
                 cfg.nats.url)
        if on_ready is not None:
            on_ready(bound)
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout=5)


def run_bridge(cfg: AppConfig, *, host: str, port: int) -> None:
    """Blocking entry point of ``tidegate control bridge``: serve until SIGTERM or SIGINT."""
    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_bridge(cfg, host=host, port=port, stop=stop)

    asyncio.run(amain())


def raise_crit(cfg: AppConfig, detail: str) -> tuple[str, int]:
    """Publish one operator CRIT now: (subject, stream sequence); ControlUnavailable if not stored.

    ``reason`` is the fixed ``manual`` (the fail_safe_switch_total label); the operator's words go
    in ``detail``. Each call is a new event (its own id): raising it again re-arms the cooldown.
    """
    subjects = Subjects(cfg.nats.namespace)
    event = ControlEvent(kind="CRIT", severity="CRIT", reason=MANUAL_REASON, detail=detail,
                         event_id=f"manual:{uuid.uuid4().hex}")

    async def go() -> int:
        nc = await _connect(cfg, reconnect=False)
        try:
            _new, seq = await publish_control(nc.jetstream(), event, subjects,
                                              timeout=cfg.nats.connect_timeout_s + 1.0)
            return seq
        except Exception as exc:
            raise ControlUnavailable(f"CRIT not stored on {subjects.control}: "
                                     f"{str(exc) or type(exc).__name__}") from None
        finally:
            await nc.close()

    return subjects.control, asyncio.run(go())
