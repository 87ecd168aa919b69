"""The reference notebook's aggregation (the original code), as pure functions over runs.

Per run: ``val_acc[e]`` = max ``Val (Unlearn)_accuracy`` over rows with ``unlearn_epoch == e``,
optionally made best-so-far (running max; D16). Runs of one method and epsilon level are
grouped by hyperparameters; at each epoch the group with the highest mean among those with
at least ``min_runs`` runs (and eta*lambda < 1 for Gradient Clipping) is plotted as its mean
and a 95% interval over its runs (an ensemble's members are runs: docs/ensembles.md):
``interval="t"``, the Student-t interval t_{n-1} * sd / sqrt(n) with sd of ddof=1 (the tables'
interval, evaluation/tow.py), or ``interval="notebook"``, the reference notebook's
1.96 * std / sqrt(n) with std of ddof=0, numpy's default. No matplotlib here.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from src.evaluation.tow import t_interval
from src.figures.runs import FigureInputError, Run, is_number as _finite

VAL = "Val (Unlearn)_accuracy"

METHOD_NAMES = {
    "retrain": "Retrain from scratch",
    "dp-baseline": "Output Perturbation",
    "contractive_coefficients": "Model Clipping",
    "iteration": "Gradient Clipping",
    "dp-sgd": "DP-SGD",
}

# The hyperparameters that make a group (the original code), as (name in the CSV, config key).
# Retrain and DP-SGD are not grouped: all their runs are averaged.
GROUP_KEYS = {
    "iteration": (
        ("lambda", "unlearning.weight_decay"),
        ("C1", "unlearning.iteration.grad_clip"),
        ("eta", "unlearning.max_lr"),
        ("C0", "unlearning.init_model_clip"),
    ),
    "contractive_coefficients": (
        ("model_clip", "unlearning.contractive_coefficients.model_clip"),
        ("grad_clip", "unlearning.contractive_coefficients.grad_clip"),
        ("sigma", "unlearning.contractive_coefficients.sigma"),
        ("init_clip", "unlearning.init_model_clip"),
        ("lr", "unlearning.max_lr"),
        ("regularization", "unlearning.weight_decay"),
    ),
    "dp-baseline": (("init_model_clip", "unlearning.init_model_clip"),),
    "retrain": (),
    "dp-sgd": (),
}


@dataclass(frozen=True)
class FigureSpec:
    methods: tuple  # config algorithm names, in legend order
    datasets: tuple | None  # panels in order; None: one panel per dataset present


FIGURES = {
    1: FigureSpec(("retrain", "dp-baseline", "contractive_coefficients", "iteration"),
                  ("mnist", "mnist_5k", "cifar10")),
    2: FigureSpec(("iteration", "retrain"), None),
    3: FigureSpec(("retrain", "dp-sgd", "iteration"), ("cifar10_feature", "cifar100_feature")),
    4: FigureSpec(("iteration",), None),
}


@dataclass
class Point:
    epoch: float
    mean: float
    ci95: float  # half-width of the 95% interval; NaN where one run gives none
    n_runs: int
    group: str
    eps_certified: float
    eps_published: float
    # the mean and interval of this point's runs minus the retrain runs of the same seeds
    # (dataset.seed, global_seed) at the same epoch: a paired comparison (budget_series)
    vs_retrain: tuple | None = None  # (mean, ci95, pairs)
    runs: list = field(default_factory=list, repr=False)  # the Members averaged here


@dataclass
class Series:
    panel: str  # dataset name
    algorithm: str
    level: float  # epsilon level on the chosen basis (grouping key)
    label: str  # legend text, stating both epsilons
    variant: str = ""  # compat switches that differ between runs of this method and panel
    points: list = field(default_factory=list)

    @property
    def method(self) -> str:
        name = METHOD_NAMES[self.algorithm]
        return f"{name} [{self.variant}]" if self.variant else name


# ---------------------------------------------------------------- per-run quantities

def running_max(curve: np.ndarray) -> np.ndarray:
    """Best-so-far over epochs; epochs a run did not log stay missing (NaN)."""
    out = np.fmax.accumulate(curve)
    out[np.isnan(curve)] = np.nan
    return out


def val_curve(run: Run, best_so_far: bool = True) -> np.ndarray:
    """val_acc[e - 1] for e = 1..last logged integer unlearn_epoch (NaN where not logged)."""
    by_epoch = defaultdict(list)
    for row in run.rows:
        acc, epoch = row.get(VAL), row.get("unlearn_epoch")
        if _finite(acc) and _finite(epoch) and epoch == round(epoch) and epoch >= 1:
            by_epoch[int(round(epoch))].append(acc)
    curve = np.full(max(by_epoch, default=0), np.nan)
    for epoch, accs in by_epoch.items():
        curve[epoch - 1] = max(accs)  # fine-grained validation can log several rows at e
    return running_max(curve) if best_so_far else curve


def mean_ci(values) -> tuple[float, float]:
    """Mean and 1.96 standard errors with the population std (ddof=0), as the notebook."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(1.96 * values.std() / np.sqrt(len(values)))


