"""A real single-node SLURM cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd.

Everything lives in one folder: the munge key and socket, slurm.conf, gres.conf with two
placeholder GPU files (so GPU requests schedule), state, spool, logs and pid files. Clients find
the cluster through ``SLURM_CONF``. Only the daemons started here are stopped, by their pid
files. There is no accounting daemon: status comes from squeue.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
NODE = "xiqa-node"


def available() -> bool:
    return all(shutil.which(d) for d in DAEMONS) and shutil.which("sbatch") is not None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _config(root: Path, partitions: dict[str, bool]) -> str:
    ctld_port, slurmd_port = _free_ports(2)
    lines = [
        "ClusterName=xiqatest",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "AuthType=auth/munge",
        f"AuthInfo=socket={root / 'munge.socket'}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "GresTypes=gpu",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SlurmdParameters=config_overrides",  # a GPU node's size on a small test machine
        "SlurmctldTimeout=30",
        "InactiveLimit=0",
        "KillWait=5",
        "MinJobAge=60",
        f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs=16 RealMemory=65536 Gres=gpu:2 State=UNKNOWN",
    ]
    for name, default in partitions.items():
        lines.append(
            f"PartitionName={name} Nodes={NODE} Default={'YES' if default else 'NO'} "
            "MaxTime=INFINITE State=UP"
        )
    return "\n".join(lines) + "\n"


def _wait(predicate, seconds: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in root.glob("*.log")
    )
    raise RuntimeError(f"SLURM test cluster: {what} did not happen in {seconds} s\n{logs}")


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(40):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.25)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def slurm_cluster(root: Path, partitions: dict[str, bool]) -> Iterator[dict[str, str]]:
    """Start the cluster in ``root``; yields the environment for its clients."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    (root / "munge.key").write_bytes(os.urandom(1024))
    os.chmod(root / "munge.key", 0o600)
    for gpu in ("gpu0", "gpu1"):  # placeholder devices (like /dev/null): slurmd wants devices
        try:
            os.mknod(root / gpu, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            (root / gpu).touch()
    conf = root / "slurm.conf"
    conf.write_text(_config(root, partitions))
    (root / "gres.conf").write_text(f"NodeName={NODE} Name=gpu File={root}/gpu[0-1]\n")
    # The plugin's job step strips SLURM_* variables (SLURM_CONF too) before its nested srun;
    # real clusters keep slurm.conf where srun looks by default. This srun restores ours.
    shims = root / "bin"
    shims.mkdir(exist_ok=True)
    srun = shims / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {shutil.which("srun")} "$@"\n')
    srun.chmod(0o755)
    env = {
        **os.environ,
        "SLURM_CONF": str(conf),
        "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
    }
    started = []
    try:
        subprocess.run(
            [
                "munged",
                "--force",
                f"--socket={root / 'munge.socket'}",
                f"--key-file={root / 'munge.key'}",
                f"--pid-file={root / 'munged.pid'}",
                f"--log-file={root / 'munged.log'}",
                f"--seed-file={root / 'munge.seed'}",
            ],
            check=True,
            env=env,
            timeout=30,
        )
        started.append(root / "munged.pid")
        subprocess.run(["slurmctld", "-c", "-f", str(conf)], check=True, env=env, timeout=30)
        started.append(root / "slurmctld.pid")
        subprocess.run(["slurmd", "-N", NODE, "-f", str(conf)], check=True, env=env, timeout=30)
        started.append(root / "slurmd.pid")

        def node_idle() -> bool:
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True
            )
            return out.returncode == 0 and "idle" in out.stdout

        _wait(node_idle, 60, "the node becoming idle", root)
        yield env
    finally:
        for pid_file in reversed(started):
            _stop(pid_file)
