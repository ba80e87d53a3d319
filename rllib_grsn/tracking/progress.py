"""One line per training iteration on the terminal, as a Ray Tune callback.

Lines are plain ``print``s: never wrapped (a checkpoint path stays copyable in a log) and never read
as markup (``[trial_id]`` stays in the line).
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback

RETURN_KEY = "env_runners/episode_return_mean"
EVAL_RETURN_KEY = "evaluation/env_runners/episode_return_mean"
# Team runs (QMIX): the team's return, not RLlib's sum over agents, and the battles won.
TEAM_RETURN_KEY = "env_runners/team_return_mean"
EVAL_TEAM_RETURN_KEY = "evaluation/env_runners/team_return_mean"
WIN_RATE_KEY = "env_runners/win_rate"
EVAL_WIN_RATE_KEY = "evaluation/env_runners/win_rate"
ENV_STEPS_KEY = "num_env_steps_sampled_lifetime"


def _get(result: dict[str, Any], key: str) -> Any:
    """Reads a "/"-separated key from a nested RLlib result dict."""
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def result_summary(result: dict[str, Any]) -> dict[str, float | None]:
    """The figures a user watches: iteration, env steps, mean return, episode length, time.

    For team runs the return is the team's (``team_return_mean``) and ``win_rate`` /
    ``eval_win_rate`` are the shares of battles won (None where the env has no battles).
    """
    team = _get(result, TEAM_RETURN_KEY)
    ret = team if _is_number(team) else _get(result, RETURN_KEY)
    eval_team = _get(result, EVAL_TEAM_RETURN_KEY)
    eval_ret = eval_team if _is_number(eval_team) else _get(result, EVAL_RETURN_KEY)
    return {
        "iteration": result.get("training_iteration"),
        "env_steps": _get(result, ENV_STEPS_KEY),
        "return": float(ret) if _is_number(ret) else None,
        "eval_return": float(eval_ret) if _is_number(eval_ret) else None,
        "win_rate": _number_or_none(_get(result, WIN_RATE_KEY)),
        "eval_win_rate": _number_or_none(_get(result, EVAL_WIN_RATE_KEY)),
        "episode_len": _get(result, "env_runners/episode_len_mean"),
        "time_s": result.get("time_total_s"),
    }


def _number_or_none(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class ProgressPrinter(Callback):
    """Prints ``[trial] iter N | env steps S | return R | len L | T s`` after each iteration.

    When the iteration ran an evaluation, ``| eval E`` (the greedy episodes' mean return) follows
    the return; battle envs add ``| win W%`` (exploring episodes) and ``| eval win W%`` (greedy).
    """

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        s = result_summary(result)
        ret = "n/a" if s["return"] is None else f"{s['return']:.1f}"
        length = "n/a" if s["episode_len"] is None else f"{s['episode_len']:.1f}"
        evaluation = "" if s["eval_return"] is None else f" | eval {s['eval_return']:.1f}"
        wins = "" if s["win_rate"] is None else f" | win {100 * s['win_rate']:.0f}%"
        if s["eval_win_rate"] is not None:
            wins += f" | eval win {100 * s['eval_win_rate']:.0f}%"
        print(
            f"[{trial.trial_id}] iter {s['iteration']} | env steps {int(s['env_steps'] or 0)} | "
            f"return {ret}{evaluation}{wins} | len {length} | {s['time_s'] or 0:.0f} s",
            flush=True,
        )

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] checkpoint saved: {checkpoint.path}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] failed; see {trial.local_path}/error.txt", flush=True)
