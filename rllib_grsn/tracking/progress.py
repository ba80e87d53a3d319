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
    """The figures a user watches: iteration, env steps, mean return, episode length, time."""
    ret = _get(result, RETURN_KEY)
    eval_ret = _get(result, EVAL_RETURN_KEY)
    return {
        "iteration": result.get("training_iteration"),
        "env_steps": _get(result, ENV_STEPS_KEY),
        "return": None if ret is None or (isinstance(ret, float) and math.isnan(ret)) else float(ret),
        "eval_return": None if not _is_number(eval_ret) else float(eval_ret),
        "episode_len": _get(result, "env_runners/episode_len_mean"),
        "time_s": result.get("time_total_s"),
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class ProgressPrinter(Callback):
    """Prints ``[trial] iter N | env steps S | return R | len L | T s`` after each iteration.

    When the iteration ran an evaluation, ``| eval E`` (the greedy episodes' mean return) follows
    the return.
    """

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        s = result_summary(result)
        ret = "n/a" if s["return"] is None else f"{s['return']:.1f}"
        length = "n/a" if s["episode_len"] is None else f"{s['episode_len']:.1f}"
        evaluation = "" if s["eval_return"] is None else f" | eval {s['eval_return']:.1f}"
        print(
            f"[{trial.trial_id}] iter {s['iteration']} | env steps {int(s['env_steps'] or 0)} | "
            f"return {ret}{evaluation} | len {length} | {s['time_s'] or 0:.0f} s",
            flush=True,
        )

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] checkpoint saved: {checkpoint.path}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] failed; see {trial.local_path}/error.txt", flush=True)
