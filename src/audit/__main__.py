"""Audit certificates empirically: python -m src.audit --config FILE | --folder DIR | --stream-run DIR --request K.

Runs N independent noisy phases from each of the two worlds of the definition (A: the
model trained on all the data; B: the model trained without the forget set; for Langevin
and D2D, N whole chains of the method from its initial law, src/audit/convex.py) and prints
one line: `certified epsilon X, empirical lower bound Y (95%), ceiling Z; Gaussian-DP
estimate G` (and whether the bound refutes the original code's label). Writes
audits/<id>/audit.json and audit.png (the id names N and the confidence). --folder audits one config per method of a folder
and writes the table audits/tightness-<folder>.md and its numbers tightness-<folder>.json (a
config's `seeds: N` is ignored: the audit's chains are its own, --chains). --stream-run with --request K
audits request K of a finished stream against its own per-request certificate (A: the
model deployed before request K; B: the same recipe trained on what remains after it;
src/audit/request.py), in audits/<run_id>-request-<K>-.../. A lower bound above a
certified epsilon (noise not weakened) is a bug in that certificate: exit status 3, whether
or not compat switches mark the run's certificate invalid (its certified epsilon is still
the theory's for the noise drawn).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXCEEDED = 3


def positive_int(text: str) -> int:
    """--threads as experiment.py reads it: a whole number >= 1 (no 0 meaning "choose")."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m src.audit", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="experiment YAML to audit")
    what.add_argument("--folder", help="audit one config per method of this folder (tightness table)")
    what.add_argument("--stream-run", metavar="RUN_DIR",
                      help="a finished stream of deletion requests (LOGS/<run_id>); audit its request --request K")
    parser.add_argument("--request", type=int, metavar="K",
                        help="with --stream-run: the request to audit (1 = the first), against its own certificate")
    parser.add_argument("--match", action="append", default=[], metavar="PATTERN",
                        help="with --folder: audit only configs whose file name matches (fnmatch; repeatable)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="set a dotted config key (repeatable)")
    parser.add_argument("--chains", type=int, default=1024, help="noisy phases per world (default 1024)")
    parser.add_argument("--start", choices=["pretrained", "adversarial", "trained"], default="pretrained",
                        help="pretrained: the two worlds' pretrained models (default); adversarial: two points "
                             "2 C0 apart on the initial projection's ball; trained: the training randomness "
                             "included, every chain from its own model trained with and without the forget set")
    parser.add_argument("--noise-scale", type=float, default=1.0,
                        help="audit only: multiply every sigma drawn (weakened noise; the certificate no longer "
                             "applies, the audit should see it)")
    parser.add_argument("--confidence", type=float, default=0.95, help="of the lower bound (default 0.95)")
    parser.add_argument("--closeness", action="store_true",
                        help="also measure closeness to retrain (the NeurIPS 2023 challenge's forgetting quality "
                             "against --chains models retrained from scratch); always on with --folder")
    parser.add_argument("--seed", type=int, help="seed of the chains (default: the config's global_seed)")
    parser.add_argument("--out", default="audits", help="results folder (default audits/)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads for torch (default: the cores this process may use, src/threads.py)")
    parser.add_argument("--quiet", action="store_true", help="only the result line")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors too")
    return parser.parse_args(argv)


def check_args(args) -> None:
    import math

    from src.errors import UserError

    if args.chains < 4:
        raise UserError(f"--chains: {args.chains} is too few; at least 4 per world (2 choose the test, 2 evaluate it)")
    if not (math.isfinite(args.noise_scale) and args.noise_scale >= 0):
        raise UserError(f"--noise-scale: {args.noise_scale} must be a finite number >= 0")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence: {args.confidence} must be in (0, 1)")
    from src.audit.bounds import check_chain_count  # numpy only: torch is not loaded yet
    from src.preflight import check_output_dir

    # At delta 0 (the run's delta only raises the count needed; audit() checks it again).
    check_chain_count(args.chains, 0.0, args.confidence)
    check_output_dir(args.out, "--out")  # before any chain runs, not after
    if args.stream_run is not None and args.request is None:
        raise UserError("--stream-run: which request to audit? add --request K (1 = the first request)")
    if args.request is not None and args.stream_run is None:
        raise UserError(f"--request {args.request}: only with --stream-run RUN_DIR (a finished stream)")
    if args.match and args.folder is None:
        raise UserError(f"--match {args.match[0]}: only with --folder")
    if args.stream_run is not None and args.override:
        raise UserError(f"--override {args.override[0]}: not with --stream-run; request K is audited as the stream "
                        "ran it (its config.yaml)")


def audit_id(config, args) -> str:
    from src.config import run_id

    return run_id(config) + variant_suffix(args)


def variant_suffix(args) -> str:
    """What an audit id says besides what was audited: N, the confidence, the start,
    weakened noise, the seed (audits that differ in any of them never overwrite each other)."""
    name = f"-n{args.chains}-conf{args.confidence:g}"
    if args.start != "pretrained":
        name += f"-{args.start}"
    if args.noise_scale != 1.0:
        name += f"-noise{args.noise_scale:g}"
    if args.seed is not None:
        name += f"-seed{args.seed}"
    return name


def audit_config(config, config_file, args, console):
    """Audit one config; returns (result, audit.json path)."""
    from src.audit.audit import audit, check_auditable
    from src.audit.convex import audited_as_chains
    from src.audit.report import code_commit, write_audit
    from src.audit.worlds import adversarial_starts, pretrained_start_a, pretrained_starts
    from src.data.datamodule import get_datamodule
    from src.runner import make_plan, resolve_device

    config, describe_seeds = audited_member(config, args)
    check_auditable(config)
    plan = make_plan(config)  # every refusal before any training
    check_start(config, plan, args)
    check_before_audit(config, plan.privacy, plan.num_parameters, args, audit_id(config, args))
    device = resolve_device(config.device)
    data = get_datamodule(config, device)
    clock = time.perf_counter()
    chains_only = audited_as_chains(config)
    if chains_only:  # its worlds are its own chains, trained in audit() (src/audit/convex.py)
        start_a = start_b = None
        starts = {"world_A": "the method's chains trained on all the data, then unlearned",
                  "world_B": "the method's chains trained on the retain set alone"}
    elif args.start == "adversarial":
        # only world A's model is needed: it fixes the direction (world B's is never trained)
        theta, path_a = pretrained_start_a(config, data, device, console)
        start_a, start_b, starts = adversarial_starts(config, theta)
        starts["direction_from"] = path_a
    elif args.start == "trained":
        from src.audit.worlds import trained_starts

        from src.config import pretrained_key

        seed = config.global_seed if args.seed is None else args.seed
        # one pair of ensembles per training recipe and forget set (a folder's methods share it)
        key = (pretrained_key(config), pretrained_key(config, without_forget=True), args.chains, seed, str(device))
        if key not in _TRAINED:
            _TRAINED[key] = trained_starts(config, data, device, args.chains, seed)
        start_a, start_b, starts = _TRAINED[key]
    else:
        start_a, start_b, starts = pretrained_starts(config, data, device, console)
    pretrained_seconds = time.perf_counter() - clock
    describe = {"audit_id": audit_id(config, args), "config_file": config_file, "overrides": _overrides(args),
                "commit": code_commit(), "start": args.start, "starts": starts, **describe_seeds}
    result = audit(config, start_a, start_b, args.chains, data=data, device=device, confidence=args.confidence,
                   noise_scale=args.noise_scale, seed=args.seed, describe=describe, console=console,
                   closeness=bool(args.closeness or args.folder))
    result.seconds["pretrained_models"] = round(pretrained_seconds, 3)
    if (args.closeness or args.folder) and args.start != "adversarial" and not chains_only:  # released from A(D)
        from src.audit.audit import closeness_to_retrain
        from src.config import pretrained_key

        # one set of retrained models per recipe and retain set (a folder's methods share it)
        key = (pretrained_key(config, without_forget=True), args.chains, args.seed)
        seed = config.global_seed if args.seed is None else args.seed
        result.closeness, _RETRAINED[key] = closeness_to_retrain(
            config, data, start_a, start_b, args.chains, device=device, seed=seed, delta=result.bound.delta,
            confidence=args.confidence, retrained=_RETRAINED.get(key), console=console)
    path = write_audit(result, Path(args.out) / describe["audit_id"])
    return result, path


def audited_member(config, args) -> tuple[object, dict]:
    """The single run the audit starts from, and what it says about the config's `seeds`.

    `seeds: N` asks for N members in one run (docs/ensembles.md); the audit's chains are its
    own (--chains, their seeds derived from --seed), so it ignores N and audits member 0, the
    config's own seeds (its pretrained model is the single run's). Its audit id is then the
    single run's: the same audit, never a second copy under another name."""
    if config.seeds == 1:
        return config, {}
    from src.config import member_config

    seed = config.global_seed if args.seed is None else args.seed
    note = (f"seeds: {config.seeds} ignored: the audit runs its own {args.chains} chains per world (--chains, "
            f"seeds derived from {seed}) from member 0 (global_seed {config.global_seed}), not the config's "
            f"{config.seeds} members")
    return member_config(config, 0), {"config_seeds": config.seeds, "config_seeds_note": note}


def check_start(config, plan, args) -> None:
    """A method audited between its own chains has no starts to choose, and what its chains
    cannot reproduce is refused before any data are loaded."""
    from src.audit.convex import audited_as_chains, check_chain_audit
    from src.errors import UserError

    if not audited_as_chains(config):
        return
    check_chain_audit(config, plan)
    if args.start != "pretrained":
        raise UserError(f"--start {args.start}: unlearning.algorithm '{config.unlearning.algorithm}' is audited between "
                        "its own chains (trained from its initial law on all the data and on the retain set, as its "
                        "certificate compares them); leave --start out")


def check_before_audit(config, privacy, num_parameters: int, args, name: str) -> None:
    """What audit() would refuse after the pretrained models are trained, refused before."""
    from src.audit.audit import check_chains_fit, check_noise_scale
    from src.audit.bounds import check_chain_count
    from src.preflight import check_output_dir

    check_chain_count(args.chains, max(config.unlearning.delta, privacy.certified_delta or 0.0), args.confidence)
    check_chains_fit(args.chains, num_parameters)
    check_noise_scale(args.noise_scale, list(privacy.sigma_t) + [privacy.init_sigma])
    check_output_dir(Path(args.out) / name, "--out")


_RETRAINED: dict = {}
_TRAINED: dict = {}


def violated(result, noise_scale: float) -> bool:
    """A lower bound above the certified epsilon with the config's own noise. Not gated on
    certificate_valid: compat switches that mark a run invalid (the original's Renyi
    conversion) still certify the epsilon of the noise drawn, and where no certificate
    follows (reused noise) certified_epsilon is None."""
    return result.exceeds_certificate and noise_scale == 1.0


def run_one(args, console) -> int:
    from src import catalogue  # noqa: F401  (fills the registries the config is checked against)
    from src.config import load_config

    config = load_config(args.config, _overrides(args))
    clock = time.perf_counter()
    result, path = audit_config(config, args.config, args, console)
    console.line(f"audit: {path} ({time.perf_counter() - clock:.1f} s)")
    print(result.line(), flush=True)
    if violated(result, args.noise_scale):
        print("CERTIFICATE EXCEEDED: the empirical lower bound is above the certified epsilon with the config's own "
              "noise; this is a bug in the certificate", file=sys.stderr)
        return EXCEEDED
    return 0


def run_request(args, console) -> int:
    from src.audit.request import audit_request

    clock = time.perf_counter()
    result, path = audit_request(args.stream_run, args.request, args, console, variant_suffix(args))
    console.line(f"audit: {path} ({time.perf_counter() - clock:.1f} s)")
    print(result.line(), flush=True)
    if violated(result, args.noise_scale):
        print(f"CERTIFICATE EXCEEDED: the empirical lower bound is above request {args.request}'s certified epsilon "
              "with the stream's own noise; this is a bug in the certificate", file=sys.stderr)
        return EXCEEDED
    return 0


def run_folder(args, console) -> int:
    from src.audit.report import folder_record, tightness_table, write_folder_table
    from src.audit.tightness import folder_configs

    records, status = [], 0
    for path, config in folder_configs(args.folder, _overrides(args), args.match):
        clock = time.perf_counter()
        result, _ = audit_config(config, str(path), args, console)
        seconds = time.perf_counter() - clock
        print(f"{path.stem}: {result.line()}", flush=True)
        if "config_seeds_note" in result.config:
            console.line(f"{path.stem}: {result.config['config_seeds_note']}")
        records.append(folder_record(result, config, path.stem, seconds))
        if violated(result, args.noise_scale):
            status = EXCEEDED
    out = Path(args.out) / f"tightness-{Path(args.folder).resolve().name}"
    describe = {"folder": str(args.folder), "match": list(args.match), "chains": args.chains,
                "confidence": args.confidence, "start": args.start, "seed": args.seed,
                "overrides": _overrides(args)}
    markdown, numbers = write_folder_table(records, out, describe)
    print(tightness_table(records), end="")
    console.line(f"table: {markdown} (numbers: {numbers})")
    return status


def _overrides(args) -> list[str]:
    return list(args.override) + ([f"device={args.device}"] if args.device else [])


def main(argv=None) -> int:
    args = parse_args(argv)
    from src.audit.report import code_commit
    from src.errors import UserError

    code_commit()  # the commit of the code this process loaded, before anything can change it

    try:
        check_args(args)
        from src import threads

        # before torch is imported (waiting threads sleep); the chains' vectorised steps are
        # long enough that every core this process may use pays
        budget = threads.prepare(args.threads)
        if budget.note():
            print(budget.note(), file=sys.stderr)
        import torch

        from src.training.trainer import Console

        torch.set_num_threads(budget.choose(None))
        console = Console(quiet=args.quiet)
        if args.stream_run:
            return run_request(args, console)
        return run_folder(args, console) if args.folder else run_one(args, console)
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no audit was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
