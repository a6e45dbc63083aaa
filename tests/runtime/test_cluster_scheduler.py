"""The Ray scheduler's bookkeeping against a scripted stand-in for Ray (no cluster): what counts as a
worker's death, and what is only a restart in progress."""

from __future__ import annotations

import threading
import types
from pathlib import Path

import pytest

from edgeseg.runtime import cluster
from edgeseg.runtime.archive import Job


class RayError(Exception):
    pass


class RayActorError(RayError):
    pass


class ActorUnavailableError(RayActorError):
    pass


class Ref:
    def __init__(self, outcome) -> None:  # a value, or an exception to raise on get
        self.outcome = outcome


class Method:
    def __init__(self, outcomes: list) -> None:
        self.outcomes = outcomes

    def remote(self, *args):
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        return Ref(outcome(*args) if callable(outcome) else outcome)


class FakeRay:
    """The calls the scheduler makes; every task is ready at once."""

    exceptions = types.SimpleNamespace(RayError=RayError, RayActorError=RayActorError,
                                       ActorUnavailableError=ActorUnavailableError)

    def __init__(self, hello: list, run: list) -> None:
        self.handle = types.SimpleNamespace(hello=Method(hello), run=Method(run))

    def remote(self, cls):
        return types.SimpleNamespace(options=lambda **kw: types.SimpleNamespace(remote=lambda *a: self.handle))

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        if isinstance(ref.outcome, BaseException):
            raise ref.outcome
        return ref.outcome

    def kill(self, handle, no_restart=False) -> None:
        pass

    def nodes(self) -> list:
        return []


def _done(job: Job, *task) -> dict:
    return {"input": str(job.input), "output": str(job.output), "frames": 5, "fps": 10.0, "status": "ok", "error": ""}


def _schedule(fake: FakeRay, jobs: list[Job], monkeypatch) -> list[dict]:
    monkeypatch.setattr(cluster, "SPREAD_WAIT_S", 0.0)
    monkeypatch.setattr(cluster, "HELLO_RETRY_S", 0.01, raising=False)
    records: list[dict] = []
    sched = cluster._Scheduler(fake, jobs, "m.onnx", {}, ("overlay", 0.5, None), 1, 1.0, 3, 5.0, None,
                               records.append, lambda kind, info: None)
    sched.loop(threading.Event())
    return records


def test_an_actor_still_restarting_is_asked_again_not_counted_dead(monkeypatch, tmp_path: Path) -> None:
    """After its worker died, Ray answers 'temporarily unavailable: the actor is restarting' until it is
    back: more times than a file may be retried, which must not end the run."""
    hello_ok = {"node": "n1", "pid": 1}
    restarting = ActorUnavailableError("The actor is temporarily unavailable: IOError: The actor is restarting.")
    fake = FakeRay(hello=[hello_ok, *[restarting] * 5, hello_ok],
                   run=[RayActorError("the worker died"), _done])
    jobs = [Job(tmp_path / f"{i}.mp4", tmp_path / "out" / f"{i}.mp4") for i in range(2)]
    records = _schedule(fake, jobs, monkeypatch)
    assert sorted(r["input"] for r in records) == sorted(str(j.input) for j in jobs)
    assert all(r["status"] == "ok" for r in records)


def test_an_actor_that_keeps_dying_ends_the_run(monkeypatch, tmp_path: Path) -> None:
    died = RayActorError("the worker died")
    fake = FakeRay(hello=[{"node": "n1", "pid": 1}, died], run=[died])
    with pytest.raises(cluster.ClusterLostError, match="no Ray worker is left"):
        _schedule(fake, [Job(tmp_path / "a.mp4", tmp_path / "out" / "a.mp4")], monkeypatch)
