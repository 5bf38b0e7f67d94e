"""Cures for vanishing and exploding gradients, each a named strategy registered in MITIGATIONS.

A mitigation acts at up to three fixed points of a training run, and a command applies it by name
without knowing which:

    configure(config)             before the model is built: cell, activation, init of Wa
    penalty(net, traj, grads)     a regulariser Omega added to the loss: its value and gradient
    clip(grads)                   after the gradient is computed, before the update

The unclipped gradient is what every diagnostic reports; clipping changes only the update.

    clip-norm      Pascanu et al. 2013, Algorithm 1: g = dL/dtheta over ALL parameters;
                   if ||g|| >= threshold: g <- threshold g / ||g||   as torch's clip_grad_norm_
                   computes it: g <- c g where c = threshold / (||g|| + 1e-6) < 1
    clip-value     clamp every element to [-c, c]: bounds each entry, changes the direction
                   (torch clip_grad_value_)
    orthogonal     Wa orthogonal (Saxe et al. 2014): every singular value 1 at init
    identity-relu  the IRNN (Le, Jaitly & Hinton 2015): relu, Wa = I
    relu           relu instead of tanh: f' = 1 on the active units
    l2             Omega = lambda/2 ||W_hh||_F^2 on the recurrent weights only (every layer and
                   direction's)
    omega          Pascanu et al.'s regulariser (REFERENCE §2), below, on every layer and direction
    gru, lstm      gated cells, whose additive paths carry the gradient back
    forget-bias    the LSTM's forget gate bias b_f = 1 at init (Gers et al. 2000; Jozefowicz et al.
                   2015): f = sigmoid(1) = 0.73 instead of 0.5 (model/gate_bias.py)
    chrono         chrono initialisation (Tallec & Ollivier 2018): LSTM b_f ~ ln U[1, T_max - 1],
                   b_i = -b_f; GRU b_z likewise; T_max = --chrono-max, else the run's --seq-len

Mitigations compose with "+": ``identity-relu+clip-norm`` (Le et al. 2015 trained the IRNN with
clipping), ``lstm+forget-bias``, ``orthogonal+clip-norm+l2``. A composite (``Composite``) is one
mitigation at each of the three points:

    configure    every part's settings; two parts that set the same setting (two cells, relu with
                 lstm, two inits of Wa, two bias inits) conflict: an InputError naming both
    penalty      the sum of the parts' values, and of their gradients parameter by parameter
    clip         the one clipping part's. Two clippings are refused: clip-value then clip-norm is
                 not clip-norm then clip-value, and neither paper nor torch defines the pair

Since no two parts touch the same thing, the order of the parts changes nothing; the name keeps
the order given. A mitigation that sets a gate bias needs a cell with that gate (``needs_cells``):
``forget-bias`` alone on the default rnn is an error that says to add the cell.

Pascanu's Omega asks every step to preserve the norm of the gradient it passes back:

    Omega = (1/B) sum_b sum_{t=2..T} ( ||delta_t^T J_t|| / ||delta_t|| - 1 )^2,
    J_t = da_t/da_{t-1} = diag(f'(z_t)) Wa,   delta_t = dL/da_t of sequence b

The gradient is taken through the explicit Wa ONLY: delta_t and the slopes f'(z_t) are held
constant, as in the paper. Each sequence of the batch gets its own ratio, and the sum over steps is
averaged over the batch, as the loss is. t = 1 is left out (a_0 = 0 is not a state of the model),
and so are steps where ||delta_t|| is zero or subnormal (the ratio is undefined there), which
includes pad steps (their dL/dh_t is zero). In a network, each layer and direction adds its own
Omega over its own steps, in the order it processes them, with its own Wa and slopes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Protocol

import numpy as np

from .bptt.network import NetworkGradients, NetworkTrajectory
from .model.activations import get_activation
from .model.cells import CELLS, Cell, Params, make_cell
from .config import RunConfig
from .errors import InputError
from .model.network import Network
from .model.reinit import set_bias_init, set_recurrent_init
from .model.statedict import Layout
from .profile import run_mask


@dataclass(frozen=True)
class Strengths:
    """Thresholds and strengths of the mitigations, with their defaults.

    clip_threshold : clip-norm's threshold on the global gradient norm (``--clip-threshold``).
    clip_value : clip-value's bound on each gradient element (``--clip-value``).
    l2 : lambda of the l2 penalty on W_hh (``--l2``).
    omega : strength of Pascanu's Omega, added to the loss as omega * Omega (``--omega-strength``).
    """

    clip_threshold: float = 1.0
    clip_value: float = 0.1
    l2: float = 1e-3
    omega: float = 1e-2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{STRENGTH_FLAGS[f.name]} must be a positive finite number (got {value})")


STRENGTH_FLAGS = {
    "clip_threshold": "--clip-threshold",
    "clip_value": "--clip-value",
    "l2": "--l2",
    "omega": "--omega-strength",
}


def global_norm(grads: Params) -> float:
    """sqrt(sum over every parameter of sum g^2), computed without overflow for huge finite entries."""
    with np.errstate(all="ignore"):
        scale = max((float(np.max(np.abs(g))) for g in grads.values() if g.size), default=0.0)
        if scale == 0.0 or not math.isfinite(scale):
            return scale if not math.isnan(scale) else math.nan
        total = sum(float(np.sum(np.square(g / scale))) for g in grads.values())
        return scale * math.sqrt(total)


# torch.nn.utils.clip_grad_norm_ adds this to the norm it divides by (and so does gradscope, so
# that a clipped update is the one torch makes).
CLIP_EPS = 1e-6


def clip_by_norm(grads: Params, threshold: float) -> tuple[Params, bool]:
    """Pascanu's Algorithm 1 as torch's clip_grad_norm_ computes it: c = threshold / (||g|| + 1e-6);
    where c < 1, g <- c g. Returns (g, fired)."""
    norm = global_norm(grads)
    coef = threshold / (norm + CLIP_EPS)
    if not coef < 1.0:  # also when the norm is NaN: nothing sensible to rescale
        return grads, False
    return {k: g * coef for k, g in grads.items()}, True


def clip_by_value(grads: Params, limit: float) -> tuple[Params, bool]:
    """Clamp every element to [-limit, limit]. Returns (g, fired): fired when any element was cut."""
    fired = any(bool(np.any(np.abs(g) > limit)) for g in grads.values())
    return {k: np.clip(g, -limit, limit) for k, g in grads.items()}, fired


def l2_penalty(weight: np.ndarray, strength: float) -> tuple[float, np.ndarray]:
    """Omega = lambda/2 ||W||_F^2 and dOmega/dW = lambda W."""
    return 0.5 * strength * float(np.sum(weight * weight)), strength * weight


def omega_penalty(wa: np.ndarray, slopes: np.ndarray, deltas: np.ndarray,
                  steps: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Pascanu's Omega and its gradient through Wa, with slopes and deltas held constant.

    Parameters
    ----------
    wa : (H, H) the recurrent matrix Wa.
    slopes : (K, B, H) f'(z_t) at the K steps summed over.
    deltas : (K, B, H) delta_t = dL/da_t at the same steps.
    steps : (K, B) bool, the terms to sum (None: all): a padded batch leaves out each sequence's
        first real step, whose Jacobian leads to the initial state, as t = 1 is left out.

    Returns
    -------
    Omega : (1/B) sum_{t, b} (||w_tb^T Wa|| - 1)^2 with w_tb = f'(z_t) * delta_t / ||delta_t||,
        which is ||delta_t^T J_t|| / ||delta_t|| for J_t = diag(f'(z_t)) Wa.
    dOmega/dWa : (H, H) = (1/B) sum 2 (n - 1) / n  w u^T, u = Wa^T w and n = ||u||:
        backprop through ||u|| (du = u/n) and through u_j = sum_i w_i Wa_ij (dWa_ij = w_i du_j).
    """
    batch = deltas.shape[1]
    with np.errstate(all="ignore"):
        d = np.linalg.norm(deltas, axis=2)  # (K, B) ||delta_t|| per sequence
        kept = np.isfinite(d) & (d >= np.finfo(np.float64).tiny)  # skip ||delta|| ~ 0
        if steps is not None:
            kept &= steps
        w = np.where(kept[..., None], slopes * deltas / np.where(kept, d, 1.0)[..., None], 0.0)
        u = w @ wa  # (K, B, H): row vectors w^T Wa = delta^T J / ||delta||
        n = np.linalg.norm(u, axis=2)
    omega = float(np.sum(np.where(kept, (n - 1.0) ** 2, 0.0))) / batch
    # ||u|| has no gradient at u = 0 (every unit off, as relu allows): that term contributes none.
    coeff = np.where(kept & (n > 0), 2.0 * (n - 1.0) / np.where(n > 0, n, 1.0), 0.0) / batch
    h = wa.shape[0]
    grad = (coeff[..., None] * w).reshape(-1, h).T @ u.reshape(-1, h)  # sum coeff w u^T
    return omega, grad


