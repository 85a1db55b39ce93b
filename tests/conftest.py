"""Shared fixtures: a synthetic data folder, its tokenizer and a ~20k-parameter Llama; and the
smoke study, run once per test session (across pytest-xdist workers) for the end-to-end tests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

# pytest-xdist runs one worker per core. Each worker, and every process it starts, then computes on
# one thread and runs one study job at a time: more would put 3-4 processes on 2 cores, where the
# same work takes more CPU time than when the processes run side by side.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when torch is first imported, just below
STUDY_CORES = max(1, (os.cpu_count() or 1) // WORKERS)
# pyarrow (which pandas imports) starts jemalloc's background thread; the warm interpreter forks only
# from a single-threaded process, so this session (and every process it starts) keeps jemalloc to
# one thread. It changes how Arrow frees memory, not what any job computes.
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock

from mrd_unlearning.data.loader import load_study_data
from mrd_unlearning.models import build_model, encode_qa
from mrd_unlearning.stages import build_tokenizer, prepare_data

# The warm interpreter's folder (tests/warm): on sys.path for this process, and on PYTHONPATH for every
# process the tests start, where its sitecustomize hands Snakemake jobs to the server.
WARM = Path(__file__).resolve().parent / "warm"
sys.path.insert(0, str(WARM))
import warm_server as warm  # noqa: E402

TINY_DATA = {"source": "synthetic", "forget_percent": 25, "retain_eval_size": 8,
             "synthetic": {"n_people": 8, "attributes_per_person": 3, "values_per_attribute": 6,
                           "zipf_exponent": 1.1, "n_wrong_answers": 2}}
MAX_LENGTH = 96


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "data"
    prepare_data(str(out), data_cfg=TINY_DATA, seed=0)
    return out


@pytest.fixture(scope="session")
def study_data(data_dir):
    return load_study_data(data_dir)


@pytest.fixture(scope="session")
def tokenizer(data_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    build_tokenizer(str(data_dir), str(out), vocab_size=400)
    return AutoTokenizer.from_pretrained(out)


def tiny_model(tokenizer, seed=0, hidden=16):
    torch.set_num_threads(1)
    return build_model(tokenizer, hidden_size=hidden, num_layers=1, num_heads=2, intermediate_size=32,
                       max_length=MAX_LENGTH, seed=seed)


def fitted_model(tokenizer, study_data, forget_encoded, hidden=16):
    """A tiny model fitted to the forget and retain samples, so that there is something to forget."""
    from mrd_unlearning.models import collate, nll_loss
    from mrd_unlearning.training import make_optimizer, train

    model = tiny_model(tokenizer, seed=0, hidden=hidden)
    data = forget_encoded + [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH) for r in study_data.retain]
    gen = torch.Generator().manual_seed(0)
    batch_at = lambda step: collate([data[i] for i in torch.randint(len(data), (8,), generator=gen)],  # noqa: E731
                                    tokenizer.pad_token_id)
    train(model, batch_at, nll_loss, make_optimizer("adamw", model.parameters(), 1e-2), 60)
    return model.eval()


@pytest.fixture
def model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture(scope="session")
def forget_encoded(study_data, tokenizer):
    return [encode_qa(tokenizer, r["question"], r["answer"], MAX_LENGTH) for r in study_data.forget]


def pytest_collection_modifyitems(items):
    """The end-to-end tests first (each takes seconds to minutes), the many quick ones after: with
    pytest-xdist handing out one test at a time (--maxschedchunk 1), the quick ones then fill
    whichever core is free at the end instead of one core idling behind a study."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


# --- a warm interpreter for the studies' jobs ---------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def warm_interpreter(request, tmp_path_factory, worker_id):
    """Where the session runs studies, each worker serves their jobs from one interpreter that has
    imported torch, transformers and the stages once (tests/warm/warm_server.py): each job then
    starts in a fork of it in a fraction of a second instead of several. Every process the tests
    start inherits MRD_WARM_SOCKET and tests/warm on PYTHONPATH; the server logs each job it ran
    to warm-<worker>.log in the session's folder. Gives its socket, the folder of every worker's
    log and the environment it started in (a job with another environment runs in its own
    process), or None in a session without studies (or where the server refused to serve: then
    every job runs in its own process, as `make reproduce` runs them)."""
    if not any(item.get_closest_marker("e2e") for item in request.session.items):
        yield None
        return
    root = tmp_path_factory.getbasetemp()
    logs = root if worker_id == "master" else root.parent
    log = logs / f"warm-{worker_id}.log"
    folder = tempfile.mkdtemp(prefix="mrd-warm-")  # short: a Unix socket's path has at most 107 bytes
    socket_path = os.path.join(folder, "jobs.sock")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WARM), os.environ.get("PYTHONPATH")]))
    try:
        server = warm.start_server(socket_path, str(ROOT), threads=1, log=str(log))  # the test studies' `threads`
    except RuntimeError as refused:
        warnings.warn(f"no warm interpreter, every job runs in its own process: {refused}")
        yield None
        return
    os.environ[warm.ENV] = socket_path
    yield SimpleNamespace(socket=socket_path, logs=logs, env=dict(os.environ))
    os.environ.pop(warm.ENV, None)
    server.terminate()
    server.wait(timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def environment_kept():
    """What a test, or a library it calls, sets in os.environ (torch's elastic launcher does)
    is undone after it: the processes of later tests then start with the session's environment,
    and their studies' jobs with the warm interpreter's, instead of running on their own."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


# --- pages in a real browser ----------------------------------------------------------------------

# Pages are checked as headless Chromium renders them (Debian's chromium). CI installs it and sets
# MRD_REQUIRE_BROWSER=1, so that there those tests run or fail, never skip.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_REQUIRED = os.environ.get("MRD_REQUIRE_BROWSER") == "1"
needs_browser = pytest.mark.skipif(CHROMIUM is None and not BROWSER_REQUIRED,
                                   reason="needs Chromium (CI installs Debian's chromium)")


def rendered_dom(url: str, width: int = 1400, height: int = 1000, timers_ms: int = 0) -> str:
    """The page's DOM after its scripts ran, in a window of the given size; `timers_ms` lets the
    page's timers run that long (virtual time) before the DOM is read."""
    assert CHROMIUM, "MRD_REQUIRE_BROWSER=1 but no chromium on PATH"
    wait = [f"--virtual-time-budget={timers_ms}"] if timers_ms else []
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}",
                           *wait, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# --- the smoke study, run once per test session --------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml"]


