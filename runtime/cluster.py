"""Archive inference on a Ray cluster: one video file per task, on actors that each hold a Segmenter.

Ray is optional (``pip install 'edgeseg[ray]'``) and imported only here, only when used. Each actor
asks Ray for ``cpus_per_actor`` CPUs and gives its Segmenter that many inference threads, so a
node runs as many actors as it has CPUs to spare; actors are spread over the nodes. Inputs,
outputs and the model are read and written by path: every node must see them at the same path
(one machine, or a shared filesystem).

A worker process that dies (killed, out of memory) is restarted by Ray and the file it held goes
back into the queue (up to ``max_attempts`` tries); a node that leaves the cluster takes its
actors with it and the remaining actors finish the work. If no actor is left for
``restart_wait_s`` seconds the run stops with :class:`ClusterLostError`; every finished file is
already in the manifest, so a rerun resumes.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .archive import Job, process_file
from .errors import BackendUnavailableError, SourceError, UsageError

CONNECT_TIMEOUT_S = 30.0  # ray.init can wait forever on an address that accepts but never answers
ACTOR_START_TIMEOUT_S = 120.0  # an actor imports numpy, OpenCV and ONNX Runtime and loads the model
# Files are handed out once every actor is up, or this long after the first one is: actors load the
# model side by side, and a late node still gets its share of a short archive.
SPREAD_WAIT_S = 10.0
RESTART_WAIT_S = 60.0  # how long a run waits for a restarted actor when none is left
MAX_ATTEMPTS = 3  # tries per file when the worker holding it dies
POLL_S = 0.5
HELLO_RETRY_S = 0.5  # how soon to ask again an actor Ray said is still restarting
RAY_CLIENT_PORT = 10001
MAX_ACTORS = 1024


class ClusterLostError(SourceError):
    """The cluster lost every worker mid-run (nodes left, or actors could not restart)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError("--ray needs Ray, which is not installed: pip install 'edgeseg[ray]'") from None
    return ray


# -- connecting -------------------------------------------------------------------------------------
def parse_address(address: str | None) -> tuple[str | None, tuple[str, int] | None]:
    """``(address for ray.init, (host, port) to probe first)``. None or ``"local"``: a new local
    cluster; ``"auto"``: the cluster started on this machine by ``ray start``; ``ray://host:port``
    (Ray Client) or ``host:port`` (a head node's GCS port)."""
    if address in (None, "", "local"):
        return None, None
    if address == "auto":
        return "auto", None
    text = address if "://" in address else f"gcs://{address}"
    parts = urlsplit(text)
    if parts.scheme not in ("ray", "gcs") or not parts.hostname or parts.path not in ("", "/"):
        raise UsageError(f"--ray {address!r} is not a Ray address; give ray://HOST:10001, HOST:PORT of a head "
                         "node, 'auto' (the cluster on this machine), or nothing for a local cluster")
    try:
        port = parts.port or (RAY_CLIENT_PORT if parts.scheme == "ray" else None)
    except ValueError:
        port = None
    if port is None:
        raise UsageError(f"--ray {address!r} needs a port, e.g. {parts.hostname}:6379 or ray://{parts.hostname}:10001")
    return (address if parts.scheme == "ray" else f"{parts.hostname}:{port}"), (parts.hostname, port)