def mean_t(values) -> tuple[float, float]:
    """Mean and the half-width of the Student-t 95% interval (sd with ddof=1): the interval
    of the tables and of summary.json's member_stats. NaN half-width for a single value."""
    mean, half = t_interval(values)
    return float(mean), math.nan if half is None else float(half)


INTERVALS = {"t": mean_t, "notebook": mean_ci}
INTERVAL_NAMES = {"t": "mean ± Student-t 95% interval", "notebook": "mean ± 1.96 s.e. (the notebook's)"}


def certified_epsilon(run: Run) -> float:
    """The epsilon the run is really certified at; inf when its certificate is void."""
    if run.algorithm == "retrain":
        return 0.0
    if not run.certificate_valid:
        return math.inf
    if "certified_epsilon" in run.mins:
        return run.mins["certified_epsilon"]
    # Without the certificate row, `epsilon` is the certified value unless the run
    # used the reference's conversion (docs/differences.md#renyi-conversion).
    if run.cfg("compat.renyi_conversion") != "upstream" and "epsilon" in run.mins:
        return run.mins["epsilon"]
    return math.nan


def published_epsilon(run: Run) -> float:
    """What the reference code would have printed (eps = min logged epsilon)."""
    if run.algorithm == "retrain":
        return 0.0
    return run.mins.get("epsilon_published", run.mins.get("epsilon", math.nan))


def published_level(eps: float, figure: int) -> float:
    """The notebook's rounding of a logged epsilon into a plotted level."""
    if figure == 4:
        return 0.1 if abs(eps - 0.1) <= 0.5 else float(int(round(eps)))
    return float(np.round(round(eps, 4)))  # 1.0036 -> 1.0


def certified_level(eps: float) -> float:
    """Three significant digits, so runs calibrated alike share one level (7.0812 -> 7.08)."""
    return eps if not math.isfinite(eps) else float(f"{eps:.3g}")


def fmt_eps(values) -> str:
    values = sorted(set(values))
    text = ["∞" if math.isinf(v) else f"{v:.3g}" for v in values]
    return text[0] if len(text) == 1 else f"{text[0]}–{text[-1]}"


# ---------------------------------------------------------------- run selection

@dataclass
class Member:
    """A run with what the aggregation needs of it."""
    run: Run
    curve: np.ndarray
    eps_certified: float  # rounded to certified_level
    eps_published: float  # rounded the notebook's way for this figure (its level)
    eps_published_raw: float  # what the reference would have printed, unrounded (labels, CSV)


def run_matches_figure(run: Run, figure: int) -> str | None:
    """None if the run belongs to the figure, else why not (for the report)."""
    spec = FIGURES[figure]
    if run.cfg("requests") is not None:
        return f"a stream of deletion requests, not in Figure {figure} (python -m src.figures.request_stream)"
    if run.algorithm not in spec.methods:
        return f"algorithm {run.algorithm or '(none)'} not in Figure {figure}"
    if spec.datasets and run.dataset not in spec.datasets:
        return f"dataset {run.dataset or '(none)'} not in Figure {figure}"
    if (run.algorithm == "contractive_coefficients"
            and not run.cfg("unlearning.contractive_coefficients.noise_addition_after_projection")):
        return "Model Clipping with noise before projection (the notebook's cc2, not plotted)"
    if run.algorithm == "dp-sgd" and not (
            run.cfg("training.group_dp") and run.cfg("dataset.forget_split") == 0.005):
        return "DP-SGD without training.group_dp and forget_split 0.005"
    return None


