"""Which code each rule runs is derived from the code: an edit flags exactly the rules that reach
it, a comment, docstring or layout edit flags none; and every study records what it ran."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from mrd_unlearning import provenance

from .conftest import ROOT

PACKAGE = ROOT / "src" / "mrd_unlearning"


def _copy_package(tmp_path):
    copy = tmp_path / "pkg" / "mrd_unlearning"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _copy_workflow(tmp_path):
    work = tmp_path / "work"
    (work / "workflow").mkdir(parents=True)
    for folder in ("rules", "scripts"):
        shutil.copytree(ROOT / "workflow" / folder, work / "workflow" / folder)
    return work


def _edit_function(package, module: str, name: str, statement: str = "_edited = 1") -> None:
    """Put `statement` first in the body of `module`'s top-level `name` (the file is rewritten
    from its syntax tree, which also drops its comments and layout: neutral by themselves)."""
    path = package.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if getattr(n, "name", None) == name)
    node.body[:0] = ast.parse(statement).body
    path.write_text(ast.unparse(tree))


@pytest.fixture(scope="module")
def identities():
    return provenance.rule_identities(ROOT)


def test_every_rule_with_a_script_passes_its_own_identity(identities):
    """A rule that named another rule's identity would rerun on the wrong edits."""
    definitions = provenance.rule_definitions(ROOT)
    assert set(identities) == set(definitions) and len(identities) >= 20
    for rule, (text, script, _) in definitions.items():
        assert script is not None and script.is_file(), rule
        assert f'code = CODE [ "{rule}" ]' in text, rule


