"""Encoder MLP -> one neuron core, shared by every spiking RLModule (paper Algorithm 1).

The encoder follows pomdp-baselines (Ni et al. 2022), which the paper's code builds on:
``x_t = concat(relu(W_o o_t), relu(W_a a_{t-1}), relu(W_r r_{t-1}))``. The core is updated once per
env step (TAP): a training chunk of T steps is T neuron updates, exactly as acting did. The heads
see the core's output and a separate observation embedding (the "shortcut").
"""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.connectors.env_to_module import PrevActionsPrevRewards
from torch import nn

from rllib_grsn.modules.model_config import SpikingModelConfig
from rllib_grsn.neurons import build_core

ORIG_OBS = PrevActionsPrevRewards.ORIG_OBS_KEY
PREV_ACTIONS = PrevActionsPrevRewards.PREV_ACTIONS_KEY
PREV_REWARDS = PrevActionsPrevRewards.PREV_REWARDS_KEY

# forward_train output: mean spikes per neuron per neuron update of the core at each step.
SPIKE_RATE = "spike_rate"


class MLP(nn.Module):
    """Linear layers with ReLU between them (and after the last one unless it is an output layer).

    ReLU is applied functionally rather than as modules: RLlib runs the module once per env step,
    and every submodule call costs Python overhead there.
    """

    def __init__(self, in_size: int, hiddens: list[int], out_size: int | None = None):
        super().__init__()
        sizes = [in_size, *hiddens]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(sizes[-1], out_size) if out_size is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return x if self.out is None else self.out(x)


def _flat_size(space: gym.Space) -> int:
    return int(gym.spaces.flatdim(space))


class RecurrentBackbone(nn.Module):
    """Embeds (o_t, a_{t-1}, r_{t-1}), runs the core one step per env step, adds the shortcut.

    ``observation_space`` is either a Box (the env's own observation) or the Dict that RLlib's
    :class:`PrevActionsPrevRewards` connector produces (``_orig_obs``, ``prev_n_actions``,
    ``prev_n_rewards``).
    """

    def __init__(self, observation_space: gym.Space, cfg: SpikingModelConfig):
        super().__init__()
        self.cfg = cfg
        if isinstance(observation_space, gym.spaces.Dict) and ORIG_OBS in observation_space.spaces:
            spaces = observation_space.spaces
            obs_size = _flat_size(spaces[ORIG_OBS])
            action_size = _flat_size(spaces[PREV_ACTIONS]) if PREV_ACTIONS in spaces else 0
            reward_size = _flat_size(spaces[PREV_REWARDS]) if PREV_REWARDS in spaces else 0
        else:
            obs_size, action_size, reward_size = _flat_size(observation_space), 0, 0

        self.obs_embed = MLP(obs_size, [cfg.obs_embed])
        self.action_embed = MLP(action_size, [cfg.action_embed]) if action_size and cfg.action_embed else None
        self.reward_embed = MLP(reward_size, [cfg.reward_embed]) if reward_size and cfg.reward_embed else None
        core_in = (
            cfg.obs_embed
            + (cfg.action_embed if self.action_embed is not None else 0)
            + (cfg.reward_embed if self.reward_embed is not None else 0)
        )
        self.core = build_core(
            cfg.core,
            core_in,
            cfg.hidden,
            decay=cfg.decay,
            threshold=cfg.threshold,
            alpha=cfg.initial_surrogate_alpha,  # a schedule's t=0 value; SurrogateAlphaSchedule moves it
            time_steps=cfg.time_steps,
        )
        self.shortcut = MLP(obs_size, [cfg.obs_embed])
        self.output_size = self.core.output_size + cfg.obs_embed

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        return self.core.initial_state(batch_size, device=device)

    def forward(
        self, obs: Any, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``obs`` leaves are [B, T, ...]; returns features [B, T, F] and the state after step T."""
        o = (obs[ORIG_OBS] if isinstance(obs, dict) else obs).flatten(2).float()
        parts = [self.obs_embed(o)]
        if self.action_embed is not None:
            parts.append(self.action_embed(obs[PREV_ACTIONS].flatten(2).float()))
        if self.reward_embed is not None:
            parts.append(self.reward_embed(obs[PREV_REWARDS].flatten(2).float()))
        out, state_out = self.core.unroll(torch.cat(parts, dim=-1), state)
        features = torch.cat([out, self.shortcut(o)], dim=-1)
        return features, state_out

    def spike_rate(self, features: torch.Tensor) -> torch.Tensor | None:
        """Mean firing rate of the core at every step, ``[...]`` from :meth:`forward`'s ``[..., F]``.

        Spikes per neuron per neuron update: a TAP cell fires 0/1 once per env step; a ``*_notap``
        core already outputs its window's rate. Read from the features' first ``H`` columns (the
        core's output, see :meth:`forward`), so acting pays nothing for it. None for cores that do
        not spike (gru, mlp).
        """
        if not getattr(self.core, "is_spiking", False):
            return None
        return features[..., : self.core.output_size].mean(dim=-1)
