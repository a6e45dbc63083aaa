"""A real Ray cluster of several nodes on this machine, on loopback, for tests and benchmarks.

    with RayNodes(nodes=2, cpus=1) as cluster:
        run(..., address=cluster.address)

Every node is a ``ray start`` of its own (the head, then ``--address`` for the others), with a unique
port and temporary folder. Stopping ends exactly the processes of this cluster, by id (those whose
command line names its temporary folder or ports, and their children), never ``ray stop``, which
would end every Ray cluster of this user on the machine.

The cluster uses Ray's token authentication with a token of this process (``AUTH_ENV``): nothing is
read from or written to ``~/.ray``, and no other local user can submit work to it. A driver in this
process needs ``os.environ.update(AUTH_ENV)`` before it imports ray (Ray reads the mode once).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 60.0
OBJECT_STORE_BYTES = 100_000_000  # the clips are files on disk; the object store only holds small records
# One token per process: a driver reads the mode and token once.
AUTH_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> list[str]:
    exe = Path(sys.executable).with_name("ray")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "ray.scripts.scripts"]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of this user's processes."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if d.stat().st_uid != os.getuid():
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = (ppid, cmd)
    return out


class RayNodes:
    def __init__(self, nodes: int = 2, cpus: int = 1, timeout: float = START_TIMEOUT_S) -> None:
        self.nodes, self.cpus, self.timeout = nodes, cpus, timeout
        self.tmp = Path(tempfile.mkdtemp(prefix="esray", dir="/tmp"))  # short: Ray's socket paths have a limit
        self.port, self.client_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.node_pids: list[set[int]] = []  # per node, the processes it started

    def _start(self, extra: list[str]) -> None:
        before = set(self.pids())
        cmd = [*ray_cli(), "start", f"--num-cpus={self.cpus}", "--node-ip-address=127.0.0.1",
               f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats", *extra]
        env = {**os.environ, **AUTH_ENV}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, env=env)
        if done.returncode:
            raise RuntimeError(f"ray start failed: {done.stderr.strip().splitlines()[-1:]}")
        self.node_pids.append(set(self.pids()) - before)

    def start(self) -> RayNodes:
        try:
            self._start(["--head", f"--port={self.port}", f"--temp-dir={self.tmp}", "--include-dashboard=false",
                         f"--ray-client-server-port={self.client_port}"])
            for _ in range(self.nodes - 1):
                self._start([f"--address={self.address}"])
        except BaseException:
            self.stop()
            raise
        return self

    def pids(self) -> list[int]:
        """This cluster's processes: those naming its folder, and all their descendants."""
        procs = _processes()
        marks = (str(self.tmp), f"127.0.0.1:{self.port} ", f"--port={self.client_port} ", f":{self.port} --host")
        mine = {pid for pid, (_, cmd) in procs.items() if any(m in cmd + " " for m in marks) and pid != os.getpid()}
        grew = True
        while grew:
            kids = {pid for pid, (ppid, _) in procs.items() if ppid in mine and pid not in mine and pid != os.getpid()}
            grew = bool(kids)
            mine |= kids
        return sorted(mine)

    def node_of(self, pid: int) -> int | None:
        """Which node (index in start order) a process, e.g. an actor's worker, runs under."""
        procs = _processes()
        while pid in procs and pid > 1:
            for i, pids in enumerate(self.node_pids):
                if pid in pids:
                    return i
            pid = procs[pid][0]
        return None

    def kill_node(self, index: int) -> None:
        """SIGKILL one node's processes and their children, its workers (a machine that goes down)."""
        procs = _processes()
        doomed = {pid for pid in self.node_pids[index] if pid in procs}
        grew = True
        while grew:
            kids = {pid for pid, (ppid, _) in procs.items() if ppid in doomed and pid not in doomed}
            grew = bool(kids)
            doomed |= kids
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self, grace: float = 2.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while pids and time.monotonic() < deadline:
                time.sleep(0.1)
                pids = [p for p in pids if Path(f"/proc/{p}").exists() and _alive(p)]
            if not pids:
                break
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RayNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
