"""A warm interpreter for the test studies' jobs (test infrastructure, not part of the package):
most of a small job's seconds go to importing torch and transformers, once per job. The server
imports them once; a job's script, handed over before it imports anything (sitecustomize.py beside
this file, on the tests' PYTHONPATH, calls `hand_off` in every Snakemake job script's process),
then runs in a fork of it, in the job's working directory, with its environment, arguments and
standard streams, in a process group of its own, while the job's own process only waits and exits
with the fork's status. The job computes exactly what it computes in a process of its own (a test
compares the bytes), and `make reproduce` never uses it.

The server refuses to start serving when more than one thread exists after its imports (a fork
copies only the forking thread), and refuses a job, which then runs in its own process, when a
file of the package changed since the server started (it would run the old code), when another
interpreter asks, or when the job's environment differs from the server's in anything but the
variables in `MAY_DIFFER`. A job killed by Snakemake takes its whole process group with it, and
so does a job that ends (its children do not outlive it). Not for GPUs: a process that has
initialised CUDA cannot fork, and the server never does."""
from __future__ import annotations

import importlib
import json
import os
import runpy
import select
import signal
import socket
import struct
import sys
import traceback

ENV = "MRD_WARM_SOCKET"
# What every job imports besides its stage's module (those come from the rules, `preload`); a
# module missing here is imported by the job itself, as without a server.
LIBRARIES = ("torch", "transformers", "transformers.models.llama.modeling_llama", "tokenizers", "pandas",
             "scipy.stats", "snakemake.script", "mrd_unlearning.jobs")
# The environment variables a job may have with another value than the server's: what a shell,
# pytest or Snakemake set per process, which no library reads when it is imported. Any other
# difference (threads, devices, Hugging Face paths, ...) runs the job in its own process.
MAY_DIFFER = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "PYTEST_CURRENT_TEST", "TMPDIR", "TMP", "TEMP", "TEMPDIR",
                        ENV})
# What Snakemake sets to each job's threads; the server sets them before it imports anything.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_HEADER = struct.Struct("!Q")
_STATUS = struct.Struct("!i")


def preload(workflow_dir: str) -> tuple[str, ...]:
    """The modules to import: the libraries, and the module of every stage the workflow's rules
    name (read from the rules, so a new stage is preloaded without a list to extend)."""
    from mrd_unlearning.provenance import rule_definitions

    stages = {stage[0] for _, _, stage in rule_definitions(workflow_dir).values() if stage}
    return (*LIBRARIES, *(f"mrd_unlearning.{module}" for module in sorted(stages)))


def hand_off() -> None:
    """Run the calling script (a Snakemake job) in a fork of the warm server and exit with its
    status; return at once, so that the script goes on in this process, where there is no server
    or it refused the job."""
    path = os.environ.get(ENV)
    if not path:
        return
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:
        client.close()
        return
    request = json.dumps({"script": os.path.abspath(sys.argv[0]), "argv": sys.argv, "cwd": os.getcwd(),
                          "env": dict(os.environ), "python": sys.executable}).encode()
    sys.stdout.flush(), sys.stderr.flush()
    with client:
        socket.send_fds(client, [_HEADER.pack(len(request))], [0, 1, 2])
        client.sendall(request)
        if _recv_exactly(client, 1) != b"+":  # refused (another environment or interpreter): run here
            return
        reply = _recv_exactly(client, _STATUS.size)
    if len(reply) < _STATUS.size:
        print(f"{ENV}: the warm server closed the connection before the job ended", file=sys.stderr)
        os._exit(1)
    os._exit(_STATUS.unpack(reply)[0])  # from sitecustomize too, where SystemExit would not stop Python


def serve(path: str, modules: tuple[str, ...], threads: int = 1, log: str | None = None) -> None:
    """Listen on `path` first (jobs that connect meanwhile wait), import `modules`, then serve each
    connection from a fork of this process. Serves the jobs of `threads` threads (those whose
    thread variables Snakemake set to it); with `log`, a line per job (its script, directory, and
    exit status or why it ran in its own process). Stops on SIGTERM or SIGINT; exits with status 3
    if its imports left more than one thread running."""
    if not hasattr(os, "pidfd_open"):
        sys.exit("python -m mrd_unlearning.warm: serving jobs needs Linux (os.pidfd_open)")
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    before = dict(os.environ)
    try:
        for name in modules:
            importlib.import_module(name)
        threads_now = len(os.listdir("/proc/self/task"))
        if threads_now > 1:
            print(f"warm server: {threads_now} threads after importing {', '.join(modules)}; a fork would copy "
                  "only one of them, so it does not serve", file=sys.stderr)
            sys.exit(3)
        package = _package_files()
        # a variable an import sets for itself may have either value: a process that starts a job
        # after importing the same library passes it on
        environment = {k: {before.get(k), os.environ.get(k)} for k in {*before, *os.environ}}
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the connections' forks are reaped by the kernel
        while True:
            connection, _ = server.accept()
            sys.stdout.flush(), sys.stderr.flush()
            if os.fork() == 0:
                try:
                    server.close()
                    _handle(connection, environment, package, log)
                finally:
                    os._exit(1)  # never back into the server's loop
            connection.close()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if os.path.exists(path):
            os.unlink(path)


