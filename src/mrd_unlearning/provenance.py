"""What each rule's results depend on, derived from the code rather than listed by hand, and the
run record a study writes.

A rule's **code identity** hashes its definition in workflow/rules/*.smk, its script in
workflow/scripts/, and every definition of this package the script reaches: the functions,
classes and module-level names it uses, and theirs in turn (imports inside functions included),
with the module-level statements (imports, settings) of every module that closure touches. Each
piece is hashed as its syntax tree unparsed (Python) or its tokens (a rule), so a comment, a
docstring or a reformatting changes no identity, while any edit to code a rule reaches changes
exactly the identities of the rules that reach it. The Snakefile passes each rule its identity as
a param: Snakemake reruns exactly those jobs (with its own script-mtime trigger off, see
profiles/default). Reading the files plans a study without importing torch.

The closure is static: a name reached only through `getattr` with a computed string or through
`globals()` is not followed. The package therefore imports what it calls by name.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACKAGE = Path(__file__).resolve().parent
NAME = PACKAGE.name


# --- the package, read as syntax trees ------------------------------------------------------------

@dataclass
class _Module:
    name: str                                       # package-relative: "" (the package), "stages.mrd"
    defs: dict[str, ast.AST] = field(default_factory=dict)      # top-level name -> its statement
    aliases: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local name -> (module, name)
    prelude: list[ast.stmt] = field(default_factory=list)        # every other top-level statement


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalized_python(source: str) -> str:
    """Python source as its syntax tree unparsed, without docstrings: comments, docstrings and
    formatting do not change it."""
    return ast.unparse(_strip_docstrings(ast.parse(source)))


class Package:
    """The package's modules, parsed once, by package-relative name."""

    def __init__(self, root: Path = PACKAGE):
        self.root = Path(root)
        self._modules: dict[str, _Module] = {}
        # closure()'s work, shared by every rule: per module its prelude, per reached name its definition
        self.preludes: dict[str, tuple[str, list]] = {}
        self.definitions: dict[tuple[str, str | None], tuple[dict[str, str], list]] = {}
        self.files = {p.name: p for p in self.root.rglob("*") if p.is_file() and p.suffix in (".j2", ".yaml")}

    def path(self, name: str) -> Path | None:
        folder = self.root.joinpath(*name.split(".")) if name else self.root
        for path in (folder.with_suffix(".py") if name else None, folder / "__init__.py"):
            if path is not None and path.is_file():
                return path
        return None

    def is_module(self, name: str) -> bool:
        return self.path(name) is not None

    def module(self, name: str) -> _Module:
        if name not in self._modules:
            path = self.path(name)
            if path is None:
                raise ValueError(f"{NAME}.{name}: no such module in {self.root}")
            self._modules[name] = self._parse(name, path)
        return self._modules[name]

    def absolute(self, module: str | None, level: int, importer: str, is_package: bool) -> str | None:
        """The package-relative module an import statement names, or None outside the package."""
        if level == 0:
            if module == NAME:
                return ""
            return module[len(NAME) + 1:] if module and module.startswith(f"{NAME}.") else None
        parts = importer.split(".") if importer else []
        if not is_package:
            parts = parts[:-1]
        parts = parts[:len(parts) - (level - 1)] if level > 1 else parts
        return ".".join([*parts, *([module] if module else [])])

    def _target(self, base: str, name: str) -> tuple[str, str | None]:
        sub = f"{base}.{name}" if base else name
        return (sub, None) if self.is_module(sub) else (base, name)

    def _parse(self, name: str, path: Path) -> _Module:
        tree = _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))
        info = _Module(name)
        is_package = path.name == "__init__.py"
        self.collect_aliases(tree, info, name, is_package)
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                info.defs[stmt.name] = stmt
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and _lazy_module(stmt) is None:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            info.defs[node.id] = stmt
            elif not _main_guard(stmt):  # what `python -m` runs is not run on import
                info.prelude.append(stmt)
        return info

    def collect_aliases(self, tree: ast.AST, info: _Module, importer: str, is_package: bool) -> None:
        """Every name an import binds to this package's code, anywhere in `tree` (inside functions
        too), and names bound to `lazy_module("<package>.x")`-style calls."""
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = self.absolute(node.module, node.level, importer, is_package)
                if base is None:
                    continue
                for alias in node.names:
                    info.aliases[alias.asname or alias.name] = self._target(base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == NAME or alias.name.startswith(f"{NAME}."):
                        inner = alias.name[len(NAME) + 1:]
                        if alias.asname:
                            info.aliases[alias.asname] = (inner, None)
                        else:
                            info.aliases[NAME] = ("", None)
            elif isinstance(node, ast.Assign) and _lazy_module(node) is not None:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        info.aliases[target.id] = (_lazy_module(node), None)


def _main_guard(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and "__main__" in ast.unparse(stmt.test) and "__name__" in ast.unparse(stmt.test)


def _lazy_module(stmt: ast.AST) -> str | None:
    """`x = lazy_module("mrd_unlearning.figures")` (or importlib.import_module): "figures"."""
    value = getattr(stmt, "value", None)
    if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Constant):
        text = value.args[0].value
        if isinstance(text, str) and text.startswith(f"{NAME}."):
            return text[len(NAME) + 1:]
    return None


# --- the closure of a script's code ---------------------------------------------------------------

def _resolve(expr: ast.AST, info: _Module, package: Package) -> tuple[str, str | None] | None:
    if isinstance(expr, ast.Name):
        if expr.id in info.defs:
            return info.name, expr.id
        return info.aliases.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, info, package)
        if base is not None and base[1] is None:  # an attribute of a module of the package
            return package._target(base[0], expr.attr)
        return base
    return None


