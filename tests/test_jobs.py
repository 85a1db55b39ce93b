"""What every job shares: the code digest each rule reruns on, read from the files so that
planning a study imports no torch, must be the digest of exactly the source Python runs."""
import importlib
import inspect
import shutil
import subprocess
import sys

import pytest

from mrd_unlearning.jobs import PACKAGE, RULE_CODE, source_digest, source_text

NAMES = sorted({name for names in RULE_CODE.values() for name in names})


def _imported(name: str):
    """The object `name` stands for, found by importing it."""
    if "/" in name:
        return None
    module, _, attribute = name.rpartition(".")
    try:
        return importlib.import_module(f"mrd_unlearning.{name}")
    except ModuleNotFoundError:
        return getattr(importlib.import_module(f"mrd_unlearning.{module}"), attribute)


@pytest.mark.parametrize("name", NAMES)
def test_source_read_from_the_files_is_what_inspect_gives(name):
    obj = _imported(name)
    expected = (PACKAGE / name).read_text() if obj is None else inspect.getsource(obj)
    assert source_text(name) == expected


def test_a_change_to_one_function_changes_only_the_digests_that_name_it(tmp_path, monkeypatch):
    import mrd_unlearning.jobs as jobs

    copy = tmp_path / "pkg"
    for path in PACKAGE.rglob("*.py"):
        (copy / path.relative_to(PACKAGE)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(PACKAGE)).write_text(path.read_text())
    shutil.copytree(PACKAGE / "templates", copy / "templates")
    before = {rule: source_digest(*names) for rule, names in RULE_CODE.items()}
    stages = copy / "stages" / "data.py"
    stages.write_text(stages.read_text().replace("def prepare_data(", "def prepare_data(  # edited\n", 1))
    monkeypatch.setattr(jobs, "PACKAGE", copy)
    after = {rule: source_digest(*names) for rule, names in RULE_CODE.items()}
    assert {rule for rule in RULE_CODE if before[rule] != after[rule]} == {"prepare_data"}


def test_unknown_names_are_refused():
    for name, message in [("nosuchmodule", "no such module"), ("stages.data.no_such_function", "no top-level"),
                          ("stages.data.prepare_data.inner", "only a module's top-level")]:
        with pytest.raises(ValueError, match=message):
            source_text(name)


def test_planning_imports_neither_torch_nor_transformers():
    """What the Snakefile imports (config, plan, the digests) stays light: `snakemake -n` and every
    DVC stage plan in seconds."""
    code = ("import sys, mrd_unlearning.config, mrd_unlearning.plan, mrd_unlearning.jobs as j; "
            "[j.source_digest(*n) for n in j.RULE_CODE.values()]; "
            "print(sorted(m for m in ('torch', 'transformers', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_job_imports_only_what_its_stage_needs():
    """Each rule group's stages are their own module, loaded on first use: the data job starts
    without the model libraries, fine-tuning without the statistics."""
    code = ("import sys; from mrd_unlearning.stages import {name}; "
            "print(sorted(m for m in ('torch', 'transformers', 'scipy.stats', 'matplotlib') if m in sys.modules))")
    loaded = {}
    for name in ("prepare_data", "finetune_model", "unlearn_runs"):
        done = subprocess.run([sys.executable, "-c", code.format(name=name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        loaded[name] = done.stdout.strip()
    assert loaded == {"prepare_data": "[]", "finetune_model": "['torch', 'transformers']",
                      "unlearn_runs": "['scipy.stats', 'torch', 'transformers']"}
