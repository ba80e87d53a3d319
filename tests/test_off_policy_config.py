"""TD3Config / RecurrentSACConfig from Python: defaults of the paper's setup, and bad values named."""

from __future__ import annotations

import pytest

from rllib_grsn.algorithms import get_algorithm_class
from rllib_grsn.algorithms.off_policy import TD3, RecurrentSAC, RecurrentSACConfig, TD3Config


def test_registered_names_resolve_to_our_algorithms():
    assert get_algorithm_class("TD3") is TD3
    assert get_algorithm_class("RecurrentSAC") is RecurrentSAC
    assert isinstance(TD3.get_default_config(), TD3Config)


def test_defaults_are_pomdp_baselines_and_td3_papers():
    td3 = TD3Config()
    assert (td3.actor_lr, td3.critic_lr, td3.tau, td3.train_batch_size_per_learner) == (3e-4, 3e-4, 0.005, 32)
    smoothing = (td3.target_noise, td3.target_noise_clip)
    assert (td3.policy_delay, *smoothing, td3.exploration_noise) == (2, 0.2, 0.5, 0.1)
    assert td3.num_updates_per_env_step == 1.0 and td3.replay_start_state == "zero"
    sac = RecurrentSACConfig()
    assert (sac.target_entropy, sac.target_entropy_scale, sac.initial_alpha) == ("auto", 0.7, 1.0)
    # Algorithm settings reach the module through model_config, as RLlib's own algorithms do.
    assert td3.model_config["exploration_noise"] == 0.1 and sac.model_config["initial_alpha"] == 1.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TD3Config().training(tau=2.0), "tau: must be <= 1"),
        (TD3Config().training(policy_delay=0), "policy_delay: must be > 0"),
        (TD3Config().training(replay_start_state="r2d2"), "replay_start_state: must be one of: zero, stored"),
        (RecurrentSACConfig().training(target_entropy="high"), 'target_entropy: must be a number or "auto"'),
        (RecurrentSACConfig().training(burn_in=-1), "burn_in: must be >= 0"),
        (TD3Config().training(gamma=1.5), "gamma: must be <= 1"),
    ],
)
def test_validate_names_the_bad_setting(config, message):
    config.environment("Pendulum-P")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        config.validate()