class Mitigation:
    """A named cure. Subclasses set ``name``, ``help`` and override what they change.

    overrides : RunConfig fields set before the model is built (cell, activation, init...).
    strength : the Strengths field this mitigation reads, if any.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    overrides: ClassVar[dict[str, object]] = {}
    strength: ClassVar[str | None] = None
    needs_cells: ClassVar[tuple[str, ...]] = ()  # the cells it applies to; () for any

    def __init__(self, strengths: Strengths = Strengths()) -> None:
        self.strengths = strengths

    @property
    def settings(self) -> dict[str, float]:
        """The strength this mitigation uses, by Strengths field name (empty when it has none)."""
        return {self.strength: getattr(self.strengths, self.strength)} if self.strength else {}

    @property
    def parts(self) -> list["Mitigation"]:
        """The registered mitigations this one is made of: itself, or a composite's parts."""
        return [self]

    def part_settings(self) -> list[dict]:
        """Each part's name and settings: its strength and the model settings it sets."""
        return [{"name": p.name, "settings": {**p.settings, **p.overrides}} for p in self.parts]

    def configure(self, config: RunConfig) -> RunConfig:
        """The config of the mitigated model."""
        configured = self._override(config)
        self.check_config(configured)
        return configured

    def check_config(self, config: RunConfig) -> None:
        """Raise InputError when the configured model lacks what the mitigation needs (a gate).
        With --weights the cell is the file's: ``treat`` checks the network instead."""
        if config.weights is None:
            self.check_cell(config.cell or "rnn")

    def check_cell(self, cell: str, layer: int | None = None) -> None:
        """InputError unless the mitigation applies to ``cell``. layer : where a loaded model has it
        (its cell is the file's: no --cell changes it), or None for a model gradscope builds."""
        if self.needs_cells and cell not in self.needs_cells:
            where = f"the {cell}" if layer is None else f"the {cell} of your model's layer {layer}"
            remedy = (f" or give --cell {self.needs_cells[0]}" if layer is None
                      else ", which swaps every layer's cell")
            raise InputError(
                f"mitigation {self.name} applies to the {' or '.join(self.needs_cells)} cell, not {where}: "
                f"combine it with one ({self.needs_cells[0]}{SEPARATOR}{self.name}){remedy}"
            )

    def _override(self, config: RunConfig) -> RunConfig:
        if not self.overrides:
            return config
        cell = self.overrides.get("cell")
        if cell is not None and cell not in CELLS:
            raise InputError(
                f"mitigation {self.name} needs the {cell} cell, which is not available "
                f"(cells: {', '.join(CELLS)})"
            )
        if config.weights is not None:
            return config  # the network read from --weights is changed instead: ``treat``
        return replace(config, **self.overrides)

    def check(self, net: Network) -> None:
        """Raise InputError when the mitigation cannot apply to this network."""

    def penalty(self, net: Network, traj: NetworkTrajectory, grads: NetworkGradients) -> tuple[float, Params]:
        """(value added to the loss, its gradient by flat parameter name: ``Network.parameters``);
        none by default."""
        return 0.0, {}

    def clip(self, grads: Params) -> tuple[Params, bool]:
        """(the gradient to update with, whether clipping fired); unchanged by default."""
        return grads, False


