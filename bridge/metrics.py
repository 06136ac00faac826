"""Prometheus metrics on own registries (no globals), rendered by GET /metrics.

Two sets, one per process: the ingress process counts what SMTP and SOAP accepted and refused;
the store process, which runs the outbound side, counts submits, receipts, binds, the queue and
its own commits.
/metrics shows the first followed by the second, so no metric family appears twice.

What each counts also goes, per second, into its `history` (bridge.core.console.PerSecond):
the status page's plots are these counts, in the process that sees the events, so they never
disagree with /metrics."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Protocol, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from bridge.core.console import HISTORY_S, PerSecond, Samples, percentiles


class InstanceLike(Protocol):
    """What the instance gauges read of an instance (bridge.outbound.membership.InstanceView)."""

    @property
    def id(self) -> str: ...

    @property
    def alive(self) -> bool: ...

    @property
    def held(self) -> int: ...


class _Registry:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.clock = clock
        #: The last minutes per second, for the status page (bridge.ingress.console).
        self.history = PerSecond(HISTORY_S)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(...)`, remembered: prometheus_client validates and locks on every
        call, which showed in the per-message profile."""
        key = (metric._name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: The status label of a submit_sm_resp the SMSC took (command_status 0).
SUBMIT_OK = "0x00"


class Metrics(_Registry):
    """The ingress side: messages accepted and recipients refused, by ingress."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._accepted = Counter("sms_bridge_accepted", "Messages accepted, by ingress",
                                 ["ingress"], registry=self.registry)
        self._rejected = Counter(
            "sms_bridge_rejected", "Recipients refused, by ingress and error (DUPLICATE: a "
            "repeat answered with the first ids, nothing sent twice)", ["ingress", "error"],
            registry=self.registry)

    def accepted(self, ingress: str, n: int = 1) -> None:
        self._child(self._accepted, ingress).inc(n)
        self.history.add("accepted", n, self.clock())

    def rejected(self, ingress: str, error: str, n: int = 1) -> None:
        self._child(self._rejected, ingress, error).inc(n)
        now = self.clock()
        self.history.add("refused", n, now)
        self.history.add(f"refused:{error}", n, now)


class OutboundMetrics(_Registry):
    """The outbound side: submit results and latency, receipts, binds up, queue depth."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        #: Seconds from acceptance (or send_at) to a message's first part taken by an SMSC,
        #: and from a part's submit to its final receipt, for the status page's percentiles.
        self._latencies = {"accept_to_submit": Samples(), "submit_to_receipt": Samples()}
        self._submit_latency = Histogram(
            "sms_bridge_submit_latency_seconds", "submit_sm to submit_sm_resp",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self._submits = Counter("sms_bridge_submits", "submit_sm results by status",
                                ["smsc", "status"], registry=self.registry)
        self._binds_up = Gauge("sms_bridge_binds_up", "1 when the SMSC bind is up", ["smsc"],
                               registry=self.registry)
        self._smsc_health = Gauge(
            "sms_bridge_smsc_health", "1 for the circuit an SMSC's link is in: closed (in "
            "routing), open (out of routing for a cool-down), half_open (a probe decides)",
            ["smsc", "state"], registry=self.registry)
        self._out_of_routing = Gauge(
            "sms_bridge_smsc_out_of_routing", "Times an SMSC's link was taken out of routing "
            "since start", ["smsc"], registry=self.registry)
        self._instance_up = Gauge("sms_bridge_instance_up",
                                  "1 while an instance sharing the store heartbeats", ["instance"],
                                  registry=self.registry)
        self._instance_held = Gauge("sms_bridge_instance_held_messages",
                                    "Messages an instance holds to send (its last heartbeat)",
                                    ["instance"], registry=self.registry)
        self._receipts = Counter("sms_bridge_receipts", "Delivery receipts by outcome",
                                 ["state"], registry=self.registry)
        self._queue_depth = Gauge("sms_bridge_queue_depth", "Messages waiting for the upstream",
                                  registry=self.registry)
        self._callbacks = Counter("sms_bridge_callbacks",
                                  "Delivery callback attempts by outcome (delivered, retry, "
                                  "gave_up)", ["outcome"], registry=self.registry)
        self._mailbacks = Counter("sms_bridge_mailbacks",
                                  "Mail back attempts (DSNs, SMS replies) by kind and outcome "
                                  "(delivered, retry, gave_up)", ["kind", "outcome"],
                                  registry=self.registry)
        self._commit_seconds = Histogram(
            "sms_bridge_store_commit_seconds",
            "Store write transactions, from BEGIN to the end of the COMMIT whose fsync makes "
            "an accept durable", registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self._store_writes = Counter("sms_bridge_store_writes",
                                     "Store write operations committed (per transaction: this "
                                     "over the commit histogram's count)", registry=self.registry)

    def submit_result(self, smsc: str, status: str, latency_s: float) -> None:
        self._child(self._submits, smsc, status).inc()
        self._submit_latency.observe(latency_s)
        if status == SUBMIT_OK:
            now = self.clock()
            self.history.add("submitted", 1, now)
            self.history.add(f"submitted:{smsc}", 1, now)

    def latency(self, kind: str, seconds: float) -> None:
        """A latency of `kind` ("accept_to_submit", "submit_to_receipt") just measured."""
        self._latencies[kind].add(max(0.0, seconds), self.clock())

    def latencies(self, now: float) -> dict[str, Mapping[str, float | None]]:
        """Each kind's percentiles over the history."""
        return {kind: percentiles(samples.recent(now, HISTORY_S))
                for kind, samples in self._latencies.items()}

    def store_commit(self, writes: int, seconds: float) -> None:
        self._store_writes.inc(writes)
        self._commit_seconds.observe(seconds)

    def callback(self, outcome: str) -> None:
        self._child(self._callbacks, outcome).inc()

    def mailback(self, kind: str, outcome: str) -> None:
        self._child(self._mailbacks, kind, outcome).inc()

    def receipt(self, state: str) -> None:
        self._child(self._receipts, state).inc()
        if state == "delivered":
            self.history.add("delivered", 1, self.clock())

    def set_instances(self, instances: Sequence[InstanceLike]) -> None:
        """The instances sharing the store as this one last saw them: live or not, and what
        each holds (read at scrape time; an instance gone from the store leaves the gauges)."""
        self._instance_up.clear()
        self._instance_held.clear()
        for view in instances:
            self._instance_up.labels(view.id).set(1 if view.alive else 0)
            self._instance_held.labels(view.id).set(view.held)

    def set_smsc_health(self, smsc: str, circuit: str, states: Sequence[str],
                        opened: int) -> None:
        """The circuit `smsc` is in now, one of `states` (read at scrape time)."""
        for state in states:
            self._child(self._smsc_health, smsc, state).set(1 if state == circuit else 0)
        self._child(self._out_of_routing, smsc).set(opened)

    def set_binds_up(self, smsc: str, up: bool) -> None:
        self._child(self._binds_up, smsc).set(1 if up else 0)

    def set_queue_depth_source(self, source: Callable[[], int]) -> None:
        self._queue_depth.set_function(lambda: float(source()))
