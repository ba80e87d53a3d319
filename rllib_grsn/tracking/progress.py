"""One line per training iteration on the terminal, as a Ray Tune callback."""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback
from rich.console import Console

RETURN_KEY = "env_runners/episode_return_mean"
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
    return {
        "iteration": result.get("training_iteration"),
        "env_steps": _get(result, ENV_STEPS_KEY),
        "return": None if ret is None or (isinstance(ret, float) and math.isnan(ret)) else float(ret),
        "episode_len": _get(result, "env_runners/episode_len_mean"),
        "time_s": result.get("time_total_s"),
    }


class ProgressPrinter(Callback):
    """Prints ``[trial] iter N | env steps S | return R | len L | T s`` after each iteration."""

    def __init__(self) -> None:
        # Created on first use: Tune pickles its callbacks, and a Console holds a lock.
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(highlight=False)
        return self._console

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_console": None}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        s = result_summary(result)
        ret = "n/a" if s["return"] is None else f"{s['return']:.1f}"
        length = "n/a" if s["episode_len"] is None else f"{s['episode_len']:.1f}"
        self.console.print(
            f"[{trial.trial_id}] iter {s['iteration']} | env steps {int(s['env_steps'] or 0)} | "
            f"return {ret} | len {length} | {s['time_s'] or 0:.0f} s"
        )

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        self.console.print(f"[{trial.trial_id}] checkpoint saved: {checkpoint.path}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.console.print(f"[{trial.trial_id}] [bold red]failed[/]; see {trial.local_path}/error.txt")
