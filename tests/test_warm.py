"""The tests' warm interpreter (tests/warm/warm_server.py): a job handed to it runs in a fork of the
server with the job's own directory, arguments, environment, streams and exit status; it is
refused where the environment differs beyond the allowlist or the package changed since the server
started; a server whose imports left threads running does not serve; a job's process group ends
with it; and a study's job computes the same bytes warm as in a process of its own."""
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

from .conftest import ROOT, SNAKEMAKE, WARM, assert_same_numbers, warm

pytestmark = pytest.mark.e2e  # it starts processes, and uses the session's server (conftest.py)

JOB = '''
from warm_server import hand_off

hand_off()

import json, os, subprocess, sys, time
print(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv[1:], "var": os.environ.get("TEMPDIR"),
                  "socket": "MRD_WARM_SOCKET" in os.environ}), flush=True)
print("to stderr", file=sys.stderr)
action = sys.argv[1]
if action == "exit":
    sys.exit(int(sys.argv[2]))
if action == "raise":
    raise ValueError("broken job")
if action == "message":
    sys.exit("a one-line message")
if action in ("sleep", "leave_a_child"):
    child = subprocess.Popen(["sleep", "600"])
    with open(sys.argv[2], "w") as out:
        out.write(f"{os.getpid()} {child.pid}")
    if action == "sleep":
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
    return {**server.env, **dict.fromkeys(warm.THREAD_VARIABLES, "1"), "TEMPDIR": "from the job", **env}


def _run(server, script, work, *args, **env):
    done = subprocess.run([sys.executable, str(script), *args], cwd=work, capture_output=True, text=True,
                          env=_job_env(server, **env))
    return done, json.loads(done.stdout.splitlines()[0]) if done.stdout else None


def _server_log(logs) -> list[list[str]]:
    """Every log of the servers in `logs`, a list of fields per job."""
    return [line.split("\t") for path in Path(logs).glob("warm-*.log") for line in path.read_text().splitlines()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended
        return stat.read().split(")")[-1].split()[0] != "Z"


def _wait_dead(*pids: int) -> bool:
    for _ in range(100):
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_a_job_runs_in_a_fork_with_its_own_directory_arguments_environment_streams_and_status(job, warm_interpreter):
    script, work = job
    done, seen = _run(warm_interpreter, script, work, "exit", "3", PWD="/elsewhere")  # PWD may differ
    assert done.returncode == 3
    assert seen == {"pid": seen["pid"], "cwd": str(work), "argv": ["exit", "3"], "var": "from the job", "socket": False}
    assert "to stderr" in done.stderr
    # ran elsewhere: the server logged it (the job's own process has no log line to write)
    assert [str(script), str(work), "3"] in _server_log(warm_interpreter.logs)


def test_a_failing_job_fails_with_its_traceback_or_message(job, warm_interpreter):
    script, work = job
    done, _ = _run(warm_interpreter, script, work, "raise")
    assert done.returncode == 1 and "ValueError: broken job" in done.stderr
    done, _ = _run(warm_interpreter, script, work, "message")
    assert done.returncode == 1 and "a one-line message" in done.stderr


def test_any_environment_difference_beyond_the_allowlist_or_no_server_runs_the_job_in_its_own_process(
        job, warm_interpreter):
    script, work = job
    for env in ({"OMP_NUM_THREADS": "7"}, {"SOME_SETTING": "unknown to the server"},
                {warm.ENV: str(work / "no-such.sock")}):
        done, seen = _run(warm_interpreter, script, work, "exit", "0", **env)
        assert done.returncode == 0 and seen["socket"], env  # hand_off returned: the script went on here
    log = _server_log(warm_interpreter.logs)
    assert [str(script), str(work), "refused, not as in the server: OMP_NUM_THREADS"] in log
    assert [str(script), str(work), "refused, not as in the server: SOME_SETTING"] in log


def test_a_job_and_everything_it_started_end_together(job, warm_interpreter):
    """Its process group is killed when the process Snakemake waits on is killed, and when the
    job ends (a child it left behind goes too)."""
    script, work = job
    pids = work / "pids"
    waiting = subprocess.Popen([sys.executable, str(script), "sleep", str(pids)], cwd=work,
                               stdout=subprocess.DEVNULL, env=_job_env(warm_interpreter))
    for _ in range(300):
        if pids.is_file() and pids.read_text():
            break
        time.sleep(0.1)
    job_pid, child = map(int, pids.read_text().split())
    assert job_pid != waiting.pid and _alive(child)
    waiting.send_signal(signal.SIGKILL)
    waiting.wait()
    assert _wait_dead(job_pid, child), "the job or its child outlived the process Snakemake would have killed"
    pids.unlink()
    done, _ = _run(warm_interpreter, script, work, "leave_a_child", str(pids))
    assert done.returncode == 0
    assert _wait_dead(int(pids.read_text().split()[1])), "a child outlived its job"


def test_a_changed_package_file_refuses_jobs(job, tmp_path):
    """A server runs the package as it was when it started: after an edit, jobs run in their own
    processes (with the new code) instead of the server's old code."""
    script, work = job
    package = tmp_path / "pkg"
    shutil.copytree(ROOT / "src" / "mrd_unlearning", package / "mrd_unlearning",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WARM), str(package)])}
    socket_path = str(tmp_path / "s.sock")
    log = tmp_path / "warm-own.log"
    server = warm.start_server(socket_path, str(ROOT), log=str(log), modules=["json"], env=env)
    try:
        job_env = {**env, **dict.fromkeys(warm.THREAD_VARIABLES, "1"), warm.ENV: socket_path}
        run = lambda: subprocess.run([sys.executable, str(script), "exit", "0"], cwd=work, env=job_env,  # noqa: E731
                                     capture_output=True, text=True)
        assert json.loads(run().stdout.splitlines()[0])["socket"] is False  # served
        edited = package / "mrd_unlearning" / "metrics.py"
        edited.write_text(edited.read_text() + "\n# edited\n")
        assert json.loads(run().stdout.splitlines()[0])["socket"] is True  # ran in its own process
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert f"refused, the package changed since the server started: {edited}" in log.read_text()


def test_a_server_whose_imports_leave_threads_running_does_not_serve(tmp_path):
    (tmp_path / "threaded.py").write_text("import threading, time\n"
                                          "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WARM), str(tmp_path)])}
    try:  # it listens, imports, counts its threads and stops (perhaps before the socket is seen)
        server = warm.start_server(str(tmp_path / "s.sock"), str(ROOT), modules=["threaded"], env=env,
                                   capture_stderr=True)
        status, said = server.wait(timeout=60), server.stderr.read()
    except RuntimeError as stopped:
        status, said = (3 if "status 3" in str(stopped) else None), str(stopped)
    assert status == 3 and "2 threads after importing threaded" in said
    assert not (tmp_path / "s.sock").exists()


def test_the_servers_preload_is_read_from_the_rules():
    modules = warm.preload(str(ROOT))
    assert {"mrd_unlearning.stages.mrd", "mrd_unlearning.stages.unlearn", "mrd_unlearning.pooled",
            "mrd_unlearning.report", "mrd_unlearning.browser", "torch"} <= set(modules)


def test_a_study_job_computes_the_same_bytes_warm_as_in_its_own_process(smoke_run, warm_interpreter, tmp_path):
    """The smoke study's jobs ran warm; two of them that draw random numbers and train (MRD's
    perturbations; a sampler's draws, unlearning and its evaluation), rerun each in a process of
    its own, write the same numbers to the last bit (timings aside)."""
    work, first, _ = smoke_run
    again_project = tmp_path / "again"
    shutil.copytree(work, again_project, symlinks=True)
    targets = ["results/smoke/mrd/rep0/mrd.csv", "results/smoke/unlearning/rep0/ga/mrd_refresh"]
    cold = {k: v for k, v in os.environ.items() if k != warm.ENV}
    done = subprocess.run([*SNAKEMAKE, "--forcerun", "mrd", "unlearn", "--cores", "1", *targets], cwd=again_project,
                          capture_output=True, text=True, env=cold)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(re.findall(r"rule (\w+):", done.stdout + done.stderr)) == ["mrd", "unlearn"]
    assert not [cwd for _, cwd, _ in _server_log(warm_interpreter.logs) if Path(cwd) == again_project]  # both cold
    served = [cwd for _, cwd, code in _server_log(warm_interpreter.logs) if code == "0"]
    assert any(Path(cwd).name.startswith("smoke_project") for cwd in served)  # and the smoke study's ran warm
    again = again_project / "results" / "smoke"
    outputs = ["mrd/rep0/mrd.csv", "mrd/rep0/mrd.json", *(str(p.relative_to(first)) for p in (
        first / "unlearning/rep0/ga/mrd_refresh").rglob("*") if p.suffix in (".csv", ".json"))]
    assert "unlearning/rep0/ga/mrd_refresh/seed0/eval_budget_samples.csv" in outputs
    for name in outputs:
        assert_same_numbers(first, again, name)