def level_kept(algorithm: str, level: float, figure: int, basis: str) -> bool:
    """The notebook's epsilon filters; at the certified basis Figures 1-3 show every level."""
    if math.isnan(level):
        return False
    if figure == 4:
        return level <= 50
    if basis == "published":
        return {"iteration": level <= 2, "contractive_coefficients": level == 1,
                "dp-baseline": level == 1, "retrain": level <= 0}.get(algorithm, True)
    return True


def _cc_delta(run: Run, basis: str) -> float:
    order = ("certified_delta", "delta") if basis == "certified" else ("delta", "certified_delta")
    for key in order:
        if key in run.mins:
            return run.mins[key]
    return math.nan


def _compat_variants(runs: list) -> dict:
    """run_id -> 'key=value,...' for the compat switches that differ among these runs.

    Runs that differ in a compat switch are different experiments (e.g. reused noise), so
    they become separate series rather than competing groups of one series.
    """
    flat = {r.run_id: {k: str(v) for k, v in (r.cfg("compat", {}) or {}).items()} for r in runs}
    keys = sorted({k for d in flat.values() for k in d})
    varying = [k for k in keys if len({d.get(k, "") for d in flat.values()}) > 1]
    return {rid: ",".join(f"{k}={d.get(k, '')}" for k in varying) for rid, d in flat.items()}


def select(runs: list, figure: int, basis: str, best_so_far: bool):
    """Group the figure's runs into series: {(panel, algorithm, level, variant): [Member]}.

    Returns (groups, dropped) where dropped counts the reasons runs were left out.
    """
    dropped = Counter()
    candidates = []
    for run in runs:
        reason = run_matches_figure(run, figure)
        if reason:
            dropped[reason] += 1
        else:
            candidates.append(run)
    by_method = defaultdict(list)
    for run in candidates:
        by_method[(run.dataset, run.algorithm)].append(run)
    series = defaultdict(list)
    for (panel, algorithm), method_runs in by_method.items():
        variants = _compat_variants(method_runs)
        for run in method_runs:
            cert = certified_level(certified_epsilon(run))
            pub_raw = published_epsilon(run)
            pub = published_level(pub_raw, figure) if math.isfinite(pub_raw) else math.nan
            level = cert if basis == "certified" else pub
            name = METHOD_NAMES[algorithm]
            if math.isnan(level):
                dropped[f"{name}: no {basis} epsilon logged"] += 1
            elif not level_kept(algorithm, level, figure, basis):
                dropped[f"{name}: {basis} epsilon {fmt_eps([level])} outside Figure {figure}"] += 1
            elif algorithm == "contractive_coefficients" and not _cc_delta(run, basis) <= 1e-5:
                dropped[f"{name}: final delta above 1e-5"] += 1
            else:
                member = Member(run, val_curve(run, best_so_far), cert, pub, pub_raw)
                series[(panel, algorithm, level, variants[run.run_id])].append(member)
    return series, dropped


# ---------------------------------------------------------------- best group per epoch

def group_key(run: Run) -> tuple:
    return tuple((name, run.cfg(key)) for name, key in GROUP_KEYS[run.algorithm])


def group_label(key: tuple) -> str:
    return ";".join(f"{name}={value}" for name, value in key) or "all"


def _sort_key(key: tuple) -> tuple:
    # Deterministic order for ties (the notebook's idxmax takes the first): numbers by
    # value, then anything else (None, False) by its text.
    return tuple((0, float(v), "") if _finite(v) else (1, 0.0, str(v)) for _, v in key)


def group_passes(algorithm: str, key: tuple) -> bool:
    """Gradient Clipping groups need eta * lambda < 1 (otherwise the update is not contractive)."""
    if algorithm != "iteration":
        return True
    values = dict(key)
    eta, lam = values.get("eta"), values.get("lambda")
    return not (_finite(eta) and _finite(lam)) or eta * lam < 1