class NoMitigation(Mitigation):
    """The unmitigated run, for comparison: changes nothing (not registered, not a choice)."""

    name = "none"
    help = "no mitigation"


class ClipNorm(Mitigation):
    name = "clip-norm"
    help = "if ||g|| >= --clip-threshold, rescale g to that norm (Pascanu)"
    strength = "clip_threshold"

    def clip(self, grads: Params) -> tuple[Params, bool]:
        return clip_by_norm(grads, self.strengths.clip_threshold)


class ClipValue(Mitigation):
    name = "clip-value"
    help = "clamp each gradient element to [-c, c], c = --clip-value"
    strength = "clip_value"

    def clip(self, grads: Params) -> tuple[Params, bool]:
        return clip_by_value(grads, self.strengths.clip_value)


class Orthogonal(Mitigation):
    name = "orthogonal"
    help = "orthogonal Wa at init (gain 1; --spectral-radius dropped)"
    overrides = {"init": "orthogonal", "init_gain": 1.0, "spectral_radius": None}


class IdentityReLU(Mitigation):
    name = "identity-relu"
    help = "the IRNN: relu activation with Wa = I"
    overrides = {"cell": "rnn", "activation": "relu", "init": "identity", "init_gain": 1.0,
                 "spectral_radius": None}


class ReLU(Mitigation):
    name = "relu"
    help = "relu activation instead of tanh (f' = 1 on active units)"
    overrides = {"cell": "rnn", "activation": "relu"}


