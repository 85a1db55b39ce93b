"""What every Snakemake job shares: its params as the stage's keyword arguments and its log file.
Light on purpose: the rules import it, and so does every job before it does any work. (Which code
each rule runs is derived in provenance.py.)"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
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


# Params every rule has that its stage does not take: which function it runs, and that
# function's code identity (both read by provenance.py from the rule's definition).
RULE_PARAMS = ("stage", "code")
# An input named after_<x> only orders the job after <x> (the stage does not read it).
ORDER_ONLY = "after_"


def stage_function(stage: str):
    """ "stages.mrd:score_forget_set" -> that function of this package, imported."""
    module, _, name = stage.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def stage_arguments(function, snakemake) -> dict:
    """A job's keyword arguments for its stage function, by name: each named input and output,
    the params (less RULE_PARAMS), and the job's `threads` and wildcards where the function takes
    them. Two names gather: `replicates` takes the inputs named <key>_<replicate> as {replicate:
    {key: path}}, `out` takes every output as {name: path}. A parameter without a value here is
    None when it allows None (an optional input this configuration lacks); anything given that
    the function does not take is an error, so a rule and its stage cannot drift apart."""
    accepted = inspect.signature(function).parameters
    given, replicates = {}, {}
    for name, path in snakemake.input.items():
        key, _, replicate = name.rpartition("_")
        if "replicates" in accepted and key and replicate.isdigit():
            replicates.setdefault(replicate, {})[key] = path
        elif not name.startswith(ORDER_ONLY):  # a list of files stays a list; an empty one is None
            given[name] = (list(path) or None) if isinstance(path, list) else path
    if replicates:
        given["replicates"] = replicates
    outputs = dict(snakemake.output.items())
    given.update({"out": outputs} if "out" in accepted else outputs)
    given.update({k: v for k, v in snakemake.params.items() if k not in RULE_PARAMS})
    extra = {"threads": snakemake.threads, **dict(snakemake.wildcards.items())}
    for name, value in extra.items():  # a wildcard is a string; an int where the function says so
        if name in accepted and name not in given:
            given[name] = int(value) if str(accepted[name].annotation) in ("int", "<class 'int'>") else value
    keywords = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(set(given) - set(accepted))
    if unknown and not keywords:
        raise TypeError(f"rule {snakemake.rule}: {function.__name__} takes no {', '.join(unknown)}")
    for name, parameter in accepted.items():
        if name not in given and parameter.default is inspect.Parameter.empty and parameter.kind not in (
                inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            if "None" not in str(parameter.annotation):
                raise TypeError(f"rule {snakemake.rule}: nothing gives {function.__name__}'s {name!r}")
            given[name] = None
    return given


def run_stage(snakemake) -> None:
    """What every rule's script does: run the stage function the rule names, with the job's
    inputs, outputs, params and threads (see `stage_arguments`), its output sent to its log."""
    with job_log(snakemake.log[0] if snakemake.log else None):
        function = stage_function(snakemake.params.stage)
        function(**stage_arguments(function, snakemake))


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
