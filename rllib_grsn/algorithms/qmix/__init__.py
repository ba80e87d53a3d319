"""QMIX and VDN on RLlib's new API stack: config, team episode replay, learner, algorithm."""

from rllib_grsn.algorithms.qmix.algorithm import VDN, QMix
from rllib_grsn.algorithms.qmix.config import SHARED_MODULE_ID, QMixConfig
from rllib_grsn.algorithms.qmix.episode_replay import TeamEpisode, TeamEpisodeReplay, team_episode

__all__ = [
    "SHARED_MODULE_ID",
    "VDN",
    "QMix",
    "QMixConfig",
    "TeamEpisode",
    "TeamEpisodeReplay",
    "team_episode",
]
