"""The empirical audit of one config's certificate: N noisy phases per world, one lower bound.

`audit(config, start_a, start_b, chains)` runs `chains` independent noisy phases of the
config from each starting point (the same config, every chain with its own data order,
augmentation and noise streams), vectorised as ensembles (src/training/ensemble.py),
scores each output (scores.py) and bounds epsilon from below (bounds.py) with a test
chosen among a small pre-registered family of scores. Beside the bound, which alone
decides whether a certificate is exceeded, it reports a Gaussian-DP estimate from the
projection score of all chains (bounds.gaussian_estimate), labelled as resting on a
Gaussian assumption. The audited output is the end of the noisy phase: the fine-tuning
after it is post-processing on retain data, which can only lower the bound.

The entry point takes a config and two starting points, so that any caller (a request
stream's k-th request, a worst case) can audit what it starts from. Langevin unlearning and
D2D have no such starts: their certificates compare whole chains from the method's initial
law, trained on D then unlearned against trained on D_r, which convex.py runs instead.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from src.audit.bounds import (GaussianEstimate, LowerBound, check_chain_count, gaussian_estimate, lower_bound,
                              split_halves)
from src.audit.chains import GROUP, WeakenedNoise, chain_seeds
from src.audit.convex import audited_as_chains, check_chain_audit, mean_models, world_description, world_outputs
from src.audit.scores import FAMILY, chain_scores, score_names, summary
from src.audit.slack import slack, slack_line
from src.audit.worlds import projected
from src.errors import UserError
from src.registry import UNLEARNING_ALGORITHMS
from src.runner import attach_run, make_plan
from src.training.ensemble import EnsembleModel, EnsembleTrainer, attach_ensemble, default_chunk
from src.training.trainer import Console, Trainer, build_model
from src.unlearning.base import UnlearningAlgorithm

FLOAT32_MAX = float(np.finfo(np.float32).max)


def auditable(config) -> bool:
    """Noisy phases from two starts (the noise is drawn after pretraining), or whole chains
    from the method's initial law (convex.py: Langevin, D2D)."""
    cls = UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm)
    return cls.noise_after_pretraining or cls.audited_as_chains


def check_auditable(config) -> None:
    if not auditable(config):
        raise UserError(f"unlearning.algorithm: '{config.unlearning.algorithm}' cannot be audited here: its "
                        "certificate rests on noise drawn in training, not only after it (auditing it needs N noisy "
                        "trainings per world, not two fixed pretrained starts)")
    from src.data.datamodule import check_dataset_config
    from src.models.buffers import require_no_running_stats
    from src.models.model import ModelFactory

    module = ModelFactory.create_model(config.model.name, config.model.n_classes, check_dataset_config(config))
    require_no_running_stats(module, "the audit (its chains run as one ensemble)")


def runs_own_epochs(algorithm) -> bool:
    """An empirical method: it chooses its own batches (UnlearningAlgorithm.unlearn_epoch)
    instead of taking noisy steps on the trainer's, so it runs as single runs, one per chain.
    An outside method's wrapper (src/unlearning/outside.py) passes every epoch on to the
    user's class: that class decides."""
    cls = type(algorithm)
    while getattr(cls, "outside", False) and "outside" in vars(cls):
        cls = cls.__bases__[0]
    return cls.unlearn_epoch is not UnlearningAlgorithm.unlearn_epoch


class _NoLog:
    def log(self, row: dict) -> None:
        pass

    def flush(self) -> None:
        pass


def chain_start(start: torch.Tensor, i: int) -> torch.Tensor:
    """Chain i's start: one start for every chain ([d]) or each chain its own ([chains, d],
    the training randomness included)."""
    return start[i] if start.dim() == 2 else start


def projected_start(config, start: torch.Tensor) -> torch.Tensor:
    """Where the noisy phases start, projected; the mean over chains of their own starts."""
    if start.dim() == 2:
        return torch.stack([projected(config, row) for row in start]).mean(0)
    return projected(config, start)