def _references(node: ast.AST, info: _Module, package: Package) -> set[tuple[str, str | None]]:
    found: set[tuple[str, str | None]] = set()

    def visit(n: ast.AST) -> None:
        if isinstance(n, (ast.Name, ast.Attribute)) and not isinstance(n.ctx, ast.Store):
            entity = _resolve(n, info, package)
            if entity is not None:
                found.add(entity)
                return
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(node)
    return found


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _without_descriptions(value):
    if isinstance(value, dict):
        return {k: _without_descriptions(v) for k, v in value.items()
                if not (k == "description" and isinstance(v, str))}
    return [_without_descriptions(v) for v in value] if isinstance(value, list) else value


def normalized_file(path: Path) -> str:
    """A data file's identity text: a template as written; a YAML schema as what it decides (types,
    bounds, defaults), so that rewording a description, a comment or the layout reruns nothing,
    as with Python's docstrings."""
    if path.suffix != ".yaml":
        return path.read_text()
    return json.dumps(_without_descriptions(yaml.safe_load(path.read_text())), sort_keys=True)


def closure(roots, package: Package) -> dict[str, str]:
    """Every piece of package code reachable from `roots` ((module, name), name None for a whole
    module): "module:name" -> its normalized source, "module:" -> the module's other top-level
    statements, "file:<name>" -> a template or schema a reached definition names. What each piece
    adds is worked out once per package (`_prelude`, `_definition`): every rule's closure walks the
    same modules."""
    parts: dict[str, str] = {}
    stack, seen = list(roots), set()
    while stack:
        entity = stack.pop()
        if entity in seen:
            continue
        seen.add(entity)
        name, _ = entity
        chain = name.split(".") if name else []
        for depth in range(len(chain) + 1):  # importing a module runs its packages' __init__ first
            outer = ".".join(chain[:depth])
            if f"{outer}:" not in parts:
                parts[f"{outer}:"], reached = _prelude(outer, package)
                stack.extend(reached)
        code, reached = _definition(entity, package)
        parts.update(code)
        stack.extend(reached)
    return parts


