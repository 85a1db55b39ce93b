"""The warm interpreter (mrd_unlearning.warm): a job handed to it runs in a fork of the server with
the job's own directory, arguments, environment, streams and exit status; it is refused where the
environment differs in what libraries read at import time; a killed job takes its fork with it;
and a study's job computes the same bytes warm as in a process of its own."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mrd_unlearning import warm

from .conftest import SNAKEMAKE, assert_same_numbers

pytestmark = pytest.mark.e2e  # it starts processes, and uses the session's server (conftest.py)

JOB = '''
from mrd_unlearning.warm import hand_off

hand_off()

import json, os, sys, time
print(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv[1:], "var": os.environ.get("JOB_VAR"),
                  "socket": "MRD_WARM_SOCKET" in os.environ}), flush=True)
print("to stderr", file=sys.stderr)
action = sys.argv[1]
if action == "exit":
    sys.exit(int(sys.argv[2]))
if action == "raise":
    raise ValueError("broken job")
if action == "message":
    sys.exit("a one-line message")
if action == "sleep":
    with open(sys.argv[2], "w") as out:
        out.write(str(os.getpid()))
    time.sleep(600)
'''


@pytest.fixture
def job(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    work = tmp_path / "work"
    work.mkdir()
    return script, work


def _job_env(server, **env):
    """A job's environment as Snakemake makes it from the server's (libraries imported by earlier
    tests in this process may have set variables since): its thread variables set to its threads."""
    return {**server.env, **dict.fromkeys(warm.THREAD_VARIABLES, "1"), "JOB_VAR": "from the job", **env}


def _run(server, script, work, *args, **env):
    done = subprocess.run([sys.executable, str(script), *args], cwd=work, capture_output=True, text=True,
                          env=_job_env(server, **env))
    return done, json.loads(done.stdout.splitlines()[0]) if done.stdout else None


def test_a_job_runs_in_a_fork_with_its_own_directory_arguments_environment_streams_and_status(job, warm_interpreter):
    script, work = job
    done, seen = _run(warm_interpreter, script, work, "exit", "3")
    assert done.returncode == 3
    assert seen == {"pid": seen["pid"], "cwd": str(work), "argv": ["exit", "3"], "var": "from the job", "socket": False}
    assert "to stderr" in done.stderr
    # ran elsewhere: the server logged it (the job's own process has no log line to write)
    assert [str(script), str(work), "3"] in _server_log(warm_interpreter)


def test_a_failing_job_fails_with_its_traceback_or_message(job, warm_interpreter):
    script, work = job
    done, _ = _run(warm_interpreter, script, work, "raise")
    assert done.returncode == 1 and "ValueError: broken job" in done.stderr
    done, _ = _run(warm_interpreter, script, work, "message")
    assert done.returncode == 1 and "a one-line message" in done.stderr


def test_another_import_time_environment_or_no_server_runs_the_job_in_its_own_process(job, warm_interpreter):
    script, work = job
    for env in ({"OMP_NUM_THREADS": "7"}, {warm.ENV: str(work / "no-such.sock")}):
        done, seen = _run(warm_interpreter, script, work, "exit", "0", **env)
        assert done.returncode == 0 and seen["socket"], env  # hand_off returned: the script went on here
    assert [str(script), str(work), "refused, not as in the server: OMP_NUM_THREADS"] in _server_log(warm_interpreter)


def test_warm_run_serves_the_jobs_of_the_command_it_runs_and_returns_its_status(job, warm_interpreter):
    """`python -m mrd_unlearning.warm run -- CMD`: its own server, for CMD's jobs only."""
    script, work = job
    env = _job_env(warm_interpreter)
    env.pop(warm.ENV, None)
    done = subprocess.run([sys.executable, "-m", "mrd_unlearning.warm", "run", "--", sys.executable, str(script),
                           "exit", "5"], cwd=work, capture_output=True, text=True, env=env)
    assert done.returncode == 5
    assert json.loads(done.stdout.splitlines()[0])["socket"] is False  # ran in a fork of that server


def test_killing_the_waiting_process_kills_the_job(job, warm_interpreter):
    script, work = job
    pid_file = work / "pid"
    waiting = subprocess.Popen([sys.executable, str(script), "sleep", str(pid_file)], cwd=work,
                               stdout=subprocess.DEVNULL, env=_job_env(warm_interpreter))
    for _ in range(300):
        if pid_file.is_file() and pid_file.read_text():
            break
        time.sleep(0.1)
    job_pid = int(pid_file.read_text())
    assert job_pid != waiting.pid
    waiting.send_signal(signal.SIGKILL)
    waiting.wait()
    for _ in range(100):
        try:
            os.kill(job_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("the job outlived the process Snakemake would have killed")


def _server_log(warm_interpreter) -> list[list[str]]:
    """Every worker's server log of this session, a list of fields per job (the smoke study may
    have run on another worker)."""
    assert warm_interpreter, "the session runs end-to-end tests, so it has a warm interpreter"
    return [line.split("\t") for path in warm_interpreter.logs.glob("warm-*.log") for line in path.read_text().splitlines()]


MODEL_RULES = ("finetune", "evaluate", "mrd", "baselines", "ground_truth", "unlearn")


def test_a_study_job_computes_the_same_bytes_warm_as_in_its_own_process(smoke_run, warm_interpreter, tmp_path):
    """The smoke study ran its jobs warm; two of them that draw random numbers and train (MRD's
    perturbations; a sampler's draws, unlearning and its evaluation), rerun each in a process of
    its own, write the same numbers to the last bit (timings aside)."""
    work, first, _ = smoke_run
    served = {(Path(script).name.split(".")[-2], Path(cwd).name.split(".")[0], code)
              for script, cwd, code in _server_log(warm_interpreter)}
    assert {(rule, "smoke_project", "0") for rule in MODEL_RULES} <= served
    assert {code for _, project, code in served if project == "smoke_project"} == {"0"}  # none refused
    cold = tmp_path / "cold"
    shutil.copytree(work, cold, symlinks=True)
    targets = ["results/smoke/mrd/rep0/mrd.csv", "results/smoke/unlearning/rep0/ga/mrd_refresh"]
    env = {k: v for k, v in os.environ.items() if k != warm.ENV}
    done = subprocess.run([*SNAKEMAKE, "--forcerun", "mrd", "unlearn", "--cores", "1", *targets], cwd=cold, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(re.findall(r"rule (\w+):", done.stdout + done.stderr)) == ["mrd", "unlearn"]
    again = cold / "results" / "smoke"
    outputs = ["mrd/rep0/mrd.csv", "mrd/rep0/mrd.json", *(str(p.relative_to(first)) for p in (
        first / "unlearning/rep0/ga/mrd_refresh").rglob("*") if p.suffix in (".csv", ".json"))]
    assert "unlearning/rep0/ga/mrd_refresh/seed0/eval_budget_samples.csv" in outputs
    for name in outputs:
        assert_same_numbers(first, again, name)
