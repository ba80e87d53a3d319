"""Gradient alignment of the ATan surrogate against its width (issue #34, "Slope analysis").

The adaptive-surrogate paper reviewed in ``shared/seeds/adaptive_surrogate_review.md`` reports a
trade-off: a shallower surrogate (smaller ATan width ``alpha``, Eq. 6) lets more neurons pass gradient
but approximates the spike's true gradient worse, measured as the cosine similarity between true and
surrogate gradients (extending Gygax & Zenke, "Elucidating the theoretical underpinnings of surrogate
gradient learning in spiking neural networks"). This module measures that for the actors of recurrent
TD3 on Pendulum-P, on checkpoints of ``rllib train file tuned_examples/pendulum_p_{grsn,lif}_td3.yaml``.

What is measured, for every checkpoint, replayed batch and width:

* **Loss.** TD3's actor loss on a batch of replayed windows, exactly as the learner forms it:
  ``-masked_mean(Q1(h_t, tanh(pi(o_<=t))))`` with the checkpoint's trained critic (its features
  computed once, without gradient, as the learner detaches them), zero start state, ``loss_mask``.
  The same batch and the same spiking forward pass serve every width: ``alpha`` only changes the
  backward pass (:func:`rllib_grsn.neurons.set_surrogate_alpha`). Everything runs in float64.
* **Reference gradient.** The spike Θ has derivative 0 almost everywhere, so the "true" gradient of the
  spiking loss is 0 or undefined; it cannot be the reference. What the surrogate stands in for is the
  slope of the actual spiking loss at a finite scale. Along ``K`` random unit directions ``d_k`` in a
  parameter group (Gaussian, normalised), the reference component is the central finite difference of
  the real spiking forward pass, ``r_k = (L(theta + h d_k) - L(theta - h d_k)) / 2h``: the derivative
  of the loss smoothed along ``d_k`` at scale ``h``. The surrogate component is ``s_k = g_alpha . d_k``.
  The reported cosine is ``cos(r, s)`` over the ``K`` directions. For random Gaussian directions this
  estimates the cosine of the two full gradient vectors (Johnson-Lindenstrauss), with a spread of
  about ``1/sqrt(K)``; a different direction set and a different batch give the reported spread.
  ``h`` is relative to the group's weight norm (``h = rel_h * ||theta_group||``); several values are
  run, and the cosine between the reference vectors of two ``h`` shows whether the reference is stable.
* **Groups.** ``encoder`` (the observation, previous-action and previous-reward embeddings feeding the
  core), ``core`` (the spiking layer's weights, GRSN's decay), ``shortcut`` (the observation embedding
  that bypasses the core) and ``head`` (the policy MLP), plus ``all`` (directions over every actor
  parameter). ``shortcut`` and ``head`` gradients never pass through a spike, so their cosine must be
  about 1 at every width: a control for the finite differences.
* **Reach.** ``nonzero_fraction``: weights with ``|g| > tiny``. The ATan derivative is never exactly
  zero, so this mostly counts dead ReLU paths, not the width. ``window_fraction`` and
  ``neurons_in_window``: the neuron-steps (and neurons, at least once in the batch) whose membrane
  ``u - theta`` lies where the surrogate derivative is at least a tenth of its peak,
  ``|u - theta| <= 6 / (pi * alpha)``; this is how many neurons a width lets learn appreciably.
  ``grad_norm``: the surrogate gradient's norm per group.

Run ``python -m benchmarks.surrogate_alignment --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import pickle
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tree
from torch import Tensor, nn

from rllib_grsn.algorithms import losses as L
from rllib_grsn.modules.backbone import ORIG_OBS, PREV_ACTIONS, PREV_REWARDS, RecurrentBackbone
from rllib_grsn.neurons import grsn as grsn_module
from rllib_grsn.neurons import lif as lif_module
from rllib_grsn.neurons.kernels import use_kernel
from rllib_grsn.neurons.spiking_cells import set_surrogate_alpha, spiking_cells
from rllib_grsn.neurons.surrogate import atan_surrogate_grad

__all__ = [
    "actor_groups",
    "alignment",
    "cosine",
    "finite_difference_projections",
    "membrane_reach",
    "random_directions",
    "surrogate_gradient",
]

DEFAULT_ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_REL_H = (1e-3, 1e-2, 1e-1)
# A surrogate derivative below this share of its peak counts as "outside the window".
WINDOW_SHARE = 0.1
RESULTS_DIR = Path(__file__).resolve().parent / "results" / "surrogate_alignment"

LossFn = Callable[[], Tensor]


# ------------------------------------------------------------------------------------------ maths


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two vectors; 0.0 when either is all zeros."""
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(torch.dot(a.flatten(), b.flatten()) / (na * nb))


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def random_directions(num_params: int, k: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """``[k, num_params]`` rows drawn from N(0, I) and normalised to unit length."""
    d = torch.randn(k, num_params, generator=generator, dtype=torch.float64).to(dtype)
    return d / d.norm(dim=1, keepdim=True)


def surrogate_gradient(loss_fn: LossFn, params: Sequence[nn.Parameter]) -> Tensor:
    """The autograd gradient of ``loss_fn()`` w.r.t. ``params``, flattened (zeros where unused)."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return _flat([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)])


@contextlib.contextmanager
def _restored(params: Sequence[nn.Parameter]) -> Iterator[Tensor]:
    """Yields the flat original values and copies them back on exit (no rounding drift)."""
    original = [p.detach().clone() for p in params]
    try:
        yield _flat(original)
    finally:
        with torch.no_grad():
            for p, o in zip(params, original, strict=True):
                p.copy_(o)


def _assign(params: Sequence[nn.Parameter], flat: Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def finite_difference_projections(
    loss_fn: LossFn, params: Sequence[nn.Parameter], directions: Tensor, h: float
) -> Tensor:
    """``(L(theta + h d_k) - L(theta - h d_k)) / 2h`` for every row ``d_k`` of ``directions``.

    ``loss_fn`` is evaluated without gradient at the perturbed parameters; they are restored after.
    """
    out = torch.empty(directions.shape[0], dtype=torch.float64)
    with _restored(params) as theta, torch.no_grad():
        for k, d in enumerate(directions):
            _assign(params, theta + h * d)
            plus = float(loss_fn())
            _assign(params, theta - h * d)
            minus = float(loss_fn())
            out[k] = (plus - minus) / (2.0 * h)
    return out


# ------------------------------------------------------------------------------- the measurement


def alignment(
    loss_fn: LossFn,
    groups: dict[str, list[nn.Parameter]],
    set_alpha: Callable[[float], None],
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    num_directions: int = 128,
    rel_h: Sequence[float] = DEFAULT_REL_H,
    seed: int = 0,
    tiny: float = 1e-10,
) -> dict[str, Any]:
    """Cosine between finite-difference and surrogate gradient projections, per group and width.

    Args:
        loss_fn: the loss at the current parameters (a fresh forward pass per call).
        groups: name -> parameters; an ``all`` group (every parameter once) is added.
        set_alpha: sets the surrogate width; called for every width before its gradient.
        alphas: surrogate widths (Eq. 6).
        num_directions: ``K`` random unit directions per group.
        rel_h: finite-difference steps as a share of the group's weight norm.
        seed: seed of the directions.
        tiny: a weight "receives gradient" when ``|g| > tiny``.

    Returns:
        ``{group: {num_params, weight_norm, grad_norm{alpha}, nonzero_fraction{alpha},
        fd{rel_h: {h, ref_norm, cos{alpha}, sign_agreement{alpha}}}, fd_h_consistency{"a|b"}}}``.
        Keys of per-width and per-h dicts are ``str(float)``.
    """
    seen: set[int] = set()
    every: list[nn.Parameter] = []
    for params in groups.values():
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                every.append(p)
    all_groups = {**groups, "all": every}
    order = list(all_groups)
    grads: dict[str, dict[str, Tensor]] = {name: {} for name in order}
    for alpha in alphas:
        set_alpha(float(alpha))
        g_all = surrogate_gradient(loss_fn, every)
        by_id: dict[int, Tensor] = {}
        offset = 0
        for p in every:
            by_id[id(p)] = g_all[offset : offset + p.numel()]
            offset += p.numel()
        for name in order:
            grads[name][str(float(alpha))] = _flat([by_id[id(p)] for p in all_groups[name]])

    generator = torch.Generator().manual_seed(seed)
    result: dict[str, Any] = {}
    for name in order:
        params = all_groups[name]
        num = sum(p.numel() for p in params)
        dtype = params[0].dtype
        theta_norm = float(_flat([p.detach() for p in params]).norm())
        directions = random_directions(num, num_directions, generator, dtype)
        entry: dict[str, Any] = {
            "num_params": num,
            "weight_norm": theta_norm,
            "grad_norm": {a: float(g.norm()) for a, g in grads[name].items()},
            "nonzero_fraction": {a: float((g.abs() > tiny).double().mean()) for a, g in grads[name].items()},
            "fd": {},
        }
        refs: dict[str, Tensor] = {}
        for rh in rel_h:
            h = float(rh) * max(theta_norm, 1e-12)
            ref = finite_difference_projections(loss_fn, params, directions, h)
            refs[str(float(rh))] = ref
            cos, sign = {}, {}
            for a, g in grads[name].items():
                sur = directions.to(torch.float64) @ g.to(torch.float64)
                cos[a] = cosine(ref, sur)
                sign[a] = float((torch.sign(ref) == torch.sign(sur)).double().mean())
            entry["fd"][str(float(rh))] = {
                "h": h,
                "ref_norm": float(ref.norm()),
                "cos": cos,
                "sign_agreement": sign,
            }
        keys = list(refs)
        entry["fd_h_consistency"] = {
            f"{a}|{b}": cosine(refs[a], refs[b]) for i, a in enumerate(keys) for b in keys[i + 1 :]
        }
        result[name] = entry
    return result


@contextlib.contextmanager
def _record_membranes() -> Iterator[list[Tensor]]:
    """Records ``u - theta`` at every spike of the LIF/GRSN cells (reference time loop only)."""
    seen: list[Tensor] = []
    originals = (lif_module.atan_spike, grsn_module.atan_spike)

    def recording(x: Tensor, alpha: float | Tensor = 2.0) -> Tensor:
        seen.append(x.detach())
        return originals[0](x, alpha)

    lif_module.atan_spike = recording
    grsn_module.atan_spike = recording
    try:
        with use_kernel("reference"):
            yield seen
    finally:
        lif_module.atan_spike, grsn_module.atan_spike = originals


def membrane_reach(forward: Callable[[], Any], mask: Tensor, alphas: Sequence[float]) -> dict[str, Any]:
    """How many neuron-steps (and neurons) lie inside each width's surrogate window.

    ``forward`` runs the actor once over a ``[B, T]`` batch; ``mask`` ``[B, T]`` marks the steps the
    loss counts. Inside the window means ``h'(u - theta) >= WINDOW_SHARE * h'(0)``.
    """
    with _record_membranes() as seen, torch.no_grad():
        forward()
    if not seen:
        return {}
    x = torch.stack(seen, dim=1)  # [B, T, H]
    valid = mask.to(torch.bool)
    steps = x[valid]  # [N, H]
    out: dict[str, Any] = {
        "firing_rate": float((steps >= 0).double().mean()),
        "window_fraction": {},
        "neurons_in_window": {},
    }
    for alpha in alphas:
        share = atan_surrogate_grad(steps, float(alpha)) / atan_surrogate_grad(torch.zeros(()), float(alpha))
        inside = share >= WINDOW_SHARE
        out["window_fraction"][str(float(alpha))] = float(inside.double().mean())
        out["neurons_in_window"][str(float(alpha))] = float(inside.any(dim=0).double().mean())
    return out


# ------------------------------------------------------------------------- TD3 actors and data


def actor_groups(module: Any) -> dict[str, list[nn.Parameter]]:
    """The actor's parameters of a :class:`~rllib_grsn.modules.twin_q.RecurrentTwinQModule` by role."""
    actor = module.actor
    encoder = [
        p for part in (actor.obs_embed, actor.action_embed, actor.reward_embed) if part is not None
        for p in part.parameters()
    ]  # fmt: skip
    return {
        "encoder": encoder,
        "core": list(actor.core.parameters()),
        "shortcut": list(actor.shortcut.parameters()),
        "head": list(module.pi_head.parameters()),
    }


def _backbone_forward_in_dtype(
    self: RecurrentBackbone, obs: Any, state: dict[str, Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """:meth:`RecurrentBackbone.forward` with the inputs cast to the weights' dtype instead of float32,
    so the whole actor and critic can run in float64 (finite differences need the precision)."""
    dtype = self.shortcut.hidden[0].weight.dtype
    o = (obs[ORIG_OBS] if isinstance(obs, dict) else obs).flatten(2).to(dtype)
    parts = [self.obs_embed(o)]
    if self.action_embed is not None:
        parts.append(self.action_embed(obs[PREV_ACTIONS].flatten(2).to(dtype)))
    if self.reward_embed is not None:
        parts.append(self.reward_embed(obs[PREV_REWARDS].flatten(2).to(dtype)))
    out, state_out = self.core.unroll(torch.cat(parts, dim=-1), state)
    return torch.cat([out, self.shortcut(o)], dim=-1), state_out


@contextlib.contextmanager
def float64_backbones() -> Iterator[None]:
    """Within the block every :class:`RecurrentBackbone` keeps its weights' dtype (see above)."""
    original = RecurrentBackbone.forward
    RecurrentBackbone.forward = _backbone_forward_in_dtype  # type: ignore[method-assign]
    try:
        yield
    finally:
        RecurrentBackbone.forward = original  # type: ignore[method-assign]


def _to_torch(x: Any, dtype: torch.dtype) -> Any:
    return tree.map_structure(lambda a: torch.as_tensor(np.asarray(a)).to(dtype), x)


def td3_actor_loss_fn(module: Any, windows: dict[str, Any]) -> tuple[LossFn, Callable[[], Any], Tensor]:
    """TD3's actor loss on replayed ``windows`` (as the learner forms it), the actor forward alone and
    the loss mask; the critic features are computed once, without gradient."""
    dtype = next(module.parameters()).dtype
    obs = _to_torch(windows["obs"], dtype)
    next_obs = _to_torch(windows["next_obs"], dtype)
    mask = torch.as_tensor(windows["loss_mask"]).to(dtype)
    state = _to_torch(windows["state_in"], dtype) if windows["state_in"] else {"actor": {}, "critic": {}}
    ext = tree.map_structure(lambda o, n: torch.cat([o[:, :1], n], dim=1), obs, next_obs)
    with torch.no_grad():
        h = module.unroll_critic(ext, dict(state["critic"]))[:, :-1]

    def features() -> Tensor:
        return module.actor_features(obs, dict(state["actor"]))

    def loss() -> Tensor:
        action = module.policy_action(module.pi_head(features()))
        return L.td3_actor_loss(module.q1_value(h, action), mask)

    return loss, features, mask


def load_module(checkpoint: str | Path) -> Any:
    """The learner's module (actor, critic) of an Algorithm checkpoint, in float64, eval mode."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = Path(checkpoint) / "learner_group" / "learner" / "rl_module" / "default_policy"
    module = RLModule.from_checkpoint(str(path))
    return module.double().eval()


def load_replay(checkpoint: str | Path, module: Any, seed: int) -> Any:
    """The checkpoint's :class:`SequenceReplayBuffer`, its sampling RNG reseeded with ``seed``."""
    from rllib_grsn.algorithms.replay import SequenceReplayBuffer

    with open(Path(checkpoint) / "algorithm_state.pkl", "rb") as f:
        state = pickle.load(f)
    saved = state["sequence_replay_buffer"]
    buffer = SequenceReplayBuffer(
        capacity=saved["capacity"], seed=seed, initial_state=module.get_initial_state() or None
    )
    buffer.set_state(saved)
    buffer.rng = np.random.default_rng(seed)
    return buffer


def checkpoint_info(checkpoint: Path) -> dict[str, Any]:
    """Env steps and greedy evaluation return of the iteration a checkpoint was saved at."""
    index = int(re.search(r"checkpoint_(\d+)$", str(checkpoint)).group(1))
    info: dict[str, Any] = {"checkpoint": str(checkpoint)}
    with open(Path(checkpoint) / "algorithm_state.pkl", "rb") as f:
        iteration = pickle.load(f).get("training_iteration")
    info["training_iteration"] = iteration
    result_file = checkpoint.parent / "result.json"
    if result_file.exists():
        for line in result_file.read_text().splitlines():
            row = json.loads(line)
            if row.get("training_iteration") == iteration:
                steps = row.get("num_env_steps_sampled_lifetime")
                info["env_steps"] = None if steps is None else int(steps)
                info["eval_return"] = (
                    row.get("evaluation", {}).get("env_runners", {}).get("episode_return_mean")
                )
    info.setdefault("checkpoint_index", index)
    return info


def find_checkpoints(run_dir: str, env_steps: Sequence[int]) -> list[dict[str, Any]]:
    """For every requested env-step count, the checkpoint of ``run_dir`` nearest to it (each once)."""
    paths = sorted(Path(p) for p in glob.glob(os.path.join(run_dir, "**", "checkpoint_*"), recursive=True))
    infos = [checkpoint_info(p) for p in paths if (p / "algorithm_state.pkl").exists()]
    infos = [i for i in infos if i.get("env_steps") is not None]
    if not infos:
        raise SystemExit(f"no checkpoint with a result row under {run_dir}")
    chosen: list[dict[str, Any]] = []
    for target in env_steps:
        best = min(infos, key=lambda i: abs(i["env_steps"] - target))
        if best not in chosen:
            chosen.append(best)
    return chosen


def measure_checkpoint(
    checkpoint: str | Path,
    *,
    alphas: Sequence[float],
    num_directions: int,
    rel_h: Sequence[float],
    num_batches: int,
    batch_size: int,
    seq_len: int,
    seed: int,
) -> list[dict[str, Any]]:
    """:func:`alignment` and :func:`membrane_reach` on ``num_batches`` replayed batches."""
    module = load_module(checkpoint)
    buffer = load_replay(checkpoint, module, seed)
    cells = list(spiking_cells(module.actor))
    if not cells:
        raise SystemExit(f"{checkpoint}: the actor has no spiking core")
    trained_alpha = cells[0].alpha
    out = []
    with float64_backbones():
        for b in range(num_batches):
            out.append(
                _measure_batch(module, buffer, b, alphas, num_directions, rel_h, batch_size, seq_len, seed)
            )
            set_surrogate_alpha(module.actor, trained_alpha)
    return out


def _measure_batch(
    module: Any,
    buffer: Any,
    b: int,
    alphas: Sequence[float],
    num_directions: int,
    rel_h: Sequence[float],
    batch_size: int,
    seq_len: int,
    seed: int,
) -> dict[str, Any]:
    if True:
        windows = buffer.sample(batch_size, seq_len=seq_len, burn_in=0, start_state="zero")
        loss, features, mask = td3_actor_loss_fn(module, windows)
        started = time.perf_counter()
        res = alignment(
            loss,
            actor_groups(module),
            lambda a: set_surrogate_alpha(module.actor, a),
            alphas=alphas,
            num_directions=num_directions,
            rel_h=rel_h,
            seed=seed + 1000 * b,
        )
        return {
            "batch": b,
            "loss": float(loss().detach()),
            "groups": res,
            "reach": membrane_reach(features, mask, alphas),
            "seconds": time.perf_counter() - started,
        }


# --------------------------------------------------------------------------------- reporting


def summarise(record: dict[str, Any], rel_h: str) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """Per training point ``{env_steps: {group: {alpha: (mean, std)}}}`` of the cosine over batches
    at ``rel_h``."""
    out: dict[str, Any] = {}
    for point in record["points"]:
        per: dict[str, Any] = {}
        for group in point["batches"][0]["groups"]:
            per[group] = {}
            for alpha in point["batches"][0]["groups"][group]["fd"][rel_h]["cos"]:
                vals = [b["groups"][group]["fd"][rel_h]["cos"][alpha] for b in point["batches"]]
                per[group][alpha] = (float(np.mean(vals)), float(np.std(vals)))
        out[str(point["env_steps"])] = per
    return out


def _header(columns: Sequence[str], alphas: Sequence[str]) -> list[str]:
    """A markdown table's header rows: ``columns``, then one column per surrogate width."""
    names = [*columns, *(f"alpha={float(a):g}" for a in alphas)]
    return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]


def markdown_table(results: dict[str, Any], rel_h: str, groups: Sequence[str]) -> str:
    """Cosine (mean +- std over batches) per core, training point, group and width."""
    alphas = [str(float(a)) for a in results["settings"]["alphas"]]
    lines = _header(("actor", "env steps", "eval return", "group"), alphas)
    for core, record in results["cores"].items():
        summary = summarise(record, rel_h)
        for point in record["points"]:
            steps = str(point["env_steps"])
            ret = point.get("eval_return")
            ret_s = "" if ret is None else f"{ret:.0f}"
            for group in groups:
                cells = [
                    f"{summary[steps][group][a][0]:.2f} ± {summary[steps][group][a][1]:.2f}" for a in alphas
                ]
                lines.append(f"| {core} | {steps} | {ret_s} | {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reach_table(results: dict[str, Any]) -> str:
    """Neurons inside each width's surrogate window (mean over batches), per core and training point."""
    alphas = [str(float(a)) for a in results["settings"]["alphas"]]
    lines = _header(("actor", "env steps", "firing rate", "measure"), alphas)
    for core, record in results["cores"].items():
        for point in record["points"]:
            reach = [b["reach"] for b in point["batches"]]
            rate = np.mean([r["firing_rate"] for r in reach])
            for key, label in (
                ("window_fraction", "neuron-steps in window"),
                ("neurons_in_window", "neurons in window"),
            ):
                vals = [f"{np.mean([r[key][a] for r in reach]):.3f}" for a in alphas]
                lines.append(
                    f"| {core} | {point['env_steps']} | {rate:.3f} | {label} | " + " | ".join(vals) + " |"
                )
            for group in ("encoder", "core"):
                nonzero = [
                    np.mean([b["groups"][group]["nonzero_fraction"][a] for b in point["batches"]])
                    for a in alphas
                ]
                lines.append(
                    f"| {core} | {point['env_steps']} | {rate:.3f} | {group} weights with abs(g) > 1e-10 | "
                    + " | ".join(f"{v:.3f}" for v in nonzero)
                    + " |"
                )
            for group in ("encoder", "core"):
                norms = [
                    np.mean([b["groups"][group]["grad_norm"][a] for b in point["batches"]]) for a in alphas
                ]
                lines.append(
                    f"| {core} | {point['env_steps']} | {rate:.3f} | {group} surrogate gradient norm | "
                    + " | ".join(f"{v:.3g}" for v in norms)
                    + " |"
                )
    return "\n".join(lines)


def h_table(results: dict[str, Any], groups: Sequence[str] = ("encoder", "core", "all")) -> str:
    """Dependence on the finite-difference step: cosine at the widest and sharpest width for every
    ``h``, and the cosine between the reference vectors of consecutive ``h`` (mean over batches)."""
    alphas = [str(float(a)) for a in results["settings"]["alphas"]]
    hs = [str(float(h)) for h in results["settings"]["rel_h"]]
    lo, hi = alphas[0], alphas[-1]
    lines = [
        "| actor | env steps | group | "
        + " | ".join(f"rel h={float(h):g}: cos alpha={float(lo):g} / {float(hi):g}" for h in hs)
        + " | "
        + " | ".join(f"ref cos(h={float(a):g}, h={float(b):g})" for a, b in itertools.pairwise(hs))
        + " |",
        "|---|---|---|" + "---|" * (2 * len(hs) - 1),
    ]
    for core, record in results["cores"].items():
        for point in record["points"]:
            for group in groups:
                entries = [b["groups"][group] for b in point["batches"]]
                cells = [
                    f"{np.mean([e['fd'][h]['cos'][lo] for e in entries]):.2f} / "
                    f"{np.mean([e['fd'][h]['cos'][hi] for e in entries]):.2f}"
                    for h in hs
                ]
                cells += [
                    f"{np.mean([e['fd_h_consistency'][f'{a}|{b}'] for e in entries]):.2f}"
                    for a, b in itertools.pairwise(hs)
                ]
                lines.append(f"| {core} | {point['env_steps']} | {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def combine(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merges result files of the same settings: their cores' training points, sorted by env steps."""
    merged = {**parts[0], "cores": {}, "command": [p["command"] for p in parts]}
    merged["wall_s"] = sum(p.get("wall_s", 0.0) for p in parts)
    for part in parts:
        if part["settings"] != parts[0]["settings"]:
            raise SystemExit("cannot combine results measured with different settings")
        for core, record in part["cores"].items():
            target = merged["cores"].setdefault(core, {"run_dir": record["run_dir"], "points": []})
            known = {p["checkpoint"] for p in target["points"]}
            target["points"] += [p for p in record["points"] if p["checkpoint"] not in known]
            target["points"].sort(key=lambda p: p["env_steps"])
    return merged


def plot(results: dict[str, Any], rel_h: str, path: Path) -> bool:
    """Cosine vs width, one panel per group, a line per core and training point. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = ["all", "encoder", "core", "head"]
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(4.0 * (len(groups) + 1), 3.6))
    alphas = [float(a) for a in results["settings"]["alphas"]]
    styles = {"grsn": "-", "lif": "--"}
    for core, record in results["cores"].items():
        summary = summarise(record, rel_h)
        n = len(record["points"])
        for i, point in enumerate(record["points"]):
            color = plt.cm.viridis(i / max(n - 1, 1))
            style = {"ls": styles.get(core, ":"), "marker": "o", "ms": 3, "color": color}
            label = f"{core} {point['env_steps']} steps"
            for ax, group in zip(axes, groups, strict=False):
                vals = summary[str(point["env_steps"])][group]
                mean = [vals[str(a)][0] for a in alphas]
                std = [vals[str(a)][1] for a in alphas]
                ax.errorbar(alphas, mean, yerr=std, capsize=2, label=label, **style)
            reach = [b["reach"]["window_fraction"] for b in point["batches"]]
            axes[-1].plot(alphas, [np.mean([r[str(a)] for r in reach]) for a in alphas], label=label, **style)
    for ax, group in zip(axes, groups, strict=False):
        ax.set_title(group + (" (control: no spike on its path)" if group == "head" else ""), fontsize=9)
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0.0, color="grey", lw=0.5)
    axes[-1].set_title(f"neuron-steps with h'(u-theta) >= {WINDOW_SHARE:g} h'(0)", fontsize=9)
    axes[-1].set_ylim(0.0, 1.05)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ATan width alpha")
    axes[0].set_ylabel(f"cos(FD reference, surrogate), rel h={float(rel_h):g}")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.surrogate_alignment",
        description=(
            "Cosine similarity between the ATan surrogate gradient of TD3's actor loss at several widths "
            "and a finite-difference reference of the spiking loss, per actor layer, on replayed windows of "
            "TD3 checkpoints (rllib train file tuned_examples/pendulum_p_{grsn,lif}_td3.yaml "
            "--checkpoint-freq 1)."
        ),
    )
    p.add_argument("--run", action="append", default=[], metavar="CORE=DIR",
                   help="a name and the storage dir of a TD3 run with checkpoints (repeatable)")  # fmt: skip
    p.add_argument("--env-steps", default="1000,10000,30000",
                   help="training points: the checkpoint nearest each count is used")  # fmt: skip
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS), help="ATan widths")
    p.add_argument("--num-directions", type=int, default=96, help="K random directions per group")
    p.add_argument("--rel-h", default=",".join(f"{h:g}" for h in DEFAULT_REL_H),
                   help="finite-difference steps relative to the group's weight norm")  # fmt: skip
    p.add_argument("--num-batches", type=int, default=2, help="replayed batches per checkpoint")
    p.add_argument("--batch-size", type=int, default=32, help="windows per batch (TD3's train batch)")
    p.add_argument("--seq-len", type=int, default=64, help="steps per window (max_seq_len)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-h", default=None, help="rel h of the table and figure (default: the middle one)")
    p.add_argument("--out", default=str(RESULTS_DIR / "pendulum_p_td3.json"), help="JSON result path")
    p.add_argument("--report-only", action="store_true", help="rebuild table and figure from --out")
    p.add_argument("--combine", nargs="+", metavar="JSON", default=None,
                   help="merge these result files (same settings) into --out, no measuring")  # fmt: skip
    args = p.parse_args(argv)
    # option, type, smallest allowed value, whether that value is allowed
    for option, kind, low, inclusive in (
        ("alphas", float, 0, False),
        ("rel_h", float, 0, False),
        ("env_steps", int, 0, True),
    ):
        text, flag = getattr(args, option), "--" + option.replace("_", "-")
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            p.error(f"{flag}: comma-separated {kind.__name__}s, got {text!r}")
        if any(v < low or (v == low and not inclusive) for v in values):
            p.error(f"{flag}: every value must be {'>=' if inclusive else '>'} {low}, got {text!r}")
    for spec in args.run:
        core, _, run_dir = spec.partition("=")
        if not core or not run_dir:
            p.error(f"--run: CORE=DIR, e.g. grsn=/tmp/runs/grsn; got {spec!r}")
    return args


def _read_results(path: Path) -> dict[str, Any]:
    """A result file written by this tool, or SystemExit with one line naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: not a readable result file of this tool ({error})") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        results = _read_results(out)
    elif args.combine:
        results = combine([_read_results(Path(f)) for f in args.combine])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    elif not args.run:
        raise SystemExit("give --run CORE=DIR (or --report-only / --combine)")
    else:
        torch.manual_seed(args.seed)
        alphas = [float(a) for a in args.alphas.split(",")]
        rel_h = [float(h) for h in args.rel_h.split(",")]
        targets = [int(s) for s in args.env_steps.split(",")]
        results = {
            "command": "python -m benchmarks.surrogate_alignment "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "settings": {
                "alphas": alphas,
                "rel_h": rel_h,
                "num_directions": args.num_directions,
                "num_batches": args.num_batches,
                "batch_size": args.batch_size,
                "seq_len": args.seq_len,
                "seed": args.seed,
                "dtype": "float64",
                "window_share": WINDOW_SHARE,
            },
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
            },
            "cores": {},
        }
        started = time.perf_counter()
        for spec in args.run:
            core, _, run_dir = spec.partition("=")
            points = []
            for info in find_checkpoints(run_dir, targets):
                t0 = time.perf_counter()
                batches = measure_checkpoint(
                    info["checkpoint"], alphas=alphas, num_directions=args.num_directions, rel_h=rel_h,
                    num_batches=args.num_batches, batch_size=args.batch_size, seq_len=args.seq_len,
                    seed=args.seed,
                )  # fmt: skip
                points.append({**info, "batches": batches, "seconds": time.perf_counter() - t0})
                print(f"{core} {info['env_steps']} steps: {time.perf_counter() - t0:.0f} s", flush=True)
            results["cores"][core] = {"run_dir": run_dir, "points": points}
        results["wall_s"] = time.perf_counter() - started
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    rel_h_keys = [str(float(h)) for h in results["settings"]["rel_h"]]
    report_h = str(float(args.report_h)) if args.report_h else rel_h_keys[len(rel_h_keys) // 2]
    print(markdown_table(results, report_h, ["all", "encoder", "core", "shortcut", "head"]))
    print()
    print(reach_table(results))
    print()
    print(h_table(results))
    png = out.with_suffix(".png")
    print(f"figure: {png}" if plot(results, report_h, png) else "matplotlib missing: no figure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
