"""Replay for recurrent off-policy algorithms: episode storage with window sampling."""

from rllib_grsn.algorithms.replay.sequence_replay import START_STATES, SequenceReplayBuffer

__all__ = ["START_STATES", "SequenceReplayBuffer"]
