"""Name -> algorithm class, and algorithm -> the spiking RLModule it trains.

RLlib's own registry (PPO, APPO, IMPALA, DQN, SAC, ...) plus what this package adds. Looking a
name up imports the algorithm but starts no Ray processes, so configs are checked before Ray runs.
"""

from __future__ import annotations

from ray.rllib.algorithms.registry import ALGORITHMS as RLLIB_ALGORITHMS
from ray.rllib.core.rl_module.rl_module import RLModule

# Algorithms of this package, name -> "module:Class" (filled in as algorithms land).
_OWN_ALGORITHMS: dict[str, str] = {
    "TD3": "rllib_grsn.algorithms.off_policy.algorithm:TD3",
    "RecurrentSAC": "rllib_grsn.algorithms.off_policy.algorithm:RecurrentSAC",
    "QMIX": "rllib_grsn.algorithms.qmix.algorithm:QMix",
    "VDN": "rllib_grsn.algorithms.qmix.algorithm:VDN",
}

ALGORITHM_NAMES: tuple[str, ...] = tuple(sorted({*RLLIB_ALGORITHMS, *_OWN_ALGORITHMS}))

# Which of our RLModules an algorithm trains when `model_config.core` picks a neuron core. Only
# what is tested end to end is listed (APPO would also need RLlib's TargetNetworkAPI).
_SPIKING_MODULES: dict[str, str] = {
    "PPO": "rllib_grsn.modules.actor_critic:SpikingActorCriticModule",
    "TD3": "rllib_grsn.modules.twin_q:SpikingTD3Module",
    "RecurrentSAC": "rllib_grsn.modules.twin_q:SpikingSACModule",
    "QMIX": "rllib_grsn.modules.qmix:SpikingQMixModule",
    "VDN": "rllib_grsn.modules.qmix:SpikingQMixModule",
}


def _import(path: str) -> type:
    module_name, _, attr = path.partition(":")
    module = __import__(module_name, fromlist=[attr])
    return getattr(module, attr)


def get_algorithm_class(name: str) -> type:
    """The Algorithm class registered as ``name``; ValueError listing the names otherwise."""
    if name in _OWN_ALGORITHMS:
        return _import(_OWN_ALGORITHMS[name])
    if name in RLLIB_ALGORITHMS:
        return RLLIB_ALGORITHMS[name]()[0]
    raise ValueError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHM_NAMES)}")


def spiking_module_class(name: str) -> type[RLModule]:
    """The RLModule class ``name`` trains on a neuron core; ValueError if it has none yet."""
    if name not in _SPIKING_MODULES:
        raise ValueError(
            f"algorithm {name!r} has no spiking RLModule; neuron cores (model_config.core) work with: "
            f"{', '.join(sorted(_SPIKING_MODULES))}"
        )
    return _import(_SPIKING_MODULES[name])


def algorithms_with_spiking_modules() -> tuple[str, ...]:
    return tuple(sorted(_SPIKING_MODULES))
