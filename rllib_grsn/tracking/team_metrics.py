"""Team metrics of cooperative multi-agent runs (QMIX, VDN): win rate, team return, backend.

RLlib's ``episode_return_mean`` of a multi-agent episode sums every agent's return; the team
adapters give each agent the team reward, so it is ``n_agents`` times the team return. This
callback logs what pymarl users read instead:

- ``win_rate``: the share of episodes whose last step reported ``battle_won`` (battle envs only);
- ``team_return_mean``: the team reward summed over the episode (one agent's return);
- ``result["backend"]``: which simulator ran (``sc2``, ``smax``, ``mpe``, ``two_step``), so a SMAX
  result is never read as a StarCraft II one.

In greedy test episodes (RLlib's evaluation) the same keys appear under ``evaluation/env_runners``.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

from rllib_grsn.modules.connectors import agent_order

WIN_RATE = "win_rate"
TEAM_RETURN = "team_return_mean"
BACKEND_EPISODES = "episodes_by_backend"
METRICS_WINDOW = 100


def episode_team_metrics(episode: MultiAgentEpisode) -> dict[str, Any]:
    """``team_return`` and, when the env reports it, ``battle_won`` and ``backend`` of an episode."""
    agents = agent_order(episode.agent_ids)
    if not agents:
        return {}
    first = episode.agent_episodes[agents[0]]
    out: dict[str, Any] = {"team_return": float(first.get_return())}
    infos = first.get_infos(-1) if len(first.get_infos()) else {}
    if isinstance(infos, dict):
        if "battle_won" in infos:
            out["battle_won"] = bool(infos["battle_won"])
        if "backend" in infos:
            out["backend"] = str(infos["backend"])
    return out


def log_team_metrics(metrics_logger: Any, team_return: float, won: bool | None, backend: str | None) -> None:
    """Logs one finished episode's team metrics (``won``/``backend``: None where the env has none)."""
    metrics_logger.log_value(TEAM_RETURN, float(team_return), reduce="mean", window=METRICS_WINDOW)
    if won is not None:
        metrics_logger.log_value(WIN_RATE, float(won), reduce="mean", window=METRICS_WINDOW)
    if backend is not None:
        metrics_logger.log_value((BACKEND_EPISODES, backend), 1, reduce="sum")


class TeamMetricsCallback(RLlibCallback):
    """Logs ``win_rate`` and ``team_return_mean`` per episode and adds ``backend`` to each result.

    The backend travels as a per-backend episode count (``env_runners/episodes_by_backend/<name>``),
    so it reaches the algorithm through RLlib's own metrics aggregation from every EnvRunner.
    """

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        if not isinstance(episode, MultiAgentEpisode) or metrics_logger is None:
            return
        metrics = episode_team_metrics(episode)
        if metrics:
            log_team_metrics(
                metrics_logger, metrics["team_return"], metrics.get("battle_won"), metrics.get("backend")
            )

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        counts = (result.get("env_runners") or {}).get(BACKEND_EPISODES) or {}
        if counts:
            result["backend"] = ",".join(sorted(counts))