class L2(Mitigation):
    name = "l2"
    help = "weight decay on the recurrent weights only: --l2 / 2 ||W_hh||^2"
    strength = "l2"

    def penalty(self, net: Network, traj: NetworkTrajectory, grads: NetworkGradients) -> tuple[float, Params]:
        total, extra = 0.0, {}
        for k, d in net.each_layer():
            value, grad = l2_penalty(net.layer(k, d).recurrent_weight, self.strengths.l2)
            total += value
            extra[net.parameter_name(k, d, net.cell_of(k).recurrent)] = grad
        return total, extra


class Omega(Mitigation):
    name = "omega"
    help = "Pascanu's regulariser: every step should keep ||dL/da|| (vanilla RNN)"
    strength = "omega"

    def check_config(self, config: RunConfig) -> None:
        if (config.cell or "rnn") != "rnn" and config.weights is None:  # weights: checked on the network
            self._refuse(config.cell)

    def check(self, net: Network) -> None:
        for k in range(net.num_layers):
            if len(net.cell_of(k).gates) != 1:
                self._refuse(net.cell_of(k).name)

    @staticmethod
    def _refuse(cell: str) -> None:
        raise InputError(f"mitigation omega needs the vanilla rnn cell (J = diag(f'(z)) Wa), not {cell}")

    def penalty(self, net: Network, traj: NetworkTrajectory, grads: NetworkGradients) -> tuple[float, Params]:
        strength, total, extra = self.strengths.omega, 0.0, {}
        for k, d in net.each_layer():
            slope = get_activation(net.cell_of(k).activation).slope
            run, dL_dh = traj.runs[k][d], grads.layers[k][d].dL_dh
            deltas = dL_dh[::-1] if net.reads_backwards(k, d) else dL_dh  # in the order the direction processes its steps
            # f'(z_t) from a_t, t >= 2 (each sequence's second real step on: pad steps have delta 0)
            value, grad = omega_penalty(net.layer(k, d).recurrent_weight, slope(run.hidden[2:]), deltas[1:],
                                        _after_first_real_step(run_mask(traj, k, d)))
            total += strength * value
            extra[net.parameter_name(k, d, net.cell_of(k).recurrent)] = strength * grad
        return total, extra


def _after_first_real_step(mask: np.ndarray | None) -> np.ndarray | None:
    """(T - 1, B) bool, steps 2..T of a run's real steps in processing order (``profile.run_mask``):
    False at each sequence's first real step (its Jacobian leads to the initial state; the pads
    before it carry that state unchanged), None without padding (step 1 alone is left out, as
    ``omega_penalty``'s caller drops it)."""
    if mask is None:
        return None
    steps = mask.copy()
    steps[mask.argmax(axis=0), np.arange(mask.shape[1])] = False
    return steps[1:]


class GRU(Mitigation):
    name = "gru"
    help = "the GRU cell: the update gate's path z * h_{t-1} carries the gradient"
    overrides = {"cell": "gru", "activation": "tanh"}


class LSTM(Mitigation):
    name = "lstm"
    help = "the LSTM cell: the memory path f * c_{t-1} carries the gradient"
    overrides = {"cell": "lstm", "activation": "tanh"}


class ForgetBias(Mitigation):
    name = "forget-bias"
    help = "the LSTM's forget gate bias b_f = 1 at init: f = 0.73, not 0.5 (Gers et al. 2000)"
    overrides = {"bias_init": "forget-bias"}
    needs_cells = ("lstm",)


class Chrono(Mitigation):
    name = "chrono"
    help = "chrono init (Tallec & Ollivier 2018): b_f ~ ln U[1, T_max-1], b_i = -b_f (gru: b_z)"
    overrides = {"bias_init": "chrono"}
    needs_cells = ("lstm", "gru")


