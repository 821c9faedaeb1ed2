"""The search: an objective over latents, random search (Rastrigin 1963, as Kulynych's seed ran it),
nevergrad's optimisers as alternatives, and the null walks.

The objective reduces the target model's output for each face to one number: a head's logit or its sigmoid
probability (``logit``, ``probability``: the model outputs (batch, heads) logits), or the spatial maximum or
mean of a map the model outputs, (batch, H, W) or (batch, 1, H, W) (``map_max``, ``map_mean``: Kulynych's
setting, the maximum of a saliency map). ``check_objective_output`` probes the model once, before any search,
so that an output of the wrong shape fails with the option and the shape found.

Random search, per start and step: draw k perturbations from N(0, σ² I), score the k candidates, and move
to the best one only if it beats the current score. All starts' candidates of a step are scored in one
call of the objective (one batched render + forward). A start stops when the move it would make takes it
further than ``budget`` (L2) from its start latent, or after T steps.

nevergrad (``oneplusone``, ``cma``): one optimiser per start (its ask/tell interface, ``num_workers=k``),
asked for k candidates per step, all starts' candidates scored in the same single call, every candidate
told its loss; the recorded trajectory follows the same rule as random search (move to the step's best
candidate when it beats the current score; stop where that move would leave the budget).

The null: from the same start latents, a walk that makes the same number of moves at the same steps with
the same lengths as its search, in uniformly random directions, under the same budget; nothing is
selected. What the search changes beyond what such a walk changes is what the objective prefers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facebias.reporting.console import get_logger

log = get_logger(__name__)

OPTIMIZERS = ("random", "oneplusone", "cma")
_NEVERGRAD = {"oneplusone": "OnePlusOne", "cma": "CMA"}
HEAD_OBJECTIVES = ("logit", "probability")  # one column of (batch, heads) logits
MAP_OBJECTIVES = ("map_max", "map_mean")  # a reduction of a (batch, H, W) or (batch, 1, H, W) map
OBJECTIVES = HEAD_OBJECTIVES + MAP_OBJECTIVES
PROBE_BATCH = 2
DIRECTIONS = ("raise", "lower")


@dataclass(frozen=True)
class SearchOptions:
    k: int = 16  # candidates per start and step
    sigma: float = 0.2  # std of each latent coordinate's perturbation
    steps: int = 20  # T
    budget: float | None = 8.0  # max ||z - z0|| (L2); None: unbounded
    optimizer: str = "random"
    seed: int = 0


@dataclass
class Trajectories:
    """Walks of S starts over T steps. latents[:, t] is where each walk stands after step t (0: the start)."""

    latents: np.ndarray  # (S, T + 1, D) float32
    scores: np.ndarray  # (S, T + 1) float64 objective (raw: e.g. the logit, whatever the direction); NaN: unscored
    moved: np.ndarray  # (S, T) bool: the walk moved at step t
    stopped: np.ndarray  # (S,) int: the step at which the budget stopped the walk; -1: it ran all T steps
    evaluations: int = 0  # candidates scored
    seconds: float = 0.0  # wall time of the whole search
    objective_seconds: float = 0.0  # of which inside the objective (render + forward)

    @property
    def start(self) -> np.ndarray:
        return self.latents[:, 0]

    @property
    def end(self) -> np.ndarray:
        return self.latents[:, -1]

    @property
    def step_lengths(self) -> np.ndarray:
        """(S, T) ||z_t - z_{t-1}|| (0 where the walk did not move)."""
        return np.linalg.norm(np.diff(self.latents.astype(np.float64), axis=1), axis=2)

    @property
    def distance(self) -> np.ndarray:
        """(S,) ||z_T - z_0||."""
        return np.linalg.norm(self.end.astype(np.float64) - self.start.astype(np.float64), axis=1)


class Objective:
    """Latents -> one number each: the generator's faces (one batched render), resized to the model's input when
    the generator draws another size, through the model (its own ``preprocess``), reduced per face: a head's logit
    or sigmoid probability (``head`` is its column), or the maximum or mean of the map the model outputs (``head``
    is None). ``sign`` is +1 to raise it, -1 to lower it; calls return the raw value. ``subject`` names the model
    in the resize note."""

    def __init__(self, generator, model, head: int | None, head_name: str | None, kind: str = "logit",
                 direction: str = "raise", input_size: int | None = None, device="cpu", batch_size: int | None = None,
                 subject: str = "the classifier"):
        if kind not in OBJECTIVES:
            raise ValueError(f"objective kind {kind!r}: use one of {', '.join(OBJECTIVES)}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
        if kind in HEAD_OBJECTIVES and head is None:
            raise ValueError(f"objective kind {kind!r} reads one head: give its column")
        self.generator, self.model = generator, model.eval()
        self.head = None if kind in MAP_OBJECTIVES else int(head)
        self.head_name = head_name
        self.kind, self.direction, self.sign = kind, direction, 1.0 if direction == "raise" else -1.0
        self.input_size = int(input_size or generator.image_size)
        self.device, self.batch_size = device, batch_size
        self.model.to(device)
        self.evaluations, self.seconds = 0, 0.0
        self.resize_note = None
        if int(generator.image_size) != self.input_size:
            self.resize_note = (f"the generator draws {generator.image_size} px faces but {subject} takes "
                                f"{self.input_size} px: every face is resized (PIL bilinear, as the image cache "
                                "resizes) before it is scored")
            log.warning(self.resize_note)

    @property
    def label(self) -> str:
        return objective_label(self.kind, self.head_name)

    def model_input(self, faces: np.ndarray) -> np.ndarray:
        """Faces at the generator's size -> the model's input size (unchanged when they agree)."""
        if faces.shape[1] == self.input_size:
            return faces
        from facebias.generators import crop_and_resize

        return crop_and_resize(faces, self.input_size, "none")

    def values(self, faces: np.ndarray) -> np.ndarray:
        """(n,) float64 objective values (raw, whatever the direction) of uint8 faces at the model's input size:
        every face through one forward pass (or chunks of ``batch_size``), each output reduced as it comes."""
        import torch

        out = []
        step = self.batch_size or max(len(faces), 1)
        with torch.no_grad():
            for i in range(0, len(faces), step):
                batch = {"image": torch.from_numpy(np.ascontiguousarray(faces[i:i + step])).to(self.device)}
                out.append(self.reduce(self.model(self.model.preprocess(batch)["image"])))
        return np.concatenate(out) if out else np.zeros(0)

    def reduce(self, output) -> np.ndarray:
        """One forward pass's output -> (n,) float64: the head's logit or probability, or the map's max or mean."""
        if self.kind in MAP_OBJECTIVES:
            flat = output.float().flatten(1)
            return (flat.amax(dim=1) if self.kind == "map_max" else flat.mean(dim=1)).cpu().numpy().astype(np.float64)
        column = output[:, self.head].float().cpu().numpy().astype(np.float64)
        return column if self.kind == "logit" else 1.0 / (1.0 + np.exp(-column))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        values = self.values(self.model_input(self.generator.render(z, batch_size=max(len(z), 1))))
        self.evaluations += len(z)
        self.seconds += time.perf_counter() - started
        return values


