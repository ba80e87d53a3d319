"""Configs shared by the PPO benchmarks: our spiking module vs RLlib's built-in LSTM, same inputs.

Both models see (o_t, a_{t-1}, r_{t-1}) through RLlib's PrevActionsPrevRewards connector and have
one recurrent layer of ``hidden`` units shared by the policy and value heads ([128, 128] each).
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.connectors.env_to_module import FlattenObservations
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rllib_grsn.envs  # noqa: F401
from rllib_grsn.modules import SpikingActorCriticModule, SpikingModelConfig
from rllib_grsn.modules.connectors import PrevActionReward, prev_action_reward_connector

MODELS = ("grsn", "lif", "gru", "lstm")


def _flattened_prev_action_reward(env: Any = None, spaces: Any = None, device: Any = None) -> list:
    # RLlib's default LSTM module needs a flat Box observation.
    return [PrevActionReward(), FlattenObservations()]


def ppo_config(
    model: str,
    *,
    env: str = "CartPole-P",
    hidden: int = 128,
    seed: int = 0,
    train_batch_size: int = 4000,
    minibatch_size: int = 500,
    num_epochs: int = 6,
    max_seq_len: int = 32,
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 1,
    vf_loss_coeff: float = 0.01,
    threshold: float = 1.0,
) -> PPOConfig:
    """PPO on ``env`` with ``model`` in {grsn, lif, gru, mlp, lstm}; ``lstm`` is RLlib's own."""
    config = (
        PPOConfig()
        .environment(env)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner)
        .training(
            lr=3e-4,
            gamma=0.99,
            lambda_=0.95,
            train_batch_size=train_batch_size,
            minibatch_size=minibatch_size,
            num_epochs=num_epochs,
            vf_loss_coeff=vf_loss_coeff,
        )
        .debugging(seed=seed)
    )
    if model == "lstm":
        config.env_runners(env_to_module_connector=_flattened_prev_action_reward)
        config.rl_module(
            model_config={
                "use_lstm": True,
                "lstm_cell_size": hidden,
                "max_seq_len": max_seq_len,
                "fcnet_hiddens": [48],  # = our obs 32 + action 8 + reward 8 embedding
                "head_fcnet_hiddens": [128, 128],
                "vf_share_layers": True,
            }
        )
    else:
        model_config = SpikingModelConfig(
            core=model, hidden=hidden, max_seq_len=max_seq_len, threshold=threshold
        ).model_dump()
        config.env_runners(env_to_module_connector=prev_action_reward_connector)
        config.rl_module(
            rl_module_spec=RLModuleSpec(module_class=SpikingActorCriticModule, model_config=model_config)
        )
    return config