def best_group_points(algorithm: str, members: list, epochs, min_runs: int, interval: str = "notebook") -> list:
    """Per epoch, the group with the highest mean val accuracy among the eligible ones."""
    interval_of = INTERVALS[interval]
    grouped = bool(GROUP_KEYS[algorithm])
    groups = defaultdict(list)
    for m in members:
        groups[group_key(m.run)].append(m)
    keys = [k for k in sorted(groups, key=_sort_key) if group_passes(algorithm, k)]
    points = []
    for epoch in epochs:
        best = None
        for key in keys:
            have = [m for m in groups[key] if epoch <= len(m.curve) and not np.isnan(m.curve[epoch - 1])]
            if not have or (grouped and len(have) < min_runs):
                continue
            mean, ci = interval_of([m.curve[epoch - 1] for m in have])
            if best is None or mean > best[0]:  # strict: first group wins ties
                best = (mean, ci, key, have)
        if best is not None:
            mean, ci, key, have = best
            points.append(Point(epoch, mean, ci, len(have), group_label(key),
                                max(m.eps_certified for m in have),
                                max(m.eps_published_raw for m in have), runs=have))
    return points


def seed_of(run: Run) -> tuple:
    """What pairs two runs of different methods: the split and forget set (dataset.seed) and
    the global seed, hence the same pretrained model (an ensemble's member i of every config
    of one seed pair has the same global seed, docs/ensembles.md)."""
    return run.cfg("dataset.seed"), run.cfg("global_seed")


def pair_with_retrain(series: list, interval: str = "notebook") -> None:
    """Set each point's `vs_retrain`: its runs minus the retrain runs of the same seeds at the
    same epoch, their mean and interval (a paired comparison; retrain's own points get none).
    A point none of whose runs has a retrain partner keeps None."""
    retrain = {}
    for s in series:
        if s.algorithm == "retrain":
            for p in s.points:
                for m in p.runs:
                    retrain.setdefault((s.panel, p.epoch, seed_of(m.run)), m.curve[int(p.epoch) - 1])
    for s in series:
        if s.algorithm == "retrain":
            continue
        for p in s.points:
            diffs = [m.curve[int(p.epoch) - 1] - retrain[key] for m in p.runs
                     if (key := (s.panel, p.epoch, seed_of(m.run))) in retrain]
            if diffs:
                p.vs_retrain = (*INTERVALS[interval](diffs), len(diffs))


def series_label(algorithm: str, members: list, basis: str, variant: str) -> str:
    name = METHOD_NAMES[algorithm]
    if algorithm == "retrain":
        text = f"{name} ε=0"
    else:
        cert = fmt_eps(m.eps_certified for m in members)
        # the published value as the reference printed it (1.0036 shows as 1; a run
        # calibrated for a true epsilon shows its small Renyi-based number)
        pub = fmt_eps(m.eps_published_raw for m in members)
        if cert == "∞":
            text = f"{name}, no valid certificate (published ε={pub})"
        elif basis == "certified":
            text = f"{name} ε={cert} (published ε={pub})"
        else:
            text = f"{name} ε={pub} (certified ε={cert})"
    return f"{text} [{variant}]" if variant else text


PANEL_ORDER = ("mnist", "mnist_5k", "cifar10", "cifar10_feature", "cifar100_feature")


def panel_order(figure: int, panels) -> list:
    if FIGURES[figure].datasets:
        return [p for p in FIGURES[figure].datasets if p in panels]
    rank = {p: i for i, p in enumerate(PANEL_ORDER)}
    return sorted(panels, key=lambda p: (rank.get(p, len(rank)), p))


def epochs_to_plot(members: list, every: int = 1, max_epoch: int | None = None) -> list:
    """Every integer epoch some run logged; --every K keeps 1, 1+K, ... (the paper's CIFAR 1, 4, ..., 49)."""
    logged = {e + 1 for m in members for e in np.flatnonzero(~np.isnan(m.curve))}
    return [e for e in sorted(logged)
            if (e - 1) % every == 0 and (max_epoch is None or e <= max_epoch)]


def budget_series(runs: list, figure: int, basis: str = "certified", min_runs: int = 4,
                  best_so_far: bool = True, every: int = 1, max_epoch: int | None = None,
                  interval: str = "notebook"):
    """Series of Figures 1, 3 and 4, in panel then legend order; also the dropped reasons."""
    groups, dropped = select(runs, figure, basis, best_so_far)
    panels = defaultdict(list)
    for (panel, *_), members in groups.items():
        panels[panel].extend(members)
    methods = FIGURES[figure].methods
    out = []
    for panel in panel_order(figure, panels):
        epochs = epochs_to_plot(panels[panel], every, max_epoch)
        keys = sorted((k for k in groups if k[0] == panel),
                      key=lambda k: (methods.index(k[1]), k[2], k[3]))
        for _, algorithm, level, variant in keys:
            members = groups[(panel, algorithm, level, variant)]
            label = series_label(algorithm, members, basis, variant)
            points = best_group_points(algorithm, members, epochs, min_runs, interval)
            if points:
                out.append(Series(panel, algorithm, level, label, variant, points))
            else:
                dropped[f"{label} on {panel}: no group with >= {min_runs} runs "
                        f"(largest has {_largest_group(algorithm, members)}; see --min-runs)"] += len(members)
    pair_with_retrain(out, interval)
    return out, dropped


