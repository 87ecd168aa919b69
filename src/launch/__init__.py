"""The pieces of run_exp.py, the launcher that fans a folder of configs out.

    plan.py     find the *.yaml files, read each config once (no torch), and turn them
                into jobs: a pretraining per distinct uncached `auto` model, a run per
                config, with the dependencies between them; what to skip and why
    command.py  the experiment.py command line of a job and its log file (stdlib only:
                submitit pickles it by value into Slurm jobs)
    local.py    the local scheduler: GPU or CPU slots, child process groups, Ctrl-C;
                jobs start under their claim (src/claims.py) and die with the launcher
    slurm.py    the submitit side: executors, the job body's arguments, the local and
                debug executors' waves
    slurm_scheduler.py  a real Slurm cluster: arrays with afterok dependencies, job
                records to reattach to, following jobs without accounting
    slurm_cli.py  sinfo / scontrol / squeue / sacct / scancel, and their parsing
    report.py   the progress line, its ETA, and the final table
"""
