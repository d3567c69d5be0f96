"""Run a workflow rule's ``biointerp ...`` command line inside the Snakemake process.

Every rule of ``pipelines/`` has a ``run:`` block that calls :func:`biointerp_job` with
the command line it used to run in a shell (``"score --model {params.model} ..."``,
formatted like a ``shell:`` command). Where Snakemake runs jobs in threads of its own
process (``biointerp pipeline run``, ``biointerp demo``, the ``local`` profile, and each
cluster job, which is a Snakemake process of its own) the command runs right there:
Python, torch, anndata and the other libraries start once for the whole workflow
instead of once per job (they cost seconds each; the work of a demo job is often less).
Jobs in one process run one at a time and each sees what a fresh process would: its
own ``sys.argv``, stdout and stderr written to the rule's log, seeds set by the command.

A job with a conda environment, a container or environment modules runs the same
command line in a shell instead, inside that environment; so does every job when the
environment variable ``BIOINTERP_JOB_PROCESSES=1`` is set (one process per job, as
before; benchmarks/bench_startup.py compares the two).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading
import traceback

#: One in-process job at a time: jobs seed global generators and redirect sys.stdout.
_LOCK = threading.Lock()


class JobFailed(Exception):
    """A ``biointerp`` command run in-process exited with a non-zero status."""


def biointerp_job(cmd: str, _stepout: int = 1) -> None:
    """Run ``biointerp <cmd>`` for the calling rule; its output goes to the rule's first log file.

    ``cmd`` is formatted with the caller's ``input``, ``output``, ``params``,
    ``wildcards``, ... exactly as a ``shell:`` command would be.
    """
    from snakemake.utils import format as sm_format

    frame = sys._getframe(_stepout)
    names = frame.f_locals
    line = sm_format(cmd, stepout=_stepout + 1)
    log = str(names["log"][0])
    if os.environ.get("BIOINTERP_JOB_PROCESSES") == "1" or \
            any(names.get(k) for k in ("conda_env", "container_img", "env_modules")):
        from snakemake.shell import shell

        # the rule's context (conda_env, threads, jobid, ...) as keywords: shell() activates the environment
        shell("biointerp {line} > {log:q} 2>&1", **{**names, "line": line, "log": log})
        return
    run_in_process(shlex.split(line), log)


def run_in_process(argv: list[str], log: str) -> None:
    """``biointerp *argv`` in this process, stdout and stderr to ``log``; :class:`JobFailed` on error."""
    from biointerp.cli import main

    with _LOCK, open(log, "w", encoding="utf-8") as fh:
        fh.write("$ biointerp " + shlex.join(argv) + "\n")
        fh.flush()
        saved_argv, code = sys.argv, 1
        sys.argv = ["biointerp", *argv]
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                main.main(args=list(argv), prog_name="biointerp", standalone_mode=True)
            code = 0
        except SystemExit as end:
            code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
            if end.code is not None and not isinstance(end.code, int):
                fh.write(f"{end.code}\n")
        except Exception:  # noqa: BLE001 - as a crashed process: traceback in the log, non-zero status
            traceback.print_exc(file=fh)
        finally:
            sys.argv = saved_argv
    if code != 0:
        raise JobFailed(f"`biointerp {shlex.join(argv)}` failed (exit status {code}); its messages are in {log}")