def _largest_group(algorithm: str, members: list) -> int:
    sizes = Counter(group_key(m.run) for m in members if group_passes(algorithm, group_key(m.run)))
    return max(sizes.values(), default=0)


# ---------------------------------------------------------------- Figure 2: convergence

@dataclass
class Convergence:
    panel: str
    noisy: Series  # starts at (0, trained model's Val (Train)_accuracy)
    finetune: Series
    retrain: Series | None  # starts at (0, Val (Post Unlearning Setup)_accuracy)
    finetune_start: float  # mean over runs of the last noisy x


def _val_rows(run: Run, max_x: float | None) -> list:
    """(unlearn_epoch, accuracy) sorted by epoch, as the notebook's scan_history then sort."""
    rows = [(row["unlearn_epoch"], row[VAL]) for row in run.rows
            if _finite(row.get(VAL)) and _finite(row.get("unlearn_epoch"))]
    rows.sort(key=lambda r: r[0])
    return [r for r in rows if max_x is None or r[0] <= max_x]


def _has_fractional_rows(run: Run) -> bool:
    return any(x != round(x) for x, _ in _val_rows(run, None))


def _average_by_x(per_run: list) -> list:
    """[(x, [values of each run at x])] with one value per run and x (its max, as 9.1)."""
    by_x = defaultdict(list)
    for rows in per_run:
        best = {}
        for x, acc in rows:
            key = round(x, 9)  # the same fractional epoch computed in different runs
            best[key] = max(acc, best.get(key, -math.inf))
        for key, acc in best.items():
            by_x[key].append(acc)
    return sorted(by_x.items())


def _points(pairs, group: str, eps_cert: float, eps_pub: float, interval: str = "notebook") -> list:
    return [Point(x, *INTERVALS[interval](v), len(v), group, eps_cert, eps_pub) for x, v in pairs]


def _summary_values(runs, key: str) -> list:
    """The last logged value of ``key`` in each run that logged a finite one."""
    values = []
    for run in runs:
        logged = [row[key] for row in run.rows if key in row]
        if logged and _finite(logged[-1]):
            values.append(logged[-1])
    return values


def _pabi_steps(run: Run) -> int:
    steps = [row["pabi_steps"] for row in run.rows if _finite(row.get("pabi_steps"))]
    value = steps[-1] if steps else run.summary.get("noisy_steps")
    if not _finite(value):
        raise FigureInputError(f"{run.path}: Gradient Clipping run without a pabi_steps row; "
                               "Figure 2 needs it to split the noisy phase from fine-tuning")
    return int(value)


def convergence(runs: list, basis: str = "certified", max_epoch: float | None = None, interval: str = "notebook"):
    """Figure 2 per dataset: noisy phase, fine-tuning and retrain curves (the original code).

    The notebook hard-codes four PABI runs; here each panel uses its largest Gradient
    Clipping group (epsilon level and hyperparameters) among runs with fine-grained rows.
    """
    pabi = [r for r in runs if r.algorithm == "iteration"]
    fine = [r for r in pabi if _has_fractional_rows(r)]
    if not pabi:
        raise FigureInputError("Figure 2 needs finished Gradient Clipping runs "
                               "(unlearning.algorithm: iteration); there are none")
    if not fine:
        raise FigureInputError(
            f"Figure 2 needs fine-grained validation: none of the {len(pabi)} Gradient Clipping "
            f"runs (e.g. {pabi[0].path}) logged Val (Unlearn)_accuracy at a fractional "
            "unlearn_epoch. Rerun them with unlearning.fine_grained_validation: true.")
    series, dropped = select(fine, 2, basis, best_so_far=False)
    if len(pabi) > len(fine):
        dropped["Gradient Clipping without fine-grained rows"] += len(pabi) - len(fine)
    groups = defaultdict(list)  # ((panel, algorithm, level, variant), hyperparameters) -> members
    for key, members in series.items():
        for m in members:
            groups[(key, group_key(m.run))].append(m)
    panels = []
    for panel in panel_order(2, {key[0] for key, _ in groups}):
        keys = sorted((k for k in groups if k[0][0] == panel),
                      key=lambda k: (k[0][2], k[0][3], _sort_key(k[1])))
        chosen = max(keys, key=lambda k: len(groups[k]))  # first of the largest
        for k in keys:
            if k != chosen:
                dropped[f"Gradient Clipping on {panel}: not the largest fine-grained group"] += len(groups[k])
        panels.append(_convergence_panel(chosen, groups[chosen], runs, basis, max_epoch, interval))
    return panels, dropped