MITIGATIONS: dict[str, type[Mitigation]] = {
    cls.name: cls for cls in (ClipNorm, ClipValue, Orthogonal, IdentityReLU, L2, Omega, ReLU, GRU, LSTM,
                              ForgetBias, Chrono)
}
SEPARATOR = "+"
# What two parts that override the same RunConfig field both set, in words.
SETTING_WORDS = {"cell": "the cell", "activation": "the activation", "init": "the init of Wa",
                 "init_gain": "the init of Wa", "spectral_radius": "the init of Wa",
                 "bias_init": "the gate biases"}


def _clips(part: Mitigation) -> bool:
    return type(part).clip is not Mitigation.clip


class Composite(Mitigation):
    """Several registered mitigations applied as one, ``identity-relu+clip-norm`` (module docstring)."""

    help = "several mitigations at once"

    def __init__(self, parts: list[Mitigation]) -> None:
        super().__init__(parts[0].strengths)
        self._parts = parts
        self.name = SEPARATOR.join(p.name for p in parts)  # type: ignore[misc]
        self.overrides = {k: v for p in parts for k, v in p.overrides.items()}  # type: ignore[misc]
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                shared = list(dict.fromkeys(SETTING_WORDS.get(k, k) for k in a.overrides if k in b.overrides))
                if shared or (_clips(a) and _clips(b)):
                    what = " and ".join(shared or ["the clipping of the gradient"])
                    raise InputError(f"mitigations {a.name} and {b.name} conflict: both set {what}; "
                                     "choose one of them")

    @property
    def parts(self) -> list[Mitigation]:
        return list(self._parts)

    @property
    def settings(self) -> dict[str, float]:
        return {k: v for p in self._parts for k, v in p.settings.items()}

    def check_config(self, config: RunConfig) -> None:
        for p in self._parts:
            p.check_config(config)

    def check(self, net: Network) -> None:
        for p in self._parts:
            p.check(net)

    def check_cell(self, cell: str, layer: int | None = None) -> None:
        for p in self._parts:
            p.check_cell(cell, layer)

    def penalty(self, net: Network, traj: NetworkTrajectory, grads: NetworkGradients) -> tuple[float, Params]:
        """Omega_1 + Omega_2 + ...: the values summed, and the gradients by parameter."""
        total, summed = 0.0, {}
        for p in self._parts:
            value, grad = p.penalty(net, traj, grads)
            total += value
            for k, g in grad.items():
                summed[k] = summed[k] + g if k in summed else g
        return total, summed

    def clip(self, grads: Params) -> tuple[Params, bool]:
        clipping = [p for p in self._parts if _clips(p)]
        return clipping[0].clip(grads) if clipping else (grads, False)


def mitigation_class(name: str) -> type[Mitigation]:
    """The class registered as ``name``; an unknown name is an input error listing the choices."""
    try:
        return MITIGATIONS[name]
    except KeyError:
        raise InputError(f"unknown mitigation {name!r}; choose one of {', '.join(MITIGATIONS)} "
                         f"(or several joined by {SEPARATOR}: identity-relu+clip-norm)") from None


def part_classes(name: str) -> list[type[Mitigation]]:
    """The registered classes a name is made of: ``lstm+forget-bias`` -> [LSTM, ForgetBias]."""
    names = [n.strip() for n in name.split(SEPARATOR)]
    if len(set(names)) != len(names):
        raise InputError(f"mitigation {name} names a part twice")
    return [mitigation_class(n) for n in names]


def make_mitigation(name: str, strengths: Strengths = Strengths()) -> Mitigation:
    """The mitigation registered as ``name``, or the composite of ``a+b+...``, with these strengths."""
    parts = [cls(strengths) for cls in part_classes(name)]
    return parts[0] if len(parts) == 1 else Composite(parts)


def run_mitigation(name: str, strengths: Strengths = Strengths()) -> Mitigation:
    """What a run named ``name`` trains under: ``make_mitigation``'s, or for "none" (the
    unmitigated run, which is no registered choice of --mitigation) NoMitigation."""
    return NoMitigation(strengths) if name == NoMitigation.name else make_mitigation(name, strengths)


def mitigation_help(name: str) -> str:
    """What the named mitigation does, its parts' help joined."""
    return "; ".join(cls.help for cls in part_classes(name))


def strength_fields(name: str) -> list[str]:
    """The Strengths fields a mitigation (or each part of a composite) reads."""
    return [cls.strength for cls in part_classes(name) if cls.strength]


