"""Run one experiment: python experiment.py --config FILE [--override key=value ...].

Validates the whole config before anything is written, then: split the data, pretrain
(or load a checkpoint), unlearn the forget set until the privacy target is certified,
fine-tune for the rest of the budget, test. Results go to logs/<run_id>/.
Without --config it runs the offline quick-start on the bundled MNIST digits.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time

# Faults of the filesystem, not of the code: reported in one line, without a traceback.
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM,
                errno.ENAMETOOLONG}
FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
QUICKSTART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "quickstart_mnist5k.yaml")


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=QUICKSTART, help="experiment YAML (default: the mnist_5k quick-start)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="set a dotted key, e.g. --override unlearning.epochs=5 (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate, print the run plan as JSON on the last line, write nothing")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="only make sure the pretrained model of a `pretrained: auto` config is cached")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides the config's device")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads for torch, exactly (default: the config's `threads:`, else chosen from "
                             "the model's size and the cores available, see src/threads.py)")
    parser.add_argument("--max-threads", type=positive_int, metavar="N",
                        help="a ceiling for that choice (run_exp.py passes each worker's share of the cores)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors too")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from src.errors import UserError

    if argv is None:  # as a program: SIGTERM (scancel, a cluster's stop) ends the run like Ctrl-C
        signal.signal(signal.SIGTERM, _interrupted)

    try:
        return _main(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the filesystem refused a write (disk full, read-only, quota)
        if args.debug or e.errno not in WRITE_ERRORS:
            raise
        advice = " Free space, or choose another logs_dir / checkpoints_dir." if e.errno in FULL else ""
        print(f"error: {e.strerror}: {e.filename or '(a file of this run)'}; nothing of this run was kept.{advice}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing of this run was kept", file=sys.stderr)
        return 130


def _interrupted(signum, frame):
    raise KeyboardInterrupt  # the run drops its staging directory on the way out


def _main(args) -> int:
    from src import allocator, catalogue, threads  # noqa: F401  (catalogue: fills the registries configs name)
    from src.config import load_config

    overrides = list(args.override)
    if args.device:
        overrides.append(f"device={args.device}")
    config = load_config(args.config, overrides)
    # before torch is imported: the OpenMP runtime reads its wait policy when it loads
    budget = threads.prepare(args.threads or config.threads, args.max_threads)
    if budget.note():
        print(budget.note(), file=sys.stderr)
    allocator.keep_freed_memory()

    from src import runner
    from src.training.trainer import Console

    if args.dry_run:
        from src.preflight import check_before_writing
        from src.tracking import dumps

        start = time.perf_counter()
        plan = runner.make_plan(config)
        out = plan.as_dict()
        out["config_file"] = args.config
        out["plan_seconds"] = round(time.perf_counter() - start, 3)
        print(dumps(out))
        # What a real run would refuse before writing (a missing checkpoint...) fails the dry run too.
        check_before_writing(config, plan, run=not args.pretrain_only)
        return 0

    from src.training import cpu_setup

    device = runner.resolve_device(config.device)
    cpu_setup.configure(config, budget, device)
    console = Console(quiet=args.quiet)
    if args.pretrain_only:
        from src.preflight import check_before_writing

        if config.training.pretrained != "auto":
            runner.make_plan(config)
            console.line("nothing to pretrain: training.pretrained is not 'auto'")
            return 0
        check_before_writing(config, runner.make_plan(config), run=False)
        path = runner.ensure_pretrained(config, device, console)
        console.line(f"pretrained model: {path}")
        return 0
    summary = runner.run(config, args.config, device, console)
    return 0 if summary.get("finished") else 1


if __name__ == "__main__":
    sys.exit(main())
