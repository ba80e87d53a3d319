"""Stateful actor-critic RLModule on a spiking core, for RLlib's PPO.

State ``{"u", "c"}`` (GRSN, LIF) or ``{"h"}`` (GRU) is carried by RLlib's connectors: zeros at
every episode start (``get_initial_state``), the previous step's ``state_out`` during rollout, and
the recorded state at the start of each ``max_seq_len`` training chunk. Cores without state
(``mlp``, ``*_notap``) make the module stateless, and RLlib then feeds [B, ...] batches with no
time axis.

Policy and value heads share the encoder and the core (RLlib's ``vf_share_layers=True``): one
spiking layer per agent, as in the paper's Algorithm 1, so the value loss also trains the core.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override

from rllib_grsn.modules.backbone import MLP, SPIKE_RATE, RecurrentBackbone
from rllib_grsn.modules.model_config import SpikingModelConfig


def action_dist_input_size(action_space: gym.Space) -> int:
    """Logits for Discrete, mean and log-std for Box (RLlib's TorchCategorical / TorchDiagGaussian)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.Box):
        return 2 * int(np.prod(action_space.shape))
    raise ValueError(f"unsupported action space {action_space}; use Discrete or Box")


class SteadyTrainModeMixin:
    """Makes ``train(mode)`` a no-op when the mode does not change.

    RLlib calls eval() before and train() after every acting forward pass, and torch walks all
    submodules each time (measured: ~30% of PPO sampling time on CartPole-P). The spiking modules
    have nothing that depends on the flag (no dropout, no batch norm). Put it before TorchRLModule.
    """

    def train(self, mode: bool = True):  # type: ignore[no-untyped-def]
        if mode == self.training and all(m.training == mode for m in self.children()):
            return self
        return super().train(mode)


class SpikingActorCriticModule(SteadyTrainModeMixin, TorchRLModule, ValueFunctionAPI):
    """Encoder -> neuron core (one update per env step) -> policy and value heads."""

    @override(TorchRLModule)
    def setup(self) -> None:
        self.spiking_config = SpikingModelConfig.from_model_config(self.model_config or {})
        self.backbone = RecurrentBackbone(self.observation_space, self.spiking_config)
        heads = self.spiking_config.head_hiddens
        self.pi_head = MLP(self.backbone.output_size, heads, action_dist_input_size(self.action_space))
        self.vf_head = MLP(self.backbone.output_size, heads, 1)
        if self.inference_only:
            # EnvRunner copies only act; starting them in eval mode lets `train()` below skip
            # RLlib's per-step eval()/train() round trip.
            self.eval()

    @override(TorchRLModule)
    def get_initial_state(self) -> dict[str, np.ndarray]:
        # On the CPU: RLlib calls this on the Learner's copy too, which may live on a GPU.
        state = self.backbone.initial_state(1, device="cpu")
        return {key: value.squeeze(0).numpy() for key, value in state.items()}

    def _features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obs = batch[Columns.OBS]
        if self.is_stateful():
            return self.backbone(obs, batch[Columns.STATE_IN])
        # Stateless core: RLlib gives [B, ...]; run it as B sequences of length 1.
        obs = {k: v.unsqueeze(1) for k, v in obs.items()} if isinstance(obs, dict) else obs.unsqueeze(1)
        features, _ = self.backbone(obs, {})
        return features.squeeze(1), {}

    def _outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        features, state_out = self._features(batch)
        out = {Columns.ACTION_DIST_INPUTS: self.pi_head(features), Columns.EMBEDDINGS: features}
        if self.is_stateful():
            out[Columns.STATE_OUT] = state_out
        return out

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._outputs(batch)
        out.pop(Columns.EMBEDDINGS)
        return out

    @override(TorchRLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # Embeddings go to the learner so compute_values reuses them instead of unrolling again.
        out = self._outputs(batch)
        # The core's firing rate per step ([B, T], or [B] when stateless) for the learner's
        # firing-rate penalty and metric; only here, so acting (_forward) does not compute it.
        rate = self.backbone.spike_rate(out[Columns.EMBEDDINGS])
        if rate is not None:
            out[SPIKE_RATE] = rate
        return out

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> torch.Tensor:
        if embeddings is None:
            embeddings, _ = self._features(batch)
        return self.vf_head(embeddings).squeeze(-1)