def test_comments_docstrings_and_layout_change_no_identity(tmp_path, identities):
    package = _copy_package(tmp_path)
    for path in package.rglob("*.py"):
        lines = path.read_text().splitlines()
        for i in range(1, len(lines)):  # every docstring reworded
            if lines[i].lstrip().startswith('"""') and lines[i - 1].rstrip().endswith(":"):
                lines[i] = lines[i].replace('"""', '"""Reworded. ', 1)
        path.write_text("# a comment\n" + "\n".join(lines) + "\n")
        text = path.read_text()
        path.write_text(ast.unparse(ast.parse(text)) if "reformat" not in path.name else text)  # layout, no comments
    work = _copy_workflow(tmp_path)
    for smk in (work / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text().replace("    input:\n", "    # a comment\n    input:  # another\n")
        text = re.sub(r'(rule \w+:\n    """)', r"\1Reworded. ", text)
        smk.write_text(text)
    for script in (work / "workflow" / "scripts").glob("*.py"):
        script.write_text("# a comment\n" + ast.unparse(ast.parse(script.read_text())) + "\n")
    schema = package / "config.schema.yaml"  # rules read it: its descriptions are documentation, its layout nothing

    def reworded(value):
        if isinstance(value, dict):
            return {k: "Reworded. " + v if k == "description" and isinstance(v, str) else reworded(v)
                    for k, v in value.items()}
        return [reworded(v) for v in value] if isinstance(value, list) else value

    schema.write_text("# a comment\n" + yaml.safe_dump(reworded(yaml.safe_load(schema.read_text())), sort_keys=False))
    assert provenance.rule_identities(work, package) == provenance.rule_identities(ROOT, package) == identities
    schema.write_text(schema.read_text().replace("default: 2000", "default: 3000", 1))  # what it decides
    after = provenance.rule_identities(work, package)
    readers = {rule for rule, parts in provenance.rule_code(ROOT).items() if "file:config.schema.yaml" in parts}
    assert readers and {rule for rule in identities if after[rule] != identities[rule]} == readers


# Edits that change results, and the rules whose jobs run the edited code: exactly those among the
# workflow's rules named here (a stage added later is its own test's business, so adding one does
# not touch these expectations).
RULES = {"prepare_data", "tokenizer", "base_model", "check_lengths", "finetune", "evaluate_finetuned", "mrd",
         "mrd_variants", "baselines", "ground_truth", "scores", "mrd_validation", "mrd_figures", "unlearn",
         "unlearning_table", "comparison_table", "calibration", "unlearning_figures", "verdicts", "report",
         "samples_page", "run_record"}
MODEL_RULES = {"baselines", "evaluate_finetuned", "finetune", "ground_truth", "mrd", "mrd_variants", "unlearn"}
EDITS = [
    ("stages.common", "setup", MODEL_RULES),  # the seed every model job starts from
    ("precision", "resolve_precision", MODEL_RULES),
    ("io", "write_csv", {"baselines", "calibration", "comparison_table", "evaluate_finetuned", "finetune",
                         "ground_truth", "mrd", "mrd_validation", "mrd_variants", "prepare_data", "scores", "unlearn",
                         "unlearning_table"}),  # the float format of every table
    ("stages.mrd", "_forget_on_model", {"baselines", "ground_truth", "mrd", "mrd_variants"}),
    ("stages.unlearn", "idk_targets", {"unlearn"}),
    ("pooled", "_factor_columns", {"mrd_validation"}),
    ("calibration", "smallest_effects", {"calibration", "comparison_table", "verdicts", "report"}),
    ("difficulty", "in_c3", {"calibration", "mrd_figures", "mrd_validation", "verdicts", "report"}),
    ("figures", "c4_forest_figure", {"comparison_table"}),
    ("report", "verdict_table", {"verdicts"}),
    # the report's wording and layout: a verdict neither changes nor goes stale
    ("report", "_answers", {"report"}),
    ("report", "md_table", {"report"}),
    ("models", "encode_text", MODEL_RULES),
]


@pytest.mark.parametrize("module, name, rules", EDITS, ids=[f"{m}.{n}" for m, n, _ in EDITS])
def test_an_edit_flags_exactly_the_rules_that_run_it(tmp_path, identities, module, name, rules):
    package = _copy_package(tmp_path)
    _edit_function(package, module, name)
    after = provenance.rule_identities(ROOT, package)
    assert RULES <= set(identities)  # a rule renamed or removed: update RULES
    assert {rule for rule in RULES if after[rule] != identities[rule]} == rules


def test_edits_to_a_rule_or_its_script_flag_that_rule(tmp_path, identities):
    work = _copy_workflow(tmp_path)
    smk = work / "workflow" / "rules" / "mrd.smk"
    smk.write_text(smk.read_text().replace("runtime=planned(\"mrd_variants\", \"runtime\", 120)",
                                           "runtime=planned(\"mrd_variants\", \"runtime\", 121)"))
    smk.write_text(smk.read_text().replace('eps=config["mrd"]["eps"],\n        truths',
                                           'eps=2 * config["mrd"]["eps"],\n        truths'))
    after = provenance.rule_identities(work)
    assert {rule for rule in identities if after[rule] != identities[rule]} == {"mrd_variants", "scores"}
    script = work / "workflow" / "scripts" / "stage.py"
    script.write_text(script.read_text() + "\nSTAGE_SCRIPT_EDITED = True\n")
    edited = provenance.rule_identities(work)
    assert {rule for rule in identities if edited[rule] != after[rule]} == set(identities)


def test_a_name_the_closure_cannot_follow_is_an_error(tmp_path):
    package = _copy_package(tmp_path)
    _edit_function(package, "pooled", "_factor_columns", "from .io import no_such_function\nno_such_function()")
    with pytest.raises(ValueError, match="mrd_unlearning.io defines no 'no_such_function'"):
        provenance.rule_identities(ROOT, package)


def test_rule_tokens_keep_fstrings_whole():
    text = 'rule a:\n    """Doc."""\n    output:\n        f"{R}/x_{{y}}.csv",  # c\n'
    assert provenance._rule_tokens(text) == (
        'rule a : NEWLINE INDENT output : NEWLINE INDENT f"{R}/x_{{y}}.csv" , NEWLINE DEDENT DEDENT')


def test_planning_imports_neither_torch_nor_transformers():
    """What the Snakefile imports (config, plan, the identities) stays light: `snakemake -n` and
    every DVC stage plan in seconds."""
    code = ("import sys, mrd_unlearning.config, mrd_unlearning.plan, mrd_unlearning.provenance as p; "
            f"p.rule_identities({str(ROOT)!r}); "
            "print(sorted(m for m in ('torch', 'transformers', 'scipy', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_run_record_gathers_the_jobs_records(tmp_path):
    logs = tmp_path / "logs"
    for name in ("a", "b/rep0"):
        (logs / name).parent.mkdir(parents=True, exist_ok=True)
        provenance.write_job_record(logs / f"{name}.log", started=0.0)
    provenance.write_run_record(logs, tmp_path / "run.json", study="s", code_identities={"b": "2", "a": "1"},
                                config_files=["c.yaml"], config_digest="h")
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["jobs"] == 2 and list(record["code"]) == ["a", "b"] and record["config_hash"] == "h"
    assert len(record["machines"]) == 1 and record["machines"][0]["jobs"] == 2
    assert record["machines"][0]["python"] and record["machines"][0]["cores"] >= 1
    assert sum(record["job_commits"].values()) == 2


def test_the_config_hash_is_of_content_not_order():
    assert provenance.config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == provenance.config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert provenance.config_hash({"a": 1}) != provenance.config_hash({"a": 2})


def _planned(out: str) -> tuple[dict[str, int], set[str]]:
    """A dry run's job counts per rule, and the rules it plans because their params changed."""
    from mrd_unlearning.snapshot import dry_run_jobs

    changed, rule = set(), None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("reason:") and "Params have changed" in line:
            changed.add(rule)
    return dry_run_jobs(out), changed


@pytest.mark.e2e
def test_snakemake_plans_exactly_the_jobs_an_edit_reaches(smoke_run, tmp_path):
    """On a finished study: a comment edit plans nothing; an edit to one function reruns the jobs
    of the rules that reach it (and what reads their outputs), no other."""
    from .conftest import forced_jobs, run_snakemake

    work = smoke_run[0]
    package = _copy_package(tmp_path)
    models = package / "models.py"
    models.write_text("# a comment\n" + models.read_text().replace('"""', '"""Reworded. ', 1))
    os.environ["PYTHONPATH"] = str(package.parent)  # undone after the test (conftest's environment_kept)
    done = run_snakemake(work, "--dry-run")
    assert "Nothing to be done" in done.stdout + done.stderr
    _edit_function(package, "pooled", "_factor_columns")
    jobs, changed = _planned(run_snakemake(work, "--dry-run").stdout)
    assert changed - {"run_record"} == {"mrd_validation"}
    assert jobs == forced_jobs(work, "mrd_validation")  # its jobs and what reads their outputs, no other
    _edit_function(package, "stages.unlearn", "idk_targets")
    jobs, changed = _planned(run_snakemake(work, "--dry-run").stdout)
    assert changed - {"run_record"} == {"mrd_validation", "unlearn"} and jobs["unlearn"] == 8
    assert jobs == forced_jobs(work, "mrd_validation", "unlearn")
    assert not {"finetune", "mrd", "ground_truth", "evaluate_finetuned", "baselines"} & set(jobs)