def own_epoch_outputs(config, data, start: torch.Tensor, seeds, device, sizes=None) -> tuple[torch.Tensor, int]:
    """theta [len(seeds), d] after an empirical method's whole unlearning (it has no noisy
    phase to stop at), each chain a run of the real trainer from `start` with its own
    global seed (the method's batch orders, random labels, ...)."""
    outputs = []
    for i, seed in enumerate(seeds):
        chain = config.model_copy(update={"global_seed": seed})
        plan = make_plan(chain, sizes or data.sizes)
        algorithm = attach_run(plan, device, data=data)
        model = build_model(chain, data.input_shape, device)
        with torch.no_grad():
            model.theta.copy_(chain_start(start, i).to(device))
        Trainer(chain, data, model, algorithm, _NoLog(), Console(quiet=True)).unlearn()
        outputs.append(model.theta.detach().cpu().clone())
    return torch.stack(outputs), 0


# Bytes an audit keeps per chain and world besides theta: its seed, scores, bookkeeping.
CHAIN_OVERHEAD_BYTES = 1024


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_chains_fit(chains: int, num_parameters: int, available: int | None = None) -> None:
    """Refuse, before any work, a chain count whose outputs cannot be held: both worlds keep
    theta (float32, and a copy while the groups are joined) of every chain."""
    available = available_memory() if available is None else available
    per_chain = 2 * (2 * 4 * num_parameters + CHAIN_OVERHEAD_BYTES)
    if available is not None and chains * per_chain > available:
        most = max(0, available // per_chain)
        raise UserError(f"--chains: {chains} chains per world would hold about {chains * per_chain / 1e9:.3g} GB "
                        f"(2 worlds x {chains} chains x {num_parameters} parameters), more than the "
                        f"{available / 1e9:.3g} GB of memory available; at most {most} fit")


def check_noise_scale(noise_scale: float, sigmas) -> None:
    """A scaled sigma must stay a float32 number, in which the noise is drawn."""
    largest = max([abs(float(s)) for s in sigmas] + [0.0])
    if largest * noise_scale > FLOAT32_MAX / 1e3:
        raise UserError(f"--noise-scale: {noise_scale:g} times the largest sigma of the plan ({largest:g}) is beyond "
                        f"float32 ({FLOAT32_MAX:.3g}), in which the noise is drawn; use a scale below "
                        f"{FLOAT32_MAX / 1e3 / largest:.3g}")


def noisy_phase_outputs(config, data, start: torch.Tensor, seeds, device, noise_scale: float = 1.0,
                        chunk: int | None = None, group: int = GROUP, sizes=None,
                        stop_after_noisy_phase: bool = True) -> tuple[torch.Tensor, int]:
    """theta [len(seeds), d] at the end of each chain's noisy phase (or, not stopping there,
    after the fine-tuning that follows it: the released model), and the noisy steps taken
    (planned for `sizes`, default the data's own)."""
    network = build_model(config, data.input_shape, device)
    chunk = chunk or default_chunk(device, config.dataset.batch_size)
    outputs, steps = [], 0
    for g0 in range(0, len(seeds), group):
        members = seeds[g0:g0 + group]
        plan = make_plan(config, sizes or data.sizes)  # a fresh algorithm (its accountant has state)
        algorithm = attach_ensemble(plan, device, members)
        if noise_scale != 1.0:
            algorithm.context.noise = WeakenedNoise(algorithm.context.noise, noise_scale)
        starts = start[g0:g0 + len(members)] if start.dim() == 2 else start.expand(len(members), -1)
        model = EnsembleModel(network, starts.to(device).contiguous(), chunk)
        trainer = EnsembleTrainer(config, data, model, algorithm, members, evaluate_splits=False)
        outputs.append(trainer.unlearn(stop_after_noisy_phase=stop_after_noisy_phase).cpu())
        steps = trainer.noisy_steps
    return torch.cat(outputs), steps


@dataclass
class AuditResult:
    config: dict  # what was audited: run id, algorithm, start, noise scale
    certified_epsilon: float | None
    certified_delta: float | None
    epsilon_published: float | None
    certificate_valid: bool
    chains: int  # per world
    noisy_steps: int
    bound: LowerBound
    scores: dict
    seconds: dict
    gaussian: GaussianEstimate | None = None
    # the family's score of every chain of each world: {"A": {name: [...]}, "B": {...}}
    chain_scores: dict = field(default_factory=dict)
    # where the certificate's slack is (slack.py)
    slack: dict = field(default_factory=dict)
    # closeness to retrain (closeness.py), when measured
    closeness: dict | None = None
    invalid_reasons: list = field(default_factory=list)
    # what is audited, when not a single run's certificate (e.g. "request 2 of 3 (per-request
    # certificate)"): it starts the printed line
    label: str | None = None
    # the selected score of every chain, for the figure (not in audit.json)
    selected_a: np.ndarray | None = None
    selected_b: np.ndarray | None = None

    @property
    def exceeds_certificate(self) -> bool:
        return self.certified_epsilon is not None and self.bound.epsilon > self.certified_epsilon

    @property
    def refutes_published(self) -> bool:
        """The lower bound is above what the original code would have printed."""
        return self.epsilon_published is not None and self.bound.epsilon > self.epsilon_published

    def as_dict(self) -> dict:
        return {
            **self.config,
            "certified_epsilon": self.certified_epsilon, "certified_delta": self.certified_delta,
            "epsilon_published": self.epsilon_published, "certificate_valid": self.certificate_valid,
            **({"certificate_invalid_because": self.invalid_reasons} if self.invalid_reasons else {}),
            "lower_bound": self.bound.epsilon, "ceiling": self.bound.ceiling, "confidence": self.bound.confidence,
            "delta": self.bound.delta, "chains_per_world": self.chains, "noisy_steps": self.noisy_steps,
            "exceeds_certificate": self.exceeds_certificate, "refutes_epsilon_published": self.refutes_published,
            "lower_bound_details": self.bound.as_dict(),
            "gaussian_estimate": None if self.gaussian is None else self.gaussian.as_dict(),
            "slack": self.slack, "closeness_to_retrain": self.closeness, "scores": self.scores, "chain_scores": self.chain_scores, "seconds": self.seconds,
        }

    def line(self) -> str:
        pct = f"{100 * self.bound.confidence:g}%"
        certified = "none" if self.certified_epsilon is None else f"{rounded_up(self.certified_epsilon)}"
        line = (f"{self.label + ': ' if self.label else ''}certified epsilon {certified}, "
                f"empirical lower bound {rounded_down(self.bound.epsilon)} ({pct}), ceiling {rounded_down(self.bound.ceiling)}")
        if self.gaussian is not None:
            line += f"; Gaussian-DP estimate {self.gaussian.epsilon:.3f} (assumes Gaussian scores)"
        if self.refutes_published:
            line += (f"; the lower bound refutes epsilon_published {rounded_up(self.epsilon_published)} "
                     "(the original code's label)")
        if self.closeness is not None:
            c = self.closeness
            line += (f"; closeness to retrain: forgetting quality {c['forgetting_quality']:.3f} "
                     f"({c['null_models_per_side']} per side: {c['forgetting_quality_against_half']:.3f}, identical "
                     f"models {c['null_forgetting_quality']:.3f}), challenge score {c['challenge_score']:.3f}, "
                     "lower bound "
                     f"{rounded_down(c['lower_bound'])} ({pct})")
        return line


def rounded_down(x: float) -> str:
    """A lower bound printed rounded down (never more than it is)."""
    return f"{math.floor(x * 1000) / 1000:.3f}"


def rounded_up(x: float) -> str:
    """A certificate printed rounded up (never less than it is)."""
    return f"{math.ceil(x * 1000) / 1000:.3f}"


def family_bound(scores_a: np.ndarray, scores_b: np.ndarray, delta: float, confidence: float) -> LowerBound:
    """The lower bound from [chains, scores] matrices laid out as chain_scores lays them
    out, choosing its test among the pre-registered family only (scores.FAMILY): choosing
    among hundreds of per-example margins on half the chains too would let one of them win
    the selection by chance far more often than the signal does."""
    family = len(FAMILY)
    return lower_bound(scores_a[:, :family], scores_b[:, :family], delta, confidence)


def audit(config, start_a: torch.Tensor | None, start_b: torch.Tensor | None, chains: int, *, data, device="cpu",
          confidence: float = 0.95, noise_scale: float = 1.0, seed: int | None = None, chunk: int | None = None,
          describe: dict | None = None, console=None, sizes=None, label: str | None = None,
          closeness: bool = False) -> AuditResult:
    """Audit `config`'s certificate between worlds starting at start_a and start_b ([d] each),
    or, for a method audited between its own chains (convex.py; the starts are None),
    between N chains trained from its initial law on D then unlearned and N on D_r.

    `sizes`: the split sizes the pass is planned (and certified) for, when they are not the
    data's own (a request of a stream: its plan's sizes, while `data.forget`, which only the
    scores read, is everything deleted so far)."""
    check_auditable(config)
    if chains < 4:
        raise UserError(f"--chains: {chains} is too few; at least 4 per world (2 choose the test, 2 evaluate it)")
    if not (math.isfinite(noise_scale) and noise_scale >= 0):
        raise UserError(f"--noise-scale: {noise_scale} must be a finite number >= 0")
    if not 0 < confidence < 1:
        raise UserError(f"--confidence: {confidence} must be in (0, 1)")
    plan = make_plan(config, sizes or data.sizes)
    privacy = plan.privacy
    # Before any chain runs: a count that can show something, fits in memory, noise that fits float32.
    check_chain_count(chains, max(config.unlearning.delta, privacy.certified_delta or 0.0), confidence)
    check_chains_fit(chains, plan.num_parameters)
    check_noise_scale(noise_scale, list(privacy.sigma_t) + [privacy.init_sigma])
    seed = config.global_seed if seed is None else seed
    seconds = {}
    outputs, steps = {}, 0
    whole_chains = audited_as_chains(config)
    if whole_chains:
        check_chain_audit(config, plan, sizes)
    empirical = runs_own_epochs(plan.algorithm)
    if empirical and noise_scale != 1.0:
        raise UserError(f"--noise-scale: '{config.unlearning.algorithm}' draws no noise to weaken")
    for world, start in (("A", start_a), ("B", start_b)):
        clock = time.perf_counter()
        seeds = chain_seeds(seed, world, chains)
        if whole_chains:
            outputs[world], steps = world_outputs(config, data, world, seeds, device, noise_scale)
        elif empirical:
            outputs[world], steps = own_epoch_outputs(config, data, start, seeds, device, sizes)
        else:
            outputs[world], steps = noisy_phase_outputs(config, data, start, seeds, device, noise_scale, chunk,
                                                        sizes=sizes)
        seconds[f"chains_{world}"] = round(time.perf_counter() - clock, 3)
        diverged = int((~torch.isfinite(outputs[world]).all(dim=1)).sum())
        if diverged:
            raise UserError(f"{diverged} of {chains} noisy phases of world {world} ended with non-finite parameters "
                            "(the noisy phase diverged); nothing can be audited, check the config's step size")
        if console is not None:
            what = ("chains (training and unlearning)" if whole_chains else "unlearning runs" if empirical
                    else f"noisy phases of {steps} steps")
            console.line(f"world {world}: {chains} {what} in {seconds[f'chains_{world}']:.1f} s")
    clock = time.perf_counter()
    network = build_model(config, data.input_shape, device)
    if whole_chains:
        # along the difference of the worlds' mean models, estimated on the chains that
        # choose the test only: those that evaluate it (bounds.split_halves) stay unseen
        start_a, start_b = mean_models(outputs["A"], outputs["B"])
        evaluate = split_halves(chains)[1]
    else:
        # the noisy phase starts from the projected starts: measure along their difference
        start_a, start_b = projected_start(config, start_a), projected_start(config, start_b)
        evaluate = slice(0, chains)  # the direction is fixed in advance: every chain is unseen
    scores_a = chain_scores(network, outputs["A"], start_a, start_b, data.forget)
    scores_b = chain_scores(network, outputs["B"], start_a, start_b, data.forget)
    names = score_names(data.indices.forget)
    seconds["scores"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    # The certificate speaks at its own delta; bound at the config's delta, or the
    # certificate's where that is larger (a certificate at delta_c implies one at any
    # larger delta, not at a smaller one).
    delta = max(config.unlearning.delta, privacy.certified_delta or 0.0)
    bound = family_bound(scores_a, scores_b, delta, confidence)
    # the pre-registered test, the measured shift and the means, on chains the direction never saw
    gaussian = gaussian_estimate(scores_a[evaluate, 0], scores_b[evaluate, 0], delta, confidence)
    where = slack(plan.algorithm, delta, scores_a[evaluate, 0], scores_b[evaluate, 0], privacy.certified_epsilon,
                  noise_scale)
    seconds["bound"] = round(time.perf_counter() - clock, 3)
    if console is not None:
        console.line(slack_line(where, gaussian.epsilon, bound.epsilon))
    measures = None
    if closeness and whole_chains:
        measures = closeness_measures(network, data, outputs["A"], outputs["B"], start_a, start_b, delta, confidence)
        measures["retrained_as"] = "world B: the method's chains trained on the retain set from its initial law"
    column = bound.test.score
    per_chain = {world: {name: [float(x) for x in scores[:, j]] for j, name in enumerate(FAMILY)}
                 for world, scores in (("A", scores_a), ("B", scores_b))}
    return AuditResult(
        config={**(describe or {}), "algorithm": config.unlearning.algorithm, "noise_scale": noise_scale,
                "audit_seed": seed, "device": str(device), "selected_score": names[column],
                "test_family": list(FAMILY),
                **({"start": "chains", "worlds": world_description(config, plan, data)} if whole_chains else {})},
        certified_epsilon=privacy.certified_epsilon, certified_delta=privacy.certified_delta,
        epsilon_published=privacy.epsilon_published, certificate_valid=privacy.certificate_valid,
        invalid_reasons=list(privacy.invalid_reasons), chains=chains, noisy_steps=steps, bound=bound,
        scores=summary(scores_a[evaluate], scores_b[evaluate], names), seconds=seconds, gaussian=gaussian, chain_scores=per_chain,
        slack=where, closeness=measures,
        selected_a=scores_a[:, column], selected_b=scores_b[:, column], label=label)


def released_outputs(config, data, start: torch.Tensor, seeds, device, sizes=None) -> torch.Tensor:
    """theta [len(seeds), d] of the released model (the whole unlearning budget) from `start`."""
    if runs_own_epochs(make_plan(config, sizes or data.sizes).algorithm):
        return own_epoch_outputs(config, data, start, seeds, device, sizes)[0]
    return noisy_phase_outputs(config, data, start, seeds, device, sizes=sizes, stop_after_noisy_phase=False)[0]


def retrained_members(config, data, seeds, device) -> torch.Tensor:
    """theta [len(seeds), d]: the config's training recipe on the retain set alone, from the
    seeds' own initialisations and data orders (retrain from scratch, as the challenge)."""
    import dataclasses

    from src.training.ensemble import pretrain_ensemble

    retain_only = dataclasses.replace(data, train=data.retain)
    thetas = []
    for g0 in range(0, len(seeds), GROUP):
        thetas.append(pretrain_ensemble(config, retain_only, seeds[g0:g0 + GROUP], device).theta.detach().cpu())
    return torch.cat(thetas)


def closeness_to_retrain(config, data, start_a: torch.Tensor, start_b: torch.Tensor, chains: int, *, device,
                         seed: int, delta: float, confidence: float, retrained: torch.Tensor | None = None,
                         console=None) -> tuple[dict, torch.Tensor]:
    """The challenge's forgetting quality of the released models from world A's start against
    `chains` models retrained from scratch (trained here unless given), its per-example
    epsilons and, between the same two sets, a Clopper-Pearson lower bound (the family's
    test chosen on half of each). Returns (the measures, the retrained models)."""
    clock = time.perf_counter()
    if retrained is None:
        retrained = retrained_members(config, data, chain_seeds(seed, "retrain", chains), device)
    retrain_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    released = released_outputs(config, data, start_a, chain_seeds(seed, "released", chains), device)
    released_seconds = time.perf_counter() - clock
    network = build_model(config, data.input_shape, device)
    a, b = projected_start(config, start_a), projected_start(config, start_b)
    measures = closeness_measures(network, data, released, retrained, a, b, delta, confidence)
    if console is not None:
        console.line(f"closeness: {chains} released models in {released_seconds:.1f} s, {len(retrained)} retrained "
                     f"in {retrain_seconds:.1f} s")
    measures["seconds"] = {"retrained": round(retrain_seconds, 3), "released": round(released_seconds, 3)}
    return measures, retrained


def closeness_measures(network, data, released: torch.Tensor, retrained: torch.Tensor, a: torch.Tensor,
                       b: torch.Tensor, delta: float, confidence: float) -> dict:
    """The challenge's forgetting quality and final score of the `released` models ([N, d])
    against the `retrained` ones, its per-example epsilons and, between the same two sets, a
    Clopper-Pearson lower bound (the family's test chosen on half of each); a, b: the
    direction of the family's projection score."""
    from src.audit.closeness import challenge_score, example_epsilons, forgetting_quality
    from src.training.ensemble import evaluate

    chains = len(released)
    family = len(FAMILY)
    scores_u = chain_scores(network, released, a, b, data.forget)
    scores_r = chain_scores(network, retrained, a, b, data.forget)
    epsilons = example_epsilons(scores_u[:, family:], scores_r[:, family:])
    # What identical models score, and the same measure of the released models: the second
    # half of the retrained models, and the first half of the released ones, each against
    # the first half of the retrained (F depends on the number of models per side).
    half = len(retrained) // 2
    reference = scores_r[:half, family:]
    null = forgetting_quality(example_epsilons(scores_r[half:2 * half, family:], reference), half)
    halved = forgetting_quality(example_epsilons(scores_u[:half, family:], reference), half)
    bound = family_bound(scores_u, scores_r, delta, confidence)
    # the challenge's utility ratios: mean retain and test accuracy over each side's models
    accuracy = {side: {split: float(evaluate(EnsembleModel(network, thetas.to(network.device)),
                                             getattr(data, split))[1].mean()) for split in ("retain", "test")}
                for side, thetas in (("unlearned", released), ("retrained", retrained))}
    quality = forgetting_quality(epsilons, chains)
    score = challenge_score(quality, accuracy["unlearned"]["retain"], accuracy["unlearned"]["test"],
                            accuracy["retrained"]["retain"], accuracy["retrained"]["test"])
    return {"forgetting_quality": quality, "challenge_score": score, "accuracy": accuracy,
            "null_forgetting_quality": null,
            "forgetting_quality_against_half": halved, "null_models_per_side": half,
            "median_example_epsilon": float(np.median(epsilons)),
            "example_epsilons": [float(e) for e in epsilons], "lower_bound": bound.epsilon,
            "lower_bound_details": bound.as_dict(), "models_per_side": chains,
            "definition": "NeurIPS 2023 unlearning challenge forgetting quality F (1 is best), no confidence; "
                          "challenge_score: its final score F (RA / RA_retrain) (TA / TA_retrain), accuracies "
                          "the mean over each side's models; lower_bound: Clopper-Pearson, released vs "
                          "retrained models"}
