"""The pieces of run_exp.py, the launcher that fans a folder of configs out.

    plan.py     find the *.yaml files, read each config once (no torch), and turn them
                into jobs: a pretraining per distinct uncached `auto` model, a run per
                config, with the dependencies between them; what to skip and why
    command.py  the experiment.py command line of a job and its log file (stdlib only:
                submitit pickles it by value into Slurm jobs)
    local.py    the local scheduler: GPU or CPU slots, child process groups, Ctrl-C
    slurm.py    the submitit backend: job arrays with afterok dependencies
    report.py   the progress line, its ETA, and the final table
"""
