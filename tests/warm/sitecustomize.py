"""Loaded by every Python process the tests start (conftest.py puts this folder on PYTHONPATH): a
Snakemake job's script hands itself to the session's warm interpreter (warm_server.py) before
it imports anything. Any other process, or a job without a server, goes on as usual."""
import os
import sys

if os.environ.get("MRD_WARM_SOCKET") and "/.snakemake/scripts/" in (sys.argv[0] if sys.argv else ""):
    from warm_server import hand_off

    hand_off()
