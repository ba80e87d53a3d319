"""RLlib RLModules built on a neuron core."""

from rllib_grsn.modules.actor_critic import SpikingActorCriticModule
from rllib_grsn.modules.backbone import RecurrentBackbone
from rllib_grsn.modules.model_config import SpikingModelConfig, model_config_errors

__all__ = ["RecurrentBackbone", "SpikingActorCriticModule", "SpikingModelConfig", "model_config_errors"]