def _convergence_panel(key, members, runs, basis, max_epoch, interval="notebook") -> Convergence:
    (panel, _, level, variant), hyper = key
    label = series_label("iteration", members, basis, variant)
    cert = max(m.eps_certified for m in members)
    pub = max(m.eps_published_raw for m in members)
    noisy, tuned, starts = [], [], []
    for m in members:
        rows = _val_rows(m.run, max_epoch)
        cut = max(_pabi_steps(m.run) - 1, 0)  # the notebook: the first pabi_steps - 1 rows
        noisy.append(rows[:cut])
        tuned.append(rows[cut:])
        if rows[:cut]:
            starts.append(rows[cut - 1][0])
    trained = _summary_values([m.run for m in members], "Val (Train)_accuracy")
    noisy_pairs = ([(0.0, trained)] if trained else []) + _average_by_x(noisy)
    tuned_pairs = _average_by_x(tuned)
    group = group_label(hyper)
    noisy_s = Series(panel, "iteration", level, label, variant,
                     _points(noisy_pairs, f"phase=noisy;{group}", cert, pub, interval))
    tuned_s = Series(panel, "iteration", level, label, variant,
                     _points(tuned_pairs, f"phase=finetune;{group}", cert, pub, interval))
    # Retrain is drawn over the same x range as the unlearning runs (the notebook: <= 30).
    last_x = max((x for x, _ in noisy_pairs + tuned_pairs), default=None)
    retrain_runs = [r for r in runs if r.algorithm == "retrain" and r.dataset == panel]
    retrain_s = None
    if retrain_runs:
        init = _summary_values(retrain_runs, "Val (Post Unlearning Setup)_accuracy")
        pairs = ([(0.0, init)] if init else []) + _average_by_x(
            [_val_rows(r, last_x) for r in retrain_runs])
        retrain_s = Series(panel, "retrain", 0.0, "Retrain from scratch ε=0", "",
                           _points(pairs, "phase=retrain", 0.0, 0.0, interval))
    start = float(np.mean(starts)) if starts else 0.0
    return Convergence(panel, noisy_s, tuned_s, retrain_s, start)


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = ("figure", "panel", "method", "epsilon_certified", "epsilon_published",
               "budget_epoch", "mean", "ci95", "n_runs", "group", "low", "high", "interval",
               "vs_retrain", "vs_retrain_ci95", "vs_retrain_pairs")


def blank_cell(value):
    """A CSV cell: empty where there is no number (an interval of one run)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def csv_rows(figure: int, series: list, interval: str = "notebook") -> list:
    """One row per point: mean, the interval's half-width (ci95), its ends and kind, and the
    paired difference to retrain of the same seeds (vs_retrain, its half-width and pairs)."""
    rows = []
    for s in series:
        for p in s.points:
            paired = p.vs_retrain or (None, None, None)
            rows.append({"figure": figure, "panel": s.panel, "method": s.method,
                         "epsilon_certified": p.eps_certified, "epsilon_published": p.eps_published,
                         "budget_epoch": p.epoch, "mean": p.mean, "ci95": blank_cell(p.ci95), "n_runs": p.n_runs,
                         "group": p.group, "low": blank_cell(p.mean - p.ci95), "high": blank_cell(p.mean + p.ci95),
                         "interval": interval, "vs_retrain": blank_cell(paired[0]),
                         "vs_retrain_ci95": blank_cell(paired[1]), "vs_retrain_pairs": blank_cell(paired[2])})
    return rows