def applies_to(name: str, cell: str | None) -> bool:
    """Whether the mitigation can apply to a model of this cell (None: the default rnn)."""
    try:
        make_mitigation(name).configure(RunConfig(cell=cell))
    except InputError:
        return False
    return True


def default_mitigations(cell: str | None) -> list[str]:
    """What ``compare`` runs when none are named: every registered one that applies to the cell."""
    return [n for n in MITIGATIONS if applies_to(n, cell)]


def resolve_strengths(names: list[str], **given: float | None) -> Strengths:
    """Strengths from the values given by field name (None: the default).

    A value given for a mitigation that is not among ``names`` would change nothing: input error.
    """
    check_used({field for n in names for field in strength_fields(n)}, given)
    return Strengths(**{k: v for k, v in given.items() if v is not None})


def check_used(used: set[str], given: dict[str, float | None]) -> None:
    """A strength given (not None) that is not in ``used`` (the chosen mitigations' Strengths
    fields) would change nothing: an InputError naming the mitigation that reads it."""
    for field_name, value in given.items():
        if value is not None and field_name not in used:
            owner = next(n for n, cls in MITIGATIONS.items() if cls.strength == field_name)
            raise InputError(f"{STRENGTH_FLAGS[field_name]} applies only to the {owner} mitigation, "
                             "which is not selected")


def parse_mitigations(text: str | None) -> list[str]:
    """Names from a comma-separated list (None: all of them), in lower case, each checked, in order.
    An empty list is an input error: ``--mitigations "$UNSET"`` would otherwise run every cure."""
    if text is None:
        return list(MITIGATIONS)
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"--mitigations is empty (got {text!r}): name the cures, or leave it out for every one "
                         "that applies")
    for n in names:
        make_mitigation(n)  # an unknown name, a part twice, a conflict: refused here
    if len(set(names)) != len(names):
        raise InputError(f"--mitigations lists a name twice: {text}")
    return names


STARTS = ("init", "trained")


class Framework(Protocol):
    """How a model's framework draws new weights: a layout (model/statedict.py, model/keras.py)."""

    def initialise(self, network: Network, rng: np.random.Generator) -> Network: ...

    def swap_cell(self, network: Network, cell: Cell, rng: np.random.Generator) -> Network: ...


def treat(net: Network, mitigation: Mitigation, start: str, rng: np.random.Generator, t_max: int,
          framework: Framework = Layout()) -> Network:
    """The network a cure trains when the model is the user's own (--weights), a new one.

    start : "init" re-initialises the architecture as its ``framework`` does (the layout's: as
        PyTorch does, model/reinit.py, or for a Keras model as Keras does, model/keras.py),
        "trained" keeps the saved weights (fine-tuning). Then the cure's own settings, on top:
    cell           a cell swap: every layer new, as the framework initialises that module or layer
                   (from either start: the saved weights are another cell's); embedding, head,
                   layers, directions and hidden size kept. An activation alone (relu) keeps the weights.
    init           each W_hh gate block from that initialiser (orthogonal, identity)
    bias_init      the gate biases of forget-bias or chrono (T_max = ``t_max``)
    The cures that act on the gradient or the loss change nothing here.
    """
    if start not in STARTS:
        raise InputError(f"--start must be one of {', '.join(STARTS)} (got {start!r})")
    overrides = mitigation.overrides
    new = framework.initialise(net, rng) if start == "init" else net.copy()
    cell = overrides.get("cell", new.cell.name)
    activation = overrides.get("activation", new.cell.activation if cell == new.cell.name else "tanh")
    cells = [new.cell_of(k) for k in range(new.num_layers)]
    if "cell" in overrides and any(c.name != cell for c in cells):
        new = framework.swap_cell(new, make_cell(cell, activation), rng)
    elif "activation" in overrides and any(c.activation != activation for c in cells):
        # the same weights through another activation
        cells = [make_cell(c.name, activation, c.gate_activation, saved=True) for c in cells]
        new.cell, new.cells = cells[0], tuple(cells) if new.cells else ()
    for k in range(new.num_layers):
        mitigation.check_cell(new.cell_of(k).name, k)
    mitigation.check(new)
    if overrides.get("init") is not None:
        set_recurrent_init(new, overrides["init"], overrides.get("init_gain") or 1.0, rng)
    if overrides.get("bias_init") not in (None, "zero"):
        set_bias_init(new, overrides["bias_init"], t_max, rng)
    return new
