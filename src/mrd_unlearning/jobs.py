"""What every Snakemake job shares: its params as the stage's keyword arguments, a digest of the
code it runs (so a change to the package reruns exactly what it touches), and its log file.
Light on purpose: the rules import it, and so does every job before it does any work."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import sys
import traceback
from pathlib import Path


def source_digest(*objects) -> str:
    """A short hash of the source of modules, functions or files (templates): a rule that passes
    it as a param reruns when the code it calls changes (compared by content)."""
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(obj.read_bytes() if isinstance(obj, Path) else inspect.getsource(obj).encode())
    return digest.hexdigest()[:16]


def stage_params(snakemake) -> dict:
    """A rule's params as keyword arguments for its stage, less the code digest."""
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
    extensions and child processes lands there too."""
    if path is None:
        yield
        return
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
