"""What a run depends on outside its YAML, checked in seconds before Ray starts (or, for a cluster,
right after connecting): the resources a trial asks for, the storage path and the Ray address.

Without these checks Tune waits forever for CPUs or a GPU the machine does not have, and a storage
path that cannot be written fails after Ray has started.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

# URI schemes Tune's storage (pyarrow.fs) accepts besides local paths.
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az", "file", "mock")
CONNECT_TIMEOUT_S = 5.0
GCS_TIMEOUT_S = 15.0


def trial_request(algorithm: type, config: AlgorithmConfig) -> dict[str, float]:
    """CPUs and GPUs one trial asks for, as RLlib computes them (its placement group's total)."""
    request = algorithm.default_resource_request(config).required_resources
    return {kind: float(request.get(kind, 0.0)) for kind in ("CPU", "GPU")}


def _breakdown(config: AlgorithmConfig, kind: str) -> str:
    """Which settings make up a request, e.g. ``1 (main process) + num_env_runners 2 x
    num_cpus_per_env_runner 1``: what a user can lower."""
    c = config
    if kind == "CPU":
        terms = [
            ("num_env_runners", c.num_env_runners, "num_cpus_per_env_runner", c.num_cpus_per_env_runner),
            (
                "evaluation_num_env_runners",
                c.evaluation_num_env_runners,
                "num_cpus_per_env_runner",
                c.num_cpus_per_env_runner,
            ),
            (
                "num_learners",
                c.num_learners * (not c.num_gpus_per_learner),
                "num_cpus_per_learner",
                c.num_cpus_per_learner,
            ),
        ]
        parts = [f"{c.num_cpus_for_main_process:g} (main process)"]
    else:
        terms = [
            ("num_learners", max(c.num_learners, 1), "num_gpus_per_learner", c.num_gpus_per_learner),
            ("num_env_runners", c.num_env_runners, "num_gpus_per_env_runner", c.num_gpus_per_env_runner),
        ]
        parts = []
    parts += [
        f"{name} {count:g} x {each} {per:g}"
        for name, count, each, per in terms
        if count and per != "auto" and per
    ]
    return " + ".join(parts)


def resource_problem(
    name: str, request: dict[str, float], available: dict[str, float], where: str, config: AlgorithmConfig
) -> str | None:
    """A line when one trial asks for more CPUs or GPUs than ``available``; ``where`` names what
    has them ("--num-cpus gives", "this machine has", "the cluster at ADDR has")."""
    for kind in ("GPU", "CPU"):
        wanted, have = request.get(kind, 0.0), available.get(kind, 0.0)
        if wanted > have:
            lower = "set config.num_gpus_per_learner: 0" if kind == "GPU" else "lower config.num_env_runners"
            if kind == "CPU" and where.startswith("--num-cpus"):
                lower += " or raise --num-cpus"
            needs = f"{wanted:g} {kind}s ({_breakdown(config, kind)})"
            return (
                f"{name}: a trial needs {needs} but {where} {have:g}; {lower}, or run it on a larger "
                "machine or cluster (--address)"
            )
    return None


def local_resources(num_cpus: int | None) -> tuple[dict[str, float], str]:
    """What a local Ray instance started with ``num_cpus`` has, and how to name it in a message."""
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # no usable CUDA runtime: no GPU
        gpus = 0
    cpus = num_cpus or os.cpu_count() or 1
    return {"CPU": float(cpus), "GPU": float(gpus)}, "--num-cpus gives" if num_cpus else "this machine has"


def cluster_resources() -> tuple[dict[str, float], bool]:
    """The connected cluster's CPUs and GPUs now, and whether an autoscaler may add nodes."""
    import ray

    total = ray.cluster_resources()
    return {k: float(total.get(k, 0.0)) for k in ("CPU", "GPU")}, _autoscaling()


def _autoscaling() -> bool:
    """Whether the cluster has an autoscaler with node types to launch: a cluster config in the GCS
    (autoscaler v2), or node types of its own in the v1 monitor's status. Every head runs a monitor;
    without an autoscaling config it only reports the nodes there are, one type per node, named
    ``node_<node id>``."""
    try:
        from ray._private import ray_constants
        from ray._private.state import state
        from ray.experimental.internal_kv import _internal_kv_get

        if state.get_cluster_config() is not None:
            return True
        status = json.loads(_internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS) or "{}")
        types = (status.get("autoscaler_report") or {}).get("node_type_mapping") or {}
        return any(not str(t).startswith("node_") for t in types.values())
    except Exception:  # an older or restricted cluster: treat it as fixed
        return False


def storage_problem(storage_path: str) -> str | None:
    """What keeps Tune from writing results under ``storage_path``, or None (nothing is created)."""
    if "://" in storage_path:
        scheme = storage_path.split("://", 1)[0].lower()
        if scheme not in STORAGE_SCHEMES:
            return f"unknown scheme {scheme}://; Tune accepts a local path or {', '.join(STORAGE_SCHEMES)}"
        if scheme != "file":
            return None  # cloud credentials and buckets are checked by Tune when it first writes
        storage_path = storage_path.split("://", 1)[1]
    path = Path(storage_path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{existing} cannot be written ({err.strerror or err})"
    return None


def address_problem(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Whether a Ray cluster answers at ``address`` (``host:port`` or ``ray://host:port``): the port
    takes a connection within ``timeout_s``, and (not for Ray Client's ``ray://``) the service there
    is Ray's GCS, asked in a subprocess bounded by :data:`GCS_TIMEOUT_S` (``ray.init`` would retry
    for minutes against anything else). ``auto`` and addresses without a port are left to Ray."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        return f"no Ray cluster answers at {address} ({reason} within {timeout_s:g} s); start it or fix it"
    if address.startswith("ray://"):
        return None
    probe = f"import ray._raylet; ray._raylet.GcsClient(address={target!r})"
    try:
        subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=GCS_TIMEOUT_S, check=True)
    except (subprocess.SubprocessError, OSError):
        return f"{address} answers but is not a Ray cluster (no GCS reply within {GCS_TIMEOUT_S:g} s)"
    return None


def describe_request(request: dict[str, Any]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in request.items() if v)