def objective_label(kind: str, head_name: str | None = None) -> str:
    """How captions, plots and the report name the objective: 'Male logit', 'P(Male)', 'map max', 'map mean'."""
    if kind == "logit":
        return f"{head_name} logit"
    if kind == "probability":
        return f"P({head_name})"
    return "map max" if kind == "map_max" else "map mean"


def check_objective_output(model, kind: str, input_size: int, heads: list[str] | None, head: int | None = None,
                           owner: str = "the model", where: str = "counterfactual") -> tuple[int, ...]:
    """The model's output on a probe batch of zeros (its input space, 2 x 3 x S x S) fits the objective ``kind``:
    (batch, len(heads)) logits for a head objective (``heads``: the columns it is read as, None: unchecked), a
    map (batch, H, W) or (batch, 1, H, W) for a map objective; else an error naming ``{where}.objective`` and the
    shape found. Returns the shape."""
    import torch

    probe = torch.zeros(PROBE_BATCH, 3, int(input_size), int(input_size))
    model = model.eval()
    try:
        with torch.no_grad():
            output = model(probe)
    except Exception as err:
        raise ValueError(f"{owner}: its forward pass failed on a probe batch of shape {tuple(probe.shape)} (input "
                         f"size {input_size} px): {type(err).__name__}: {err}") from err
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"{where}.objective={kind} needs a tensor output; {owner} returns a {type(output).__name__}")
    shape = tuple(int(n) for n in output.shape)
    found = f"{owner} returns shape {shape} for a probe batch of {PROBE_BATCH} at {input_size} px"
    if kind in MAP_OBJECTIVES:
        is_map = shape[:1] == (PROBE_BATCH,) and (len(shape) == 3 or (len(shape) == 4 and shape[1] == 1))
        if not is_map or min(shape) < 1:
            other = " (logits: use logit or probability of a head)" if len(shape) == 2 else ""
            raise ValueError(f"{where}.objective={kind} reduces a map the model outputs, (batch, H, W) or (batch, 1, "
                             f"H, W), to its spatial {'maximum' if kind == 'map_max' else 'mean'}; {found}{other}. "
                             f"Set {where}.objective to one that fits the model's output")
        return shape
    columns = len(heads) if heads is not None else None
    fits = len(shape) == 2 and shape[0] == PROBE_BATCH and (columns is None or shape[1] == columns)
    if head is not None and fits:
        fits = 0 <= head < shape[1]
    if not fits:
        expected = f"({PROBE_BATCH}, {columns}) = (batch, len(model.heads)) logits, heads {heads}" \
            if columns is not None else "(batch, heads) logits"
        hint = (f"; a model that outputs a map (e.g. a saliency map) needs {where}.objective=map_max or map_mean"
                if len(shape) in (3, 4) else "")
        raise ValueError(f"{where}.objective={kind} reads one head of {expected}; {found}{hint}")
    return shape


