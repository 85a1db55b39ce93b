"""What every Snakemake job shares: its params as the stage's keyword arguments and its log file.
Light on purpose: the rules import it, and so does every job before it does any work. (Which code
each rule runs is derived in provenance.py.)"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
import traceback
from pathlib import Path


# What a finished study is: the files the workflow's `all` asks of each results/<study>/ (and what a
# snapshot checks are current).
STUDY_OUTPUTS = ("report.md", "metrics.json", "samples.html", "run.json")


def lazy_module(name: str):
    """The module `name`, loaded on its first attribute access (importlib's LazyLoader): a job
    that never draws a figure does not pay for importing matplotlib."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stage_params(snakemake) -> dict:
    """A rule's params as keyword arguments for its stage, less its code identity."""
    return {k: v for k, v in snakemake.params.items() if k != "code"}


def replicate_inputs(snakemake) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """An aggregate rule's inputs, as the Snakefile's `per_replicate` names them (`<key>_<r>`):
    ({replicate: {key: path}}, the other named inputs)."""
    per_replicate: dict[str, dict[str, str]] = {}
    shared: dict[str, str] = {}
    for name, path in snakemake.input.items():
        key, _, replicate = name.rpartition("_")
        if key and replicate.isdigit():
            per_replicate.setdefault(replicate, {})[key] = path
        else:
            shared[name] = path
    return per_replicate, shared


@contextlib.contextmanager
def job_log(path: str | None):
    """Send everything a job prints (its progress bars, library warnings and, on failure, the
    traceback) to its Snakemake log file, so the console stays Snakemake's and a failed job's
    log (`--show-failed-logs`) says why. The file descriptors are redirected, so output from C
    extensions and child processes lands there too. A job that succeeds leaves its record (commit,
    machine, library versions) beside the log, for the study's run record."""
    if path is None:
        yield
        return
    from .provenance import write_job_record

    started = time.time()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
    write_job_record(path, started)