def copy_project(work: Path) -> Path:
    """The workflow's own files (the package is installed), so results land in a scratch folder."""
    shutil.copy(ROOT / "Snakefile", work)
    for folder in ("workflow", "config", "envs", "profiles"):
        shutil.copytree(ROOT / folder, work / folder, symlinks=True)
    return work


def run_snakemake(work: Path, *args: str, check: bool = True, cores: int = STUDY_CORES) -> subprocess.CompletedProcess:
    """Snakemake on config/smoke.yaml and the config files that lead `args` (later ones win); a
    target after them needs a flag in between (`--cores` ends the list)."""
    done = subprocess.run([*SNAKEMAKE, *args, "--cores", str(cores)], cwd=work, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def forced_jobs(work: Path, *rules: str) -> dict[str, int]:
    """Rule -> job count Snakemake plans when `rules` are forced to rerun: their jobs and every job
    that reads what they make, nothing else. The oracle for "an edit that reaches these rules
    plans them and what follows", which stays true when a stage is added downstream."""
    from mrd_unlearning.snapshot import dry_run_jobs

    done = run_snakemake(work, "--dry-run", "--forcerun", *rules)
    return dry_run_jobs(done.stdout + done.stderr)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, worker_id):
    """One run of config/smoke.yaml (2 replicates, every stage) that every end-to-end test which
    only reads its outputs or plans against it shares: the first pytest-xdist worker to ask runs
    it under a file lock, on every core, and each worker gets its own copy (modification times and
    Snakemake's records kept, so the copy is up to date), since tests write into the project. Its
    jobs run in the warm interpreter (a fork of one that imported the stages); that a job computes
    the same bytes in a process of its own, as `make reproduce` runs it, is
    test_warm.test_a_study_job_computes_the_same_bytes_warm_as_in_its_own_process's. Returns
    (project folder, results folder, the run's console output)."""
    root = tmp_path_factory.getbasetemp()
    shared = root if worker_id == "master" else root.parent  # the session's folder, above the workers'
    finished = shared / "smoke_project"
    with FileLock(str(shared / "smoke_project.lock")):
        if not (finished / "console.txt").is_file():
            work = copy_project(Path(tempfile.mkdtemp(prefix="smoke_project.", dir=shared)))
            done = run_snakemake(work, check=False, cores=os.cpu_count() or 1)  # others wait
            (work / "returncode.txt").write_text(str(done.returncode))
            (work / "console.txt").write_text(done.stdout + done.stderr)
            work.rename(finished)
    console = (finished / "console.txt").read_text()
    assert (finished / "returncode.txt").read_text() == "0", console[-6000:]
    work = tmp_path_factory.mktemp("project")
    shutil.copytree(finished, work, symlinks=True, dirs_exist_ok=True)
    return work, work / "results" / "smoke", console


# --- comparing two runs' outputs ------------------------------------------------------------------

TIMING = {"wall_s", "refresh_s", "eval_s", "wall_total_s", "attack_s"}


def assert_same_numbers(first: Path, second: Path, name: str) -> None:
    """One output file of two runs: equal to the last bit, timings aside."""
    if name.endswith(".csv"):
        a, b = (pd.read_csv(root / name) for root in (first, second))
        pd.testing.assert_frame_equal(a.drop(columns=list(TIMING), errors="ignore"),
                                      b.drop(columns=list(TIMING), errors="ignore"), check_exact=True, obj=name)
    elif name.endswith(".json"):
        a, b = ({k: v for k, v in json.loads((root / name).read_text()).items() if k not in TIMING}
                for root in (first, second))
        assert a == b, name
    else:
        assert (first / name).read_text() == (second / name).read_text(), name
