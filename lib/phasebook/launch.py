"""Running a phasebook command on several processes with torchrun, and explaining how it failed.

`phasebook pretrain --nproc-per-node N` and `phasebook bench parallel` re-run a module of this
package under `python -m torch.distributed.run`. Their output is passed through as it comes and
its end kept, so that when the job fails the user reads one paragraph — which rank died first and
how — rather than searching the interleaved tracebacks of every rank for it.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from phasebook.errors import PhasebookError

# Lines of output kept for explaining a failure: torchrun's report comes last.
_KEPT_LINES = 400

MONITOR_INTERVAL = 2  # seconds between torchrun's checks of its workers


@dataclass(frozen=True)
class Rendezvous:
    """How many processes run where, as torchrun's options: N processes on each of M nodes.

    One node gets torchrun's standalone rendezvous (a free local port, so several jobs on one
    machine never collide); several nodes meet at `endpoint`, HOST:PORT of node 0, and each node
    is started with its own `node_rank`. `max_restarts` is how often torchrun restarts every rank
    after one failed.
    """

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    endpoint: str | None = None
    max_restarts: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.nproc_per_node < 1:
            problems.append(f"--nproc-per-node {self.nproc_per_node}: give at least 1 process per node.")
        if self.nnodes < 1:
            problems.append(f"--nnodes {self.nnodes}: give at least 1 node.")
        elif not 0 <= self.node_rank < self.nnodes:
            problems.append(f"--node-rank {self.node_rank}: must be in [0, {self.nnodes - 1}] for "
                            f"--nnodes {self.nnodes}.")
        if self.nnodes > 1 and self.endpoint is None:
            problems.append(f"--nnodes {self.nnodes}: several nodes need --rdzv-endpoint HOST:PORT, the "
                            "address of node 0 and a free port there, the same on every node.")
        if self.endpoint is not None and not re.fullmatch(r"[^\s:]+:\d{1,5}", self.endpoint):
            problems.append(f"--rdzv-endpoint {self.endpoint!r}: write HOST:PORT, e.g. 10.0.0.1:29500.")
        if self.max_restarts < 0:
            problems.append(f"--max-restarts {self.max_restarts}: must be 0 or more.")
        if problems:
            raise PhasebookError("\n".join(problems))

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def torchrun_options(self) -> list[str]:
        # MONITOR_INTERVAL: when a rank dies, the others get that long to report which peer they
        # lost (the message a user needs) before torchrun stops them.
        options = [f"--nproc-per-node={self.nproc_per_node}", f"--nnodes={self.nnodes}",
                   f"--max-restarts={self.max_restarts}", f"--monitor-interval={MONITOR_INTERVAL}"]
        if self.endpoint is None:
            return [*options, "--standalone"]
        host, port = self.endpoint.rsplit(":", 1)
        # The static rendezvous: node ranks in the order given, node 0 serving the meeting point.
        return [*options, f"--node-rank={self.node_rank}", f"--master-addr={host}", f"--master-port={port}"]


def torchrun_command(rendezvous: Rendezvous, module: str, args: Sequence[str]) -> list[str]:
    """The command line that runs `python -m module args...` on every rank of `rendezvous`."""
    return [sys.executable, "-m", "torch.distributed.run", *rendezvous.torchrun_options(),
            "-m", module, *args]


def under_torchrun() -> bool:
    """True in a process that torchrun started (a rank)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def rank_environment(nproc_per_node: int) -> dict[str, str]:
    """The environment for the ranks: unbuffered output (so that lines arrive as they are
    printed) and, unless the user chose otherwise, the machine's cores shared among the ranks
    (torchrun would give each rank one thread)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    return env


@dataclass(frozen=True)
class JobOutcome:
    returncode: int
    output: str  # the last lines of stdout and stderr together
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.interrupted


def _pass_through(stream: TextIO, target: TextIO, kept: collections.deque[str]) -> None:
    for line in stream:
        target.write(line)
        target.flush()
        kept.append(line)


def run_job(command: Sequence[str], env: dict[str, str] | None = None) -> JobOutcome:
    """Run `command`, passing its stdout and stderr through line by line; keep their end."""
    kept: collections.deque[str] = collections.deque(maxlen=_KEPT_LINES)
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               bufsize=1, env=env)
    copiers = [threading.Thread(target=_pass_through, args=(source, target, kept), daemon=True)
               for source, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))]
    for copier in copiers:
        copier.start()
    interrupted = False
    try:
        returncode = process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached torchrun too; it stops the ranks and reports
        interrupted = True
        returncode = process.wait()
    for copier in copiers:
        copier.join()
    return JobOutcome(returncode, "".join(kept), interrupted)


@dataclass(frozen=True)
class RankExit:
    """One failed rank in torchrun's report."""

    rank: int
    local_rank: int
    host: str
    exitcode: int

    @property
    def how(self) -> str:
        """"killed by SIGKILL" or "exit code 2"."""
        if self.exitcode < 0:
            try:
                return f"killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                return f"killed by signal {-self.exitcode}"
        return f"exit code {self.exitcode}"


_ENTRY_START = re.compile(r"^\s*\[\d+\]:\s*$", re.MULTILINE)
_FIELD = re.compile(r"^\s*(\w+)\s*:\s*(.*?)\s*$", re.MULTILINE)
_RANK = re.compile(r"(\d+)\s*\(local_rank:\s*(\d+)\)")
_LOST_CONTACT = re.compile(r"rank (\d+) lost contact with the other ranks")


def failed_ranks(output: str) -> list[RankExit]:
    """The failed ranks of torchrun's final report, the one it calls the root cause first."""
    start = output.rfind("Failures:")
    if start < 0:
        return []
    report = output[start:]
    root_at = report.find("Root Cause")
    starts = [m.end() for m in _ENTRY_START.finditer(report)]
    entries = []
    for begin, end in zip(starts, [*starts[1:], len(report)], strict=True):
        fields = dict(_FIELD.findall(report[begin:end]))
        rank = _RANK.match(fields.get("rank", ""))
        code = re.match(r"-?\d+", fields.get("exitcode", ""))
        if rank and code:
            is_root = 0 <= root_at < begin
            exit_ = RankExit(int(rank[1]), int(rank[2]), fields.get("host", "?"), int(code[0]))
            entries.append((not is_root, exit_))
    found: dict[int, RankExit] = {}
    for _, exit_ in sorted(entries, key=lambda e: e[0]):  # the root cause first
        found.setdefault(exit_.rank, exit_)
    return list(found.values())


def explain_failure(outcome: JobOutcome) -> str:
    """One sentence on which rank made the job fail, from torchrun's report and the ranks' own
    errors. A rank that reported losing contact with the others, or that torchrun stopped
    (SIGTERM), was a victim: the cause is another one, whichever torchrun happened to see first."""
    if outcome.interrupted:
        return "The job was interrupted (Ctrl-C)."
    failed = failed_ranks(outcome.output)
    if not failed:
        return (f"torchrun exited with code {outcome.returncode} before any rank reported a failure "
                "(see its output above).")
    victims = {int(r) for r in _LOST_CONTACT.findall(outcome.output)}
    first = min(failed, key=lambda f: (f.rank in victims, f.exitcode == -signal.SIGTERM))
    text = f"Rank {first.rank} (local rank {first.local_rank} on {first.host}) failed first: {first.how}."
    others = sorted({f.rank for f in failed} - {first.rank})
    if others:
        text += (f" Rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} then stopped"
                 + (" after losing contact with it." if victims & set(others) else "."))
    return text
