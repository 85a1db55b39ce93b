"""What every Snakemake job shares: its params as the stage's keyword arguments, a digest of the
code it runs (so a change to the package reruns exactly what it touches), and its log file.
Light on purpose: the rules import it, and so does every job before it does any work."""
from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path


# The package code each rule's results depend on: modules ("mrd"), their top-level functions
# ("stages.data.prepare_data") and files ("templates/report.md.j2"). The Snakefile passes each rule
# its digest as a param, so that a change to the package reruns exactly the rules whose code it touches.
RULE_CODE: dict[str, tuple[str, ...]] = {
    "prepare_data": ("stages.data.prepare_data", "data.synthetic", "data.loader"),
    "tokenizer": ("stages.tokenizer.build_tokenizer", "models.train_tokenizer"),
    "check_lengths": ("stages.tokenizer.check_lengths", "data.loader", "models"),
    "base_model": ("stages.finetune.convert_base_model", "models.convert_gguf"),
    "finetune": ("stages.finetune.finetune_model", "stages.finetune._finetune_process", "stages.finetune._base_model",
                 "models", "training"),
    "evaluate": ("stages.evaluate.evaluate_model", "evaluation", "metrics", "models", "baselines"),
    "mrd": ("stages.mrd.score_forget_set", "mrd", "models", "sampling.mrd_weights"),
    "mrd_variants": ("stages.mrd.mrd_variants", "mrd", "variants.estimator_study", "models"),
    "baselines": ("stages.mrd.baseline_scores", "stages.finetune._base_model", "baselines", "difficulty", "mrd", "models"),
    "ground_truth": ("stages.mrd.ground_truth", "ground_truth", "training", "unlearning.gradient_ascent", "models"),
    "scores": ("pooled.collect_scores", "pooled._replicate_scores", "difficulty"),
    "mrd_validation": ("pooled.mrd_validation", "validation", "statistics", "difficulty"),
    "mrd_figures": ("pooled.mrd_figures", "figures", "claims"),
    "unlearn": ("stages.unlearn.unlearn_runs", "stages.unlearn.unlearning_steps", "unlearning", "sampling", "training",
                "mrd", "models", "evaluation", "metrics", "difficulty", "baselines"),
    "unlearning_table": ("pooled.unlearning_table", "pooled.author_outcomes", "pooled.truth_ratio_gap"),
    "comparison_table": ("pooled.comparison_table", "claims", "statistics", "figures"),
    "calibration": ("pooled.calibration", "calibration", "claims", "statistics", "validation"),
    "unlearning_figures": ("pooled.unlearning_figures", "figures", "claims"),
    "report": ("report", "templates/report.md.j2", "claims", "statistics"),
    "samples_page": ("browser", "templates/samples.html.j2", "difficulty", "claims"),
}
PACKAGE = Path(__file__).resolve().parent
# What a finished study is: the files the workflow's `all` asks of each results/<study>/ (and what a
# snapshot checks are current).
STUDY_OUTPUTS = ("report.md", "metrics.json", "samples.html")


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


def source_text(name: str) -> str:
    """The source of a package module ("data.loader"), of one of its top-level functions or
    classes ("stages.data.prepare_data"), or the text of a package file ("templates/report.md.j2"),
    exactly as `inspect.getsource` gives it, but read from the files: planning a study
    (`snakemake -n`, every DVC stage) then never imports torch."""
    if "/" in name:
        return (PACKAGE / name).read_text()
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        folder = PACKAGE.joinpath(*parts[:cut])
        for path in (folder.with_suffix(".py"), folder / "__init__.py"):
            if path.is_file():
                return _definition(path, parts[cut:], name)
    raise ValueError(f"{name}: no such module in {PACKAGE}")


def _definition(path: Path, names: list[str], name: str) -> str:
    text = path.read_text()
    if not names:
        return text
    if len(names) > 1:
        raise ValueError(f"{name}: only a module's top-level functions and classes have a digest")
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == names[0]:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "".join(inspect.getblock(text.splitlines(keepends=True)[first - 1:]))
    raise ValueError(f"{name}: {path.name} defines no top-level function or class {names[0]!r}")


def source_digest(*names: str) -> str:
    """A short hash of the source of package code (see `source_text`): a rule that passes it as a
    param reruns when the code it calls changes (compared by content)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(source_text(name).encode())
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