def minimum_budget(sigma: float, dim: int) -> float:
    """The median length of one step drawn from N(0, σ² I_dim): σ sqrt(median of χ²_dim)."""
    from scipy.stats import chi2

    return float(sigma * math.sqrt(chi2.ppf(0.5, dim)))


def check_options(options: SearchOptions, dim: int | None = None, where: str = "counterfactual") -> None:
    """Every search option, or a message naming the option and the fix (dim: the latent dimension)."""
    for name in ("k", "steps"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}.{name}={value!r}: use an integer >= 1")
    sigma = options.sigma
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{where}.sigma={sigma!r}: the step scale must be a number > 0 (the standard deviation of "
                         "each latent coordinate's perturbation), e.g. 0.05")
    if options.optimizer not in OPTIMIZERS:
        raise ValueError(f"{where}.optimizer={options.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    budget = options.budget
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise ValueError(f"{where}.budget={budget!r}: the latent-distance budget must be a number > 0, or null "
                         "for none")
    if dim is not None:
        one_step = minimum_budget(float(sigma), int(dim))
        if budget < one_step:
            raise ValueError(
                f"{where}.budget={budget:g} is smaller than one step can satisfy: a step drawn from N(0, σ² I) with "
                f"σ={sigma:g} in {dim} latent dimensions has median length {one_step:.3g}, so most searches would "
                f"stop before their first move. Raise {where}.budget well above {one_step:.3g} (e.g. "
                f"{10 * one_step:.3g}, about 10 steps' worth) or lower {where}.sigma")


def search(objective: Callable[[np.ndarray], np.ndarray], z0: np.ndarray, options: SearchOptions,
           sign: float = 1.0, progress_every: int = 10) -> Trajectories:
    """Search from every row of z0 at once (see the module docstring). ``objective`` maps (n, D) float32 latents
    to n raw values; the search maximises ``sign * value``."""
    check_options(options, z0.shape[1])
    started = time.perf_counter()
    z0 = np.asarray(z0, dtype=np.float32)
    n_starts, dim = z0.shape
    steps, k = options.steps, options.k
    timed = _Timed(objective)
    proposer = (_RandomProposer(options, dim) if options.optimizer == "random"
                else _NevergradProposer(options, z0))
    z = z0.copy()
    current = sign * timed(z0)
    current[~np.isfinite(current)] = -np.inf
    latents = np.empty((n_starts, steps + 1, dim), dtype=np.float32)
    scores = np.full((n_starts, steps + 1), np.nan)
    latents[:, 0], scores[:, 0] = z, sign * current
    moved = np.zeros((n_starts, steps), dtype=bool)
    stopped = np.full(n_starts, -1, dtype=np.int64)
    budget = np.inf if options.budget is None else float(options.budget)
    for t in range(steps):
        active = np.flatnonzero(stopped < 0)
        if active.size:
            candidates = proposer.ask(active, z[active])  # (a, k, D) float32
            values = sign * timed(candidates.reshape(-1, dim)).reshape(active.size, k)
            values[~np.isfinite(values)] = -np.inf
            proposer.tell(active, values)
            best = values.argmax(axis=1)
            best_value = values[np.arange(active.size), best]
            chosen = candidates[np.arange(active.size), best]
            improves = best_value > current[active]
            beyond = np.linalg.norm(chosen.astype(np.float64) - z0[active], axis=1) > budget
            stopped[active[improves & beyond]] = t
            go = improves & ~beyond
            z[active[go]] = chosen[go]
            current[active[go]] = best_value[go]
            moved[active[go], t] = True
        latents[:, t + 1], scores[:, t + 1] = z, sign * current
        if progress_every and ((t + 1) % progress_every == 0 or t + 1 == steps):
            log.info("search step %d/%d: %d of %d starts active, mean objective %.4f (start %.4f)", t + 1, steps,
                     int((stopped < 0).sum()), n_starts, float(np.mean(scores[:, t + 1])), float(np.mean(scores[:, 0])))
    return Trajectories(latents, scores, moved, stopped, timed.evaluations, time.perf_counter() - started,
                        timed.seconds)


def null_walks(search_walks: Trajectories, budget: float | None, seed: int) -> Trajectories:
    """From the same starts, the same number of moves at the same steps with the same lengths, in uniformly random
    directions, under the same budget (a walk stops where a move would leave it); scores unscored (NaN)."""
    rng = np.random.default_rng([int(seed), 0x6E756C6C])  # its own stream, apart from the search's
    start = search_walks.start.astype(np.float32)
    lengths = search_walks.step_lengths
    n_starts, dim = start.shape
    steps = lengths.shape[1]
    limit = np.inf if budget is None else float(budget)
    z = start.copy()
    latents = np.empty((n_starts, steps + 1, dim), dtype=np.float32)
    latents[:, 0] = z
    moved = np.zeros((n_starts, steps), dtype=bool)
    stopped = np.full(n_starts, -1, dtype=np.int64)
    for t in range(steps):
        direction = rng.standard_normal((n_starts, dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        wants = (lengths[:, t] > 0) & (stopped < 0)
        proposal = (z.astype(np.float64) + lengths[:, t, None] * direction).astype(np.float32)
        beyond = np.linalg.norm(proposal.astype(np.float64) - start, axis=1) > limit
        stopped[wants & beyond] = t
        go = wants & ~beyond
        z[go] = proposal[go]
        moved[go, t] = True
        latents[:, t + 1] = z
    return Trajectories(latents, np.full((n_starts, steps + 1), np.nan), moved, stopped)


class _Timed:
    def __init__(self, objective):
        self.objective, self.evaluations, self.seconds = objective, 0, 0.0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        values = np.asarray(self.objective(np.ascontiguousarray(z, dtype=np.float32)), dtype=np.float64)
        if values.shape != (len(z),):
            raise ValueError(f"the objective returned shape {values.shape} for {len(z)} latents; expected ({len(z)},)")
        self.seconds += time.perf_counter() - started
        self.evaluations += len(z)
        return values


class _RandomProposer:
    def __init__(self, options: SearchOptions, dim: int):
        self.rng = np.random.default_rng(int(options.seed))
        self.k, self.sigma, self.dim = options.k, float(options.sigma), dim

    def ask(self, starts: np.ndarray, z: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal((len(starts), self.k, self.dim), dtype=np.float32)
        return z[:, None, :] + np.float32(self.sigma) * noise

    def tell(self, starts: np.ndarray, values: np.ndarray) -> None:
        pass


class _NevergradProposer:
    """One nevergrad optimiser per start; every candidate it proposes is told its loss (-sign * value)."""

    def __init__(self, options: SearchOptions, z0: np.ndarray):
        try:
            import nevergrad as ng
        except ImportError as error:  # pragma: no cover - nevergrad is in requirements.txt
            raise ImportError(f"counterfactual.optimizer={options.optimizer} needs nevergrad: pip install "
                              "nevergrad (or use counterfactual.optimizer=random)") from error
        self.k = options.k
        self.optimizers, self.asked = [], {}
        cls = ng.optimizers.registry[_NEVERGRAD[options.optimizer]]
        for i, start in enumerate(z0):
            parameter = ng.p.Array(init=start.astype(np.float64)).set_mutation(sigma=float(options.sigma))
            parameter.random_state = np.random.RandomState((int(options.seed) * 100_003 + i) % 2**32)
            self.optimizers.append(cls(parametrization=parameter, budget=options.steps * options.k,
                                       num_workers=options.k))

    def ask(self, starts: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.empty((len(starts), self.k, z.shape[1]), dtype=np.float32)
        for row, start in enumerate(starts):
            asked = [self.optimizers[start].ask() for _ in range(self.k)]
            self.asked[int(start)] = asked
            out[row] = np.stack([np.asarray(c.value, dtype=np.float32) for c in asked])
        return out

    def tell(self, starts: np.ndarray, values: np.ndarray) -> None:
        for row, start in enumerate(starts):
            for candidate, value in zip(self.asked.pop(int(start)), values[row], strict=True):
                loss = -float(value) if np.isfinite(value) else 1e30
                self.optimizers[start].tell(candidate, loss)
