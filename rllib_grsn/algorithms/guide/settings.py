"""The ``guide:`` section of recurrent TD3 and continuous SAC: a guide policy that jump-starts
training episodes and the behaviour-cloning weight on its actions (TD3BC+JSRL).

Jump-start RL (Uchendu et al. 2023): during training episodes a guide policy acts for the first ``h``
steps, then the learning policy takes over; ``h`` shrinks to 0 over training. Here the guide bridges
the warm-up of the spiking actor's recurrent state (the actor still runs on the guide's steps, so its
state is warm when it takes over). TD3+BC (Fujimoto & Gu 2021) adds a behaviour-cloning term on the
guide's actions to the actor loss, annealed away (see :func:`rllib_grsn.algorithms.losses.td3_bc_actor_loss`).

Which steps carry a behaviour-cloning label is a setting of its own, ``bc_on``, so the ablations of
TD3BC+JSRL are all settings of one ``guide:`` section (and one sweep can grid over them):

- TD3BC+JSRL: ``horizon > 0``, ``bc_weight > 0``, ``bc_on: guided`` (the guide acts the first steps, BC
  on its steps: the replayed action is the guide's);
- jump-start without BC: ``bc_weight: 0``;
- TD3+BC without the jump-start: ``horizon: 0``, ``bc_on: all``: the guide never acts, but is asked on
  every training step for the action it would take; that action is the step's label (the ``guide_action``
  column, with ``bc_label`` True), so the actor clones the guide on the states the learner itself visits
  (expert labels on the learner's own states, as in DAgger, Ross et al. 2011), weighted as in TD3+BC;
- plain TD3: no ``guide:``.

The replay keeps the two marks apart: ``guided`` (the guide acted: the env-step counts of guide and
policy) and ``bc_label`` (the step has a label: the BC term's mask).

``horizon`` and ``bc_weight`` take a number or a schedule over lifetime env steps in RLlib's ``lr``
format ``[[t, v], ...]`` (linear between points, the last value after the last point).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator

from rllib_grsn.checks.schedules import number_or_schedule_problem
from rllib_grsn.modules.model_config import scheduled_value

# The column that marks a step acted by the guide (extra_model_outputs of the episodes, then the
# replayed windows and the learner's batch).
GUIDED = "guided"
# The guide's action as a behaviour-cloning label (normalised units, like ``actions``) and the mask of
# the steps that carry one (also extra_model_outputs -> replay -> the learner's batch).
GUIDE_ACTION = "guide_action"
BC_LABEL = "bc_label"
BC_ON = ("guided", "all")
HORIZON_EXAMPLE = "[[0, 50], [20000, 0]]"
BC_WEIGHT_EXAMPLE = "[[0, 0.4], [20000, 0.0]]"
# The ablation's variants, in the order reports show them (GuideSettings.ablation; no guide: TD3).
ABLATION_NAMES = ("TD3", "TD3BC+JSRL", "jump-start without BC", "TD3+BC without jump-start")


def _schedule(example: str, meaning: str) -> Any:
    def check(value: Any) -> Any:
        problem = number_or_schedule_problem(value, positive=False, example=example, meaning=meaning)
        if problem is not None:
            raise ValueError(problem)
        return value

    return Annotated[Any, PlainValidator(check)]


class GuideSettings(BaseModel):
    """``config.guide`` of ``run: TD3`` and continuous ``run: RecurrentSAC``: which guide, what it
    observes, the two schedules, and which steps carry a behaviour-cloning label."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")

    callable: str | None = Field(
        None,
        description="module:function, called as function(observation) -> action in the env's units "
        "(e.g. rllib_grsn.algorithms.guide.privileged:pendulum_swing_up)",
    )
    checkpoint: str | None = Field(
        None, description="an Algorithm checkpoint of this package's TD3/SAC (its greedy policy acts)"
    )
    observation: Literal["full", "learner"] = Field(
        "full",
        description="full: the env's unmasked observation (info['full_obs'] of the partially observed "
        "envs: a privileged guide); learner: what the learner observes",
    )
    horizon: _schedule(HORIZON_EXAMPLE, " (env steps the guide acts at the start of an episode)") = Field(
        description="jump-start horizon h: the guide acts for the first h steps of each training episode"
    )
    bc_weight: _schedule(BC_WEIGHT_EXAMPLE, "") = Field(
        0.0,
        description="beta = 1/alpha of TD3+BC: the actor loss is -Q + beta * mean|Q| * BC on guided steps; "
        "0 is plain TD3",
    )

    bc_on: Literal[BC_ON] = Field(  # type: ignore[valid-type]
        "guided",
        description="which training steps carry the guide's action as a behaviour-cloning label: guided "
        "(those the guide acted; the replayed action is the label) or all (the guide is asked on every "
        "training step, also where the policy acts: TD3+BC without the jump-start with horizon 0)",
    )

    @model_validator(mode="after")
    def _one_guide(self) -> Self:
        if (self.callable is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of callable (module:function) or checkpoint (a path)")
        if self.bc_on == "all" and _always_zero(self.bc_weight):
            raise ValueError(
                "bc_on: all asks the guide for a label on every training step, but bc_weight is 0 "
                f"throughout, so no label is ever used; give a bc_weight above 0 (e.g. {BC_WEIGHT_EXAMPLE}) "
                "or use bc_on: guided"
            )
        return self

    def horizon_at(self, timestep: float) -> int:
        """The jump-start horizon at ``timestep`` lifetime env steps (whole steps, rounded down)."""
        return int(scheduled_value(self.horizon, timestep))

    def bc_weight_at(self, timestep: float) -> float:
        """The behaviour-cloning weight beta at ``timestep`` lifetime env steps."""
        return scheduled_value(self.bc_weight, timestep)

    @property
    def ablation(self) -> str:
        """Which variant of the guided-training ablation these settings are (plain TD3 has no guide):
        the guide acts (a horizon above 0 at some point) and its actions are cloned (a weight above
        0 at some point): TD3BC+JSRL; it only acts: jump-start without BC; it only labels: TD3+BC
        without the jump-start; neither: the guide is never used."""
        acts, clones = not _always_zero(self.horizon), not _always_zero(self.bc_weight)
        if acts and clones:
            return ABLATION_NAMES[1]
        if acts:
            return ABLATION_NAMES[2]
        if clones:
            return ABLATION_NAMES[3]
        return "guide never used"


def _always_zero(value: Any) -> bool:
    """Whether a number-or-schedule is 0 at every timestep."""
    if isinstance(value, list | tuple):
        return all(pair[1] == 0 for pair in value)
    return value == 0


def guide_settings(value: Any) -> GuideSettings | None:
    """``config.guide`` as a :class:`GuideSettings` (it is kept as a plain dict in the AlgorithmConfig,
    so that Tune and checkpoints serialise it), or None when no guide is set."""
    if value is None or isinstance(value, GuideSettings):
        return value
    return GuideSettings.model_validate(value)