def _prelude(module: str, package: Package) -> tuple[str, list]:
    """A module's top-level statements other than definitions, and what they reach."""
    if module not in package.preludes:
        info = package.module(module)
        package.preludes[module] = ("\n".join(ast.unparse(s) for s in info.prelude),
                                    [entity for stmt in info.prelude for entity in _references(stmt, info, package)])
    return package.preludes[module]


def _definition(entity: tuple[str, str | None], package: Package) -> tuple[dict[str, str], list]:
    """What one reached name adds to a closure (its source, and a template or schema it names) and
    what it reaches; a whole module reaches each of its definitions."""
    if entity not in package.definitions:
        name, attr = entity
        info = package.module(name)
        if attr is None:
            package.definitions[entity] = ({}, [(name, d) for d in info.defs])
        elif attr in info.defs:
            node = info.defs[attr]
            code = {f"{name}:{attr}": ast.unparse(node)}
            code.update({f"file:{text}": normalized_file(package.files[text])
                         for text in _strings(node) & set(package.files)})
            package.definitions[entity] = (code, list(_references(node, info, package)))
        elif attr in info.aliases:
            package.definitions[entity] = ({}, [info.aliases[attr]])
        else:
            raise ValueError(f"{NAME}.{name} defines no {attr!r}: a name reached only dynamically cannot be "
                             f"followed; import it by name")
    return package.definitions[entity]


def script_code(script: Path, package: Package) -> dict[str, str]:
    """A workflow script and the package code it reaches."""
    tree = _strip_docstrings(ast.parse(script.read_text(), filename=str(script)))
    info = _Module(name=f"<script {script.name}>")
    package.collect_aliases(tree, info, "", True)
    roots = set()
    for stmt in tree.body:
        roots |= _references(stmt, info, package)
    return {f"script:{script.name}": ast.unparse(tree), **closure(roots, package)}


# --- rules -------------------------------------------------------------------------------------------

RULE = re.compile(r"^rule\s+(\w+)\s*:", re.M)