def _package_files() -> dict[str, tuple[int, int]]:
    """Each file of the imported package: (modification time, size)."""
    import mrd_unlearning

    root = os.path.dirname(mrd_unlearning.__file__)
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith((".pyc", ".pyo")):
                stat = os.stat(os.path.join(folder, name))
                files[os.path.join(folder, name)] = (stat.st_mtime_ns, stat.st_size)
    return files


def _handle(connection: socket.socket, environment: dict[str, set], package: dict, log: str | None) -> None:
    """One job, in a fork of the server: check it may run here, fork it into a process group of
    its own, report its exit status. The group is killed when the job ends (what it started
    goes with it) or when its waiting process goes away (Snakemake killed it)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 3)
    request = json.loads(_recv_exactly(connection, _HEADER.unpack(header)[0]))
    now = _package_files()
    changed = sorted(path for path in {*package, *now} if package.get(path) != now.get(path))
    differ = _differences(request, environment)
    if changed or differ:
        why = f"the package changed since the server started: {', '.join(changed)}" if changed else \
            f"not as in the server: {', '.join(differ)}"
        _log(log, request, f"refused, {why}")
        connection.sendall(b"-")
        os._exit(0)
    connection.sendall(b"+")
    job = os.fork()
    if job == 0:
        os.setpgid(0, 0)
        connection.close()
        _run(request, fds)
    try:
        os.setpgid(job, job)  # also here: the group exists before either process goes on
    except (PermissionError, ProcessLookupError):
        pass
    for fd in fds:
        os.close(fd)
    job_ended = os.pidfd_open(job)
    while True:
        ready, _, _ = select.select([job_ended, connection], [], [])
        if job_ended in ready:
            break
        if not connection.recv(1):  # the waiting process is gone
            _kill_group(job)
            break
    _, status = os.waitpid(job, 0)
    _kill_group(job)
    code = os.waitstatus_to_exitcode(status)
    _log(log, request, code)
    try:
        connection.sendall(_STATUS.pack(code))
    except OSError:
        pass
    os._exit(0)


def _kill_group(job: int) -> None:
    try:
        os.killpg(job, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _differences(request: dict, environment: dict[str, set]) -> list[str]:
    """Why the job may not run here: another interpreter, or a variable outside `MAY_DIFFER` with
    another value in the job's environment than in the server's."""
    if request["python"] != sys.executable:
        return ["the Python interpreters"]
    env = request["env"]
    names = {*env, *environment} - MAY_DIFFER
    return sorted(k for k in names if env.get(k) not in environment.get(k, {None}))


def _log(log: str | None, request: dict, outcome) -> None:
    """A line per job: its script, directory, and exit status (or why it was refused)."""
    if log:
        with open(log, "a") as lines:
            lines.write(f"{request['argv'][0]}\t{request['cwd']}\t{outcome}\n")


def _run(request: dict, fds: list[int]) -> None:
    """Become the job: its streams, directory, environment and arguments, fresh seeds for the
    generators a new interpreter seeds afresh, then its script as `__main__`."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(ENV, None)  # the script's own `hand_off` then returns, and so do its children's
    sys.argv = request["argv"]
    sys.path[0] = os.path.dirname(request["script"])
    import random
    import tempfile

    tempfile.tempdir = None  # found again from the job's TMPDIR
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    code = 0
    try:
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush(), sys.stderr.flush()
    os._exit(code)


def start_server(path: str, workflow_dir: str, threads: int = 1, log: str | None = None, *,
                 modules: list[str] | None = None, env: dict | None = None, capture_stderr: bool = False):
    """A server in a process of its own, once it listens on `path` (it imports afterwards; jobs
    that connect meanwhile wait), for the jobs of the workflow in `workflow_dir` (or preloading
    `modules`). Stop it with `terminate()`; a server that refused to serve has exited with 3."""
    import subprocess
    import time

    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", path, "--workflow", workflow_dir,
                               "--threads", str(threads), *(["--log", log] if log else []),
                               *(["--preload", *modules] if modules is not None else [])], env=env,
                              stderr=subprocess.PIPE if capture_stderr else None, text=True)
    while not os.path.exists(path):
        if server.poll() is not None:
            said = server.stderr.read() if capture_stderr else ""
            raise RuntimeError(f"the warm interpreter stopped with status {server.returncode} before it listened"
                               + (f": {said}" if said else ""))
        time.sleep(0.05)
    return server


def _recv_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    serving = commands.add_parser("serve", help="import torch, transformers and the stages once; serve jobs from forks")
    serving.add_argument("socket", help=f"the Unix socket to listen on; give jobs the same path in {ENV}")
    serving.add_argument("--workflow", required=True, help="the workflow folder whose rules name the stages")
    serving.add_argument("--threads", type=int, default=1,
                         help="the threads of the jobs it serves (the study's `threads`); default 1")
    serving.add_argument("--log", help="append a line per job: its script, directory, and exit status or why it "
                         "ran in its own process")
    serving.add_argument("--preload", nargs="*", help="import these modules instead (the tests' own servers)")
    args = parser.parse_args(argv)
    serve(args.socket, tuple(args.preload) if args.preload is not None else preload(args.workflow), args.threads,
          args.log)


if __name__ == "__main__":
    main()
