"""Prometheus metrics of the log, aggregated across the server's processes (issue 10).

``tlog serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before it starts the
workers; every worker and every integrator process then records into its own files there
(``prometheus_client`` multiprocess mode), and any worker answering ``GET /metrics`` sums them
all: a scrape does not depend on which worker answers. Counters and histograms of processes
that exited stay counted; ``tlog_queue_depth`` sums the live processes only. Without the
variable (tests, embedding, granian started by hand without it) the values are this process's.

Recorded where the work happens: registrations by outcome, refusals by reason, HTTP responses
by status and request latency (worker); batch sizes and integration time (whoever integrates:
the integrator process under ``tlog serve``). Computed at scrape time from the shared database
and cosignature store (the same from every worker): tree size, checkpoint age, each witness's
lag and the witness quorum's lag (see :func:`state_text`).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no *_created series: they double the output and say nothing here

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def multiprocess() -> bool:
    d = os.environ.get(MULTIPROC_ENV)
    return bool(d) and os.path.isdir(d)


def _value_class_for_this_process() -> None:
    """prometheus_client picks in-process or multiprocess values when it is imported; a process
    that imported it before the directory was set (or forked from one) is switched here."""
    from prometheus_client import values

    if multiprocess() and values.ValueClass.__name__ != "MmapedValue":
        values.ValueClass = values.get_value_class()


class Metrics:
    """The log's metrics (one set per LogService; in multiprocess mode they write to the shared
    directory, otherwise they are this object's own)."""

    def __init__(self) -> None:
        _value_class_for_this_process()
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._registrations = Counter("tlog_registrations", "Signed Statements accepted, by outcome.",
                                      ["outcome"], registry=r)
        self._rejections = Counter("tlog_rejections", "Registrations refused, by reason.", ["reason"], registry=r)
        self._http = Counter("tlog_http_responses", "HTTP responses by status code.", ["code"], registry=r)
        self.request_seconds = Histogram("tlog_http_request_duration_seconds",
                                         "Time to answer an HTTP request (until the answer is handed to the server).",
                                         ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self._integration_latency = Histogram("tlog_integration_latency_seconds",
                                              "Time from submission to integration of a registration.",
                                              buckets=LATENCY_BUCKETS, registry=r)
        self._phase = Counter("tlog_register_phase_seconds",
                              "Time spent in each phase of registration (check, integration wait, receipt) and of "
                              "integrations (lock wait, transaction).", ["phase"], registry=r)
        self._integrations = Counter("tlog_integrations", "Integration transactions (batches) committed.", registry=r)
        self._batch = Histogram("tlog_batch_size", "Entries per integrated batch (new and duplicate).",
                                buckets=BATCH_BUCKETS, registry=r)
        self._batch_seconds = Histogram("tlog_batch_duration_seconds", "Time to integrate one batch (one transaction).",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self._queue = Gauge("tlog_queue_depth", "Registrations submitted and not yet integrated (live processes).",
                            registry=r, multiprocess_mode="livesum")
        self._witness_failures = Counter("tlog_witness_failures", "Failed submissions of a checkpoint to a witness.",
                                         ["witness"], registry=r)
        self._witness_ok = Counter("tlog_witness_cosignatures", "Valid cosignatures collected from a witness.",
                                   ["witness"], registry=r)
        self._reg_children = {o: self._registrations.labels(o) for o in ("integrated", "pending", "duplicate")}
        self._http_children: dict[int, object] = {}
        self._phase_children: dict[str, object] = {}
        for o in self._reg_children.values():
            o.inc(0)

    # -- recording (the hot path: a dict lookup and an inc) ---------------------------------------
    def registered(self, outcome: str) -> None:
        c = self._reg_children.get(outcome)
        (c or self._registrations.labels(outcome)).inc()

    def rejected(self, reason: str) -> None:
        self._rejections.labels(reason).inc()

    def response(self, status: int) -> None:
        c = self._http_children.get(status)
        if c is None:
            c = self._http_children[status] = self._http.labels(str(status))
        c.inc()

    def _phase_child(self, k: str):
        c = self._phase_children.get(k)
        if c is None:
            c = self._phase_children[k] = self._phase.labels(k)
        return c

    def phases(self, **seconds: float) -> None:
        for k, v in seconds.items():
            self._phase_child(k).inc(v)

    def integration_tx(self, lock_wait: float, tx: float) -> None:
        self._phase_child("integration_lock_wait").inc(lock_wait)
        self._phase_child("integration_transaction").inc(tx)

    def batch(self, n: int, seconds: float) -> None:
        """One committed integration transaction of ``n`` entries."""
        self._integrations.inc()
        self._batch.observe(n)
        self._batch_seconds.observe(seconds)

    def integration_latency(self, seconds: float) -> None:
        self._integration_latency.observe(seconds)

    def queue_depth(self, n: int) -> None:
        self._queue.set(n)

    def witness(self, witness: str, ok: bool) -> None:
        (self._witness_ok if ok else self._witness_failures).labels(witness).inc()

    # -- rendering -----------------------------------------------------------------------------------
    def render(self, extra: str = "") -> bytes:
        if multiprocess():
            from prometheus_client import multiprocess as mp

            forget_dead_processes()
            reg = CollectorRegistry()
            mp.MultiProcessCollector(reg)
            text = generate_latest(reg)
        else:
            text = generate_latest(self.registry)
        return text + extra.encode()


def forget_dead_processes() -> None:
    """Drop the live-gauge files of processes that are gone (a worker or integrator that exited
    without saying so), so ``tlog_queue_depth`` sums live processes only."""
    from prometheus_client import multiprocess as mp

    d = os.environ[MULTIPROC_ENV]
    pids = set()
    for name in os.listdir(d):
        if name.startswith("gauge_live") and name.endswith(".db"):
            try:
                pids.add(int(name[:-3].rsplit("_", 1)[1]))
            except ValueError:
                continue
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mp.mark_process_dead(pid, d)
        except PermissionError:
            pass


def fresh_dir() -> str:
    """A new, empty multiprocess directory for this server's processes (set in the environment
    they inherit)."""
    import tempfile

    d = tempfile.mkdtemp(prefix="tlog-metrics-")
    os.environ[MULTIPROC_ENV] = d
    return d


def gauge_text(name: str, help_: str, samples: list[tuple[dict, float]]) -> str:
    out = [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
    for labels, v in samples:
        lab = ",".join(f'{k}="{_esc(str(val))}"' for k, val in labels.items())
        out.append(f"{name}{{{lab}}} {v}" if lab else f"{name} {v}")
    return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