def _rule_tokens(text: str) -> str:
    """A rule's definition as its tokens, without comments, its docstring or layout."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    at = lambda position: offsets[position[0] - 1] + position[1]  # noqa: E731
    begin, end = (getattr(tokenize, n, None) for n in ("FSTRING_START", "FSTRING_END"))
    out, depth, start, docstring = [], 0, 0, False
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if depth or tok.type == begin:  # Python >= 3.12 splits an f-string: keep it whole, as before
            depth += (tok.type == begin) - (tok.type == end)
            start = at(tok.start) if tok.type == begin and depth == 1 else start
            if depth == 0:
                out.append(text[start:at(tok.end)])
            continue
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER):
            continue
        if tok.type == tokenize.STRING and len(out) == 5 and out[3:] == ["NEWLINE", "INDENT"]:
            docstring = True  # `rule name :` NEWLINE INDENT, then a string, then its NEWLINE
            continue
        if docstring:
            docstring = False
            if tok.type == tokenize.NEWLINE:
                continue
        structural = tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        out.append(tokenize.tok_name[tok.type] if structural else tok.string)
    return " ".join(out)


STAGE = re.compile(r"""^\s+stage=["']([\w.]+):(\w+)["']""", re.M)


def rule_definitions(workflow_dir: str | Path) -> dict[str, tuple[str, Path | None, tuple[str, str] | None]]:
    """Rule -> (its normalized definition, its script, the (module, function) its `stage` param
    names) for every rule in workflow/rules/*.smk."""
    workflow_dir = Path(workflow_dir)
    rules = {}
    for smk in sorted((workflow_dir / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in RULE.finditer(text)]
        for begin in starts:
            name = RULE.match(text, begin)[1]
            rest = text[begin:].splitlines(keepends=True)
            block = [rest[0]]
            for line in rest[1:]:  # the rule ends at the next line that starts at column 0
                if line.strip() and not line[0].isspace() and not line.startswith("#"):
                    break
                block.append(line)
            body = "".join(block)
            script = re.search(r"^\s+script:\s*\n?\s*[\"']([^\"']+)[\"']", body, re.M)
            stage = STAGE.search(body)
            rules[name] = (_rule_tokens(body), (smk.parent / script[1]).resolve() if script else None,
                           (stage[1], stage[2]) if stage else None)
    return rules


def rule_code(workflow_dir: str | Path, package_root: str | Path = PACKAGE) -> dict[str, dict[str, str]]:
    """Rule -> every piece of code its jobs run, by key (see `closure`): its definition, its script
    and what the script reaches, and the stage function it names and what that reaches (the
    script imports the stage by its name, which the closure cannot follow by itself)."""
    package = Package(Path(package_root))
    code = {}
    for rule, (definition, script, stage) in rule_definitions(workflow_dir).items():
        code[rule] = {"rule": definition, **(script_code(script, package) if script else {}),
                      **(closure([stage], package) if stage else {})}
    return code


def rule_identities(workflow_dir: str | Path, package_root: str | Path = PACKAGE) -> dict[str, str]:
    """Rule -> a short hash of the code its jobs run (`rule_code`)."""
    identities = {}
    for rule, parts in rule_code(workflow_dir, package_root).items():
        digest = hashlib.sha256()
        for key in sorted(parts):
            digest.update(f"{key}\0{parts[key]}\0".encode())
        identities[rule] = digest.hexdigest()[:16]
    return identities


# --- the run record ------------------------------------------------------------------------------

LIBRARIES = ("torch", "transformers", "numpy", "pandas", "scipy", "statsmodels", "snakemake")
JOB_RECORD = ".job.json"  # beside each job's log: logs/<name>.log -> logs/<name>.log.job.json


def commit(folder: str | Path = ".") -> dict:
    """The git commit of `folder` and whether tracked files differ from it (None outside git)."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if head else None
    return {"commit": head, "dirty": bool(status) if status is not None else None}


def machine() -> dict:
    """Where this process runs: CPU, cores, memory, GPUs, Python and library versions (read from
    the installed packages' metadata, so that a job without torch does not import it)."""
    import os
    import platform
    import socket
    import sys
    from importlib import metadata

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    torch = sys.modules.get("torch")
    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch is not None and torch.cuda.is_available() else [])
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            pass
    return {"host": socket.gethostname(), "cpu": cpu,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gib": round(memory, 1) if memory else None, "gpus": gpus, "system": platform.system(),
            "python": platform.python_version(), **versions}


def write_job_record(log_path: str | Path, started: float) -> None:
    """What one job ran on, beside its log (the run record gathers them)."""
    import datetime
    import time

    from .io import write_json

    write_json(f"{log_path}{JOB_RECORD}", {
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1), **commit(), "machine": machine()})


def config_hash(config: dict) -> str:
    """A short hash of a validated configuration's content (key order does not matter)."""
    import json

    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_run_record(logs_dir: str, out_json: str, *, study: str, code_identities: dict[str, str],
                     config_files: list[str], config_digest: str) -> None:
    """results/<study>/run.json: the commit now and whether the tree was dirty, the config's
    content hash, each rule's code identity as run (every job's `code` param equals it, or
    Snakemake would have rerun the job), and the machines, commits and library versions of the
    jobs, from their job records."""
    import collections
    import datetime
    import json

    from .io import write_json

    jobs = [json.loads(p.read_text()) for p in sorted(Path(logs_dir).rglob(f"*{JOB_RECORD}"))]
    machines = collections.Counter(json.dumps({k: v for k, v in j["machine"].items()}, sort_keys=True) for j in jobs)
    commits = collections.Counter(f"{j['commit'] or 'outside git'}{' (dirty)' if j['dirty'] else ''}" for j in jobs)
    write_json(out_json, {
        "study": study, "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **commit(), "config_files": list(config_files), "config_hash": config_digest,
        "code": dict(sorted(code_identities.items())),
        "jobs": len(jobs), "job_commits": dict(commits.most_common()),
        "machines": [{**json.loads(m), "jobs": n} for m, n in machines.most_common()]})