def connect(address: str | None, timeout: float = CONNECT_TIMEOUT_S, num_cpus: int | None = None) -> Any:
    """``ray.init`` with a deadline for an existing cluster (it can wait forever on an address that
    accepts but never answers); returns the ray module. A new local cluster gets ``num_cpus``.
    Already connected (``ray.init`` done by the caller): that connection is used."""
    ray = import_ray()
    target, probe = parse_address(address)
    if ray.is_initialized():
        return ray
    if probe is not None:
        try:
            socket.create_connection(probe, timeout=min(timeout, 10.0)).close()
        except OSError as e:
            raise SourceError(f"no Ray cluster at {address} ({e.strerror or e}); start one with 'ray start --head', "
                              "check the address, or drop it to run a local cluster") from None
    kw: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    if target is None:
        # In this thread: Ray ties the processes it starts to the starting thread's life (Linux's
        # parent-death signal is per thread), so a helper thread's exit would kill the new cluster.
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kw)
        except Exception as e:
            raise SourceError(f"cannot start a local Ray cluster: {_reason(e)}") from None
        return ray
    outcome: dict[str, Any] = {}

    def init() -> None:
        try:
            ray.init(address=target, **kw)
        except Exception as e:  # reported below, in the caller's thread
            outcome["error"] = e

    t = threading.Thread(target=init, name="ray-connect", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise SourceError(f"Ray did not connect to {address} within {timeout:.0f} s; check that the address is a Ray "
                          "head node and that its Ray version matches this one")
    if "error" in outcome:
        raise SourceError(f"cannot connect to Ray ({address}): {_reason(outcome['error'])}")
    return ray


@contextlib.contextmanager
def connected(address: str | None, timeout: float = CONNECT_TIMEOUT_S, num_cpus: int | None = None) -> Iterator[Any]:
    """:func:`connect`, and ``ray.shutdown()`` at the end if this call made the connection."""
    ray = import_ray()
    owned = not ray.is_initialized()
    ray = connect(address, timeout, num_cpus)
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


# -- the actor --------------------------------------------------------------------------------------
class ArchiveWorker:
    """One Segmenter per actor; its threads are the CPUs Ray gave the actor."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        import ray

        from .segmenter import Segmenter

        ctx = ray.get_runtime_context()
        cpus = ctx.get_assigned_resources().get("CPU", 1.0)
        self.threads = max(1, int(cpus))
        self.node = ctx.get_node_id()
        self.seg = Segmenter(model, threads=self.threads, **options)

    def hello(self) -> dict[str, Any]:
        return {"node": self.node, "pid": os.getpid(), "threads": self.threads}

    def run(self, job: Job, render: str, alpha: float, max_frames: int | None) -> dict[str, Any]:
        record = process_file(self.seg, job, render=render, alpha=alpha, max_frames=max_frames)
        record.update(node=self.node, pid=os.getpid())
        return record


@dataclass
class _Actor:
    handle: Any
    node: str = ""
    pid: int = 0
    busy: bool = False
    up: bool = False
    deaths: int = 0  # past the actor's restarts it is gone for good


@dataclass
class ClusterRun:
    """What a run did: its records in the order files finished, and the nodes that took part."""

    records: list[dict[str, Any]] = field(default_factory=list)
    actors: int = 0
    nodes_lost: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def nodes(self) -> set[str]:
        return {r["node"] for r in self.records if r.get("node")}


def cluster_cpus(ray: Any) -> int:
    return int(ray.cluster_resources().get("CPU", 0))


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


# -- the scheduler ----------------------------------------------------------------------------------
class _Scheduler:
    """Hands jobs to idle actors, one at a time each, and requeues the file of a worker that died."""

    def __init__(self, ray: Any, jobs: Sequence[Job], model: str, options: dict[str, Any], task: tuple,
                 actors: int, cpus_per_actor: float, max_attempts: int, restart_wait_s: float,
                 file_timeout_s: float | None, on_record: Callable[[dict[str, Any]], None],
                 on_event: Callable[[str, dict], None]) -> None:
        self.ray, self.task, self.max_attempts, self.restart_wait_s = ray, task, max_attempts, restart_wait_s
        self.file_timeout_s = file_timeout_s
        self.started_at: dict[Any, float] = {}  # run task -> when it was handed out
        self.timed_out: set[Any] = set()
        self.on_record, self.on_event = on_record, on_event
        self.queue: collections.deque[tuple[Job, int]] = collections.deque((j, 1) for j in jobs)
        # Ray restarts a dead actor without limit; this scheduler stops asking one that died
        # max_attempts times (deaths), and retries files itself (it knows why they failed).
        remote = ray.remote(ArchiveWorker).options(num_cpus=cpus_per_actor, max_restarts=-1,
                                                   max_task_retries=0, scheduling_strategy="SPREAD")
        self.actors = [_Actor(remote.remote(model, options)) for _ in range(actors)]
        self.pending: dict[Any, tuple[str, _Actor, Job | None, int]] = {}
        for a in self.actors:
            self.pending[a.handle.hello.remote()] = ("hello", a, None, 0)
        self.run = ClusterRun(actors=actors)
        self.started = time.monotonic()
        self.none_up_since: float | None = None
        self.first_up: float | None = None
        self.first_failure = ""
        self.hello_later: list[tuple[float, _Actor]] = []  # (when, actor): hellos to send again
        # Raised for a call to an actor Ray is restarting (e.g. after a --file-timeout kill): not a death.
        self.unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())

    def loop(self, stop: threading.Event) -> ClusterRun:
        while self.queue or any(kind == "run" for kind, *_ in self.pending.values()):
            if stop.is_set():
                self.run.stopped = True
                break
            self._assign()
            self._send_due_hellos()
            self._check_alive()
            self._check_deadlines()
            if not self.pending:  # every actor is between two hellos (restarting)
                time.sleep(HELLO_RETRY_S / 5)
                continue
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                self._collect(ref)
        return self.run

    def _assign(self) -> None:
        if self.first_up is None:
            return
        starting = any(kind == "hello" for kind, *_ in self.pending.values()) and not self.run.records
        if starting and time.monotonic() - self.first_up < SPREAD_WAIT_S:
            return
        for a in self.actors:
            if a.up and not a.busy and self.queue:
                job, attempt = self.queue.popleft()
                a.busy = True
                ref = a.handle.run.remote(job, *self.task)
                self.pending[ref] = ("run", a, job, attempt)
                self.started_at[ref] = time.monotonic()
                self.on_event("start", {"input": str(job.input), "node": a.node, "pid": a.pid, "attempt": attempt})

    def _check_deadlines(self) -> None:
        """A file past ``file_timeout_s`` (a hung decoder, a stalled network mount) costs its worker:
        the actor is killed and restarted, the file is reported as failed and not retried."""
        if not self.file_timeout_s:
            return
        now = time.monotonic()
        for ref, started in list(self.started_at.items()):
            if ref not in self.timed_out and now - started > self.file_timeout_s:
                self.timed_out.add(ref)
                actor = self.pending[ref][1]
                self.ray.kill(actor.handle, no_restart=False)

    def _collect(self, ref: Any) -> None:
        kind, actor, job, attempt = self.pending.pop(ref)
        self.started_at.pop(ref, None)
        try:
            value = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:  # the worker process or its node died
            if ref in self.timed_out and job is not None:
                self.timed_out.discard(ref)
                actor.up = actor.busy = False
                self.pending[actor.handle.hello.remote()] = ("hello", actor, None, 0)
                self._record(job, attempt, actor, "failed", f"took longer than {self.file_timeout_s:g} s "
                             "(--file-timeout); its worker was restarted")
                return
            if job is None and isinstance(e, self.unavailable):  # still restarting: ask again shortly
                self.hello_later.append((time.monotonic() + HELLO_RETRY_S, actor))
                return
            self._actor_died(actor, job, attempt, e)
            return
        except self.ray.exceptions.RayError as e:  # failed outside process_file (e.g. cannot pickle)
            if job is not None:
                actor.busy = False
                self._record(job, attempt, actor, "failed", _reason(e))
            else:
                self._actor_died(actor, None, 0, e)
            return
        if kind == "hello":
            actor.node, actor.pid, actor.up = value["node"], value["pid"], True
            self.first_up = self.first_up or time.monotonic()
            return
        actor.busy = False
        value["attempts"] = attempt
        self.run.records.append(value)
        self.on_record(value)

    def _actor_died(self, actor: _Actor, job: Job | None, attempt: int, e: BaseException) -> None:
        actor.up = actor.busy = False
        actor.deaths += 1
        self.first_failure = self.first_failure or _reason(e)
        if job is not None:
            if attempt < self.max_attempts:
                self.queue.appendleft((job, attempt + 1))
                self.on_event("retry", {"input": str(job.input), "node": actor.node, "attempt": attempt + 1,
                                        "reason": _reason(e)})
            else:
                self._record(job, attempt, actor, "failed",
                             f"the worker holding it died {attempt} times (last: {_reason(e)})")
        # Ray restarts the actor (on another node if its own is gone); ask it when it is back.
        if actor.deaths <= self.max_attempts:
            self.pending[actor.handle.hello.remote()] = ("hello", actor, None, 0)

    def _send_due_hellos(self) -> None:
        now = time.monotonic()
        for _, actor in [h for h in self.hello_later if h[0] <= now]:
            self.pending[actor.handle.hello.remote()] = ("hello", actor, None, 0)
        self.hello_later = [h for h in self.hello_later if h[0] > now]

    def _record(self, job: Job, attempt: int, actor: _Actor, status: str, error: str) -> None:
        rec = {"input": str(job.input), "output": str(job.output), "frames": 0, "fps": 0.0, "status": status,
               "error": error, "node": actor.node, "attempts": attempt}
        self.run.records.append(rec)
        self.on_record(rec)

    def _check_alive(self) -> None:
        if any(a.up for a in self.actors):
            self.none_up_since = None
            return
        now = time.monotonic()
        self.none_up_since = self.none_up_since or now
        limit = ACTOR_START_TIMEOUT_S if not self.run.records else self.restart_wait_s
        waiting = any(kind == "hello" for kind, *_ in self.pending.values()) or bool(self.hello_later)
        if now - self.none_up_since > limit or not waiting:
            self.lost_nodes()
            why = f" (last failure: {self.first_failure})" if self.first_failure else ""
            raise ClusterLostError(f"no Ray worker is left{why}; {len(self.run.records)} "
                                   f"files finished and are in the manifest, {len(self.queue)} are not: rerun the "
                                   "same command to resume")

    def lost_nodes(self) -> None:
        known = {a.node for a in self.actors if a.node}
        alive = {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}
        self.run.nodes_lost = sorted(known - alive)


def run_jobs(jobs: Sequence[Job], model: str, *, address: str | None = None, options: dict[str, Any] | None = None,
             render: str = "overlay", alpha: float = 0.5, max_frames: int | None = None,
             cpus_per_actor: float = 1.0, max_attempts: int = MAX_ATTEMPTS, restart_wait_s: float = RESTART_WAIT_S,
             on_record: Callable[[dict[str, Any]], None] = lambda r: None,
             on_event: Callable[[str, dict], None] = lambda kind, info: None,
             stop: threading.Event | None = None, connect_timeout: float = CONNECT_TIMEOUT_S,
             num_cpus: int | None = None, file_timeout_s: float | None = None) -> ClusterRun:
    """Run ``jobs`` on a Ray cluster (``address``: see :func:`parse_address`). ``on_record(record)``
    sees each file's manifest record as it finishes (in the calling thread); ``on_event`` sees
    ``"start"``, ``"retry"`` and ``"node_lost"``. ``stop`` ends the run after the files in flight
    are abandoned (their outputs are never published half-written). ``num_cpus``: the CPUs of a new
    local cluster. A connection made here is closed at the end; one the caller made is kept.
    ``file_timeout_s``: a file still running after this long fails (None: no limit)."""
    if file_timeout_s is not None and not file_timeout_s > 0:
        raise UsageError(f"file timeout {file_timeout_s} must be a positive number of seconds")
    if cpus_per_actor <= 0:
        raise UsageError(f"CPUs per actor must be positive, got {cpus_per_actor}")
    with connected(address, connect_timeout, num_cpus) as ray:
        actors = max(1, min(len(jobs), MAX_ACTORS, int(cluster_cpus(ray) // cpus_per_actor)))
        sched = _Scheduler(ray, jobs, model, dict(options or {}), (render, alpha, max_frames), actors, cpus_per_actor,
                           max_attempts, restart_wait_s, file_timeout_s, on_record, on_event)
        try:
            run = sched.loop(stop or threading.Event())
            sched.lost_nodes()
        finally:
            for a in sched.actors:
                ray.kill(a.handle)
        for node in run.nodes_lost:
            on_event("node_lost", {"node": node})
        return run

