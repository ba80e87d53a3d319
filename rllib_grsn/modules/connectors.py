"""Env-to-module connector pipelines the spiking modules expect."""

from __future__ import annotations

from typing import Any

from ray.rllib.connectors.env_to_module import PrevActionsPrevRewards


def prev_action_reward_connector(env: Any = None, spaces: Any = None, device: Any = None) -> list:
    """Adds a_{t-1} (one-hot when discrete) and r_{t-1} to each observation (Ni et al. 2022).

    RLlib writes the extended observation back into the episode, so training chunks see exactly
    what acting saw. Module-level so it pickles to remote EnvRunners.
    """
    return [PrevActionsPrevRewards(n_prev_actions=1, n_prev_rewards=1)]
