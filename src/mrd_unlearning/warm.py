"""A warm interpreter for the workflow's jobs: most of a small job's seconds go to importing torch
and transformers, once per job. `python -m mrd_unlearning.warm serve SOCKET` imports them once;
with `MRD_WARM_SOCKET=SOCKET` in its environment, each job's script then hands itself to that
server (`hand_off`, the first line of every script in workflow/scripts/): the server forks, and the
fork runs the same script, in the job's working directory, with its environment, arguments and
standard streams, while the job's own process only waits and exits with the fork's status. The
job computes exactly what it computes in a process of its own (a test compares the bytes).

Without the variable, or with no server listening, or where the job's environment differs from
the server's in a setting that libraries read when they are imported (threads, devices, Hugging
Face paths), the script runs in its own process as before. A job killed by Snakemake takes its
fork with it.

For CPU runs of many small jobs (the test suite, the small studies). Not on GPUs: a process that
has initialised CUDA cannot fork, and the server never does. Snakemake's benchmark files time the
job exactly, but their memory columns measure the waiting process, not the fork. The server runs
the package as it was when it started: restart it after changing the code."""
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
# What the jobs import; a module missing here is imported by the job itself, as without a server.
PRELOAD = ("torch", "transformers", "transformers.models.llama.modeling_llama", "tokenizers", "pandas",
           "scipy.stats", "snakemake.script", *(f"mrd_unlearning.stages.{m}" for m in (
               "common", "data", "tokenizer", "finetune", "evaluate", "mrd", "unlearn")),
           "mrd_unlearning.pooled", "mrd_unlearning.figures", "mrd_unlearning.report")
# Environment variables read at import time: a job whose value differs from the server's runs on its own.
IMPORT_TIME_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "GOTO_", "VECLIB_", "NUMEXPR_", "CUDA_", "PYTORCH_", "TORCH", "HF_", "TRANSFORMERS_",
                        "TOKENIZERS_", "PYTHONHASHSEED", "PYTHONPATH")
# What Snakemake sets to each job's threads; the server sets them before it imports anything.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_HEADER = struct.Struct("!Q")
_STATUS = struct.Struct("!i")


def hand_off() -> None:
    """Run the calling script (a Snakemake job) in a fork of the warm server and exit with its
    status; return at once, so that the script goes on in this process, where there is no server."""
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
        sys.exit(1)
    sys.exit(_STATUS.unpack(reply)[0])


def serve(path: str, threads: int = 1, log: str | None = None) -> None:
    """Listen on `path` first (jobs that connect meanwhile wait), import what the jobs import, then
    serve each connection from a fork of this process. Serves the jobs of `threads` threads (those
    whose thread variables Snakemake set to it); with `log`, a line per job (its script, directory,
    and exit status or why it ran in its own process). Stops on SIGTERM or SIGINT."""
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
        for name in PRELOAD:
            importlib.import_module(name)
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
                    _handle(connection, environment, log)
                finally:
                    os._exit(1)  # never back into the server's loop
            connection.close()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if os.path.exists(path):
            os.unlink(path)


def _handle(connection: socket.socket, environment: dict[str, set], log: str | None) -> None:
    """One job, in a fork of the server: check it may run here, fork it, report its exit status.
    The job is killed if its waiting process goes away (Snakemake killed it)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 3)
    request = json.loads(_recv_exactly(connection, _HEADER.unpack(header)[0]))
    differ = _differences(request, environment)
    if differ:
        _log(log, request, f"refused, not as in the server: {', '.join(differ)}")
        connection.sendall(b"-")
        os._exit(0)
    connection.sendall(b"+")
    job = os.fork()
    if job == 0:
        connection.close()
        _run(request, fds)
    for fd in fds:
        os.close(fd)
    job_ended = os.pidfd_open(job)
    while True:
        ready, _, _ = select.select([job_ended, connection], [], [])
        if job_ended in ready:
            break
        if not connection.recv(1):  # the waiting process is gone
            os.kill(job, signal.SIGKILL)
            break
    _, status = os.waitpid(job, 0)
    code = os.waitstatus_to_exitcode(status)
    _log(log, request, code)
    try:
        connection.sendall(_STATUS.pack(code))
    except OSError:
        pass
    os._exit(0)


def _differences(request: dict, environment: dict[str, set]) -> list[str]:
    """Why the job may not run here: another interpreter, or the variables a library may have read
    when the server imported it that have other values in the job's environment."""
    if request["python"] != sys.executable:
        return ["the Python interpreters"]
    env = request["env"]
    names = {k for k in (*env, *environment) if k.startswith(IMPORT_TIME_PREFIXES)}
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


def start_server(path: str, threads: int = 1, log: str | None = None):
    """A server in a process of its own, once it listens on `path` (it imports afterwards; jobs
    that connect meanwhile wait). Stop it with `terminate()`."""
    import subprocess
    import time

    server = subprocess.Popen([sys.executable, "-m", "mrd_unlearning.warm", "serve", path, "--threads", str(threads),
                               *(["--log", log] if log else [])])
    while not os.path.exists(path):
        if server.poll() is not None:
            raise RuntimeError(f"the warm interpreter stopped with status {server.returncode} before it listened")
        time.sleep(0.05)
    return server


def run(command: list[str], threads: int = 1) -> int:
    """`command` (e.g. a Snakemake run) with a warm server for its jobs, started for it and
    stopped after it; returns the command's exit status."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mrd-warm-") as folder:  # short: a socket path has at most 107 bytes
        server = start_server(os.path.join(folder, "jobs.sock"), threads)
        try:
            return subprocess.call(command, env={**os.environ, ENV: os.path.join(folder, "jobs.sock")})
        finally:
            server.terminate()
            server.wait()


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

    parser = argparse.ArgumentParser(prog="python -m mrd_unlearning.warm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    serving = commands.add_parser("serve", help="import torch and transformers once and serve jobs from forks")
    serving.add_argument("socket", help=f"the Unix socket to listen on; give jobs the same path in {ENV}")
    serving.add_argument("--threads", type=int, default=1,
                         help="the threads of the jobs it serves (the study's `threads`); default 1")
    serving.add_argument("--log", help="append a line per job: its script, directory, and exit status or why it "
                         "ran in its own process")
    running = commands.add_parser("run", help="run a command (e.g. snakemake ...) with a server for its jobs")
    running.add_argument("--threads", type=int, default=1, help="as for serve")
    running.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    if args.action == "serve":
        serve(args.socket, args.threads, args.log)
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run: give the command to run after --")
        sys.exit(run(command, args.threads))


if __name__ == "__main__":
    main()
