"""Checkpoints of tiny algorithms trained for one iteration, for the tests that load checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

import rllib_grsn.envs


def train_and_save(configs: dict[str, Any], root: Path) -> dict[str, Path]:
    """Builds each AlgorithmConfig, trains it one iteration and saves it under ``root / name``."""
    # address="local": never join a cluster another test module runs (see conftest.ray_session).
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rllib_grsn.envs.register_multi_agent_envs()
        paths = {}
        for name, config in configs.items():
            algo = config.build_algo()
            try:
                algo.train()
                paths[name] = Path(algo.save_to_path(root / name))
            finally:
                algo.stop()
    finally:
        ray.shutdown()
    # ray.shutdown() drops Tune's env registry; the evaluation runners build envs in-process.
    rllib_grsn.envs.register_multi_agent_envs()
    return paths
