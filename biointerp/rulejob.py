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
The exception are the model commands in :data:`CONCURRENT_COMMANDS` (``score``,
``harvest``): Snakemake may run several of them at once (independent shards, score beside
harvest), and no other job runs meanwhile. Each runs in a child process forked from this one
(``os.fork``: the libraries are already imported, so it starts in milliseconds) with its
stdout and stderr on its log: threads of one process would share one interpreter lock, and
a small model's passes are mostly Python between short kernels, so two threads ran no faster
than one (measured: the demo's four model jobs took 34 s as threads, 20 s as forks).
Off Linux (macOS discourages fork in threaded processes; Windows has none), or with
``BIOINTERP_JOB_FORK=0``, they run as threads, each writing to its own log through a
per-thread stdout/stderr (:func:`fork_enabled`).

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

#: Commands that may run in-process at the same time as each other (never beside any other
#: command): they read their inputs, run the model and write their own outputs, without
#: seeding global generators, reading ``sys.argv`` or changing other global state.
CONCURRENT_COMMANDS = frozenset({"score", "harvest"})

#: Modules to import in the background once the first model job has been forked (see
#: :func:`prewarm_after_fork`): this process is idle while its children run the model.
PREWARM: tuple[str, ...] = ()
#: Held while a background import runs: a fork waits for it (a child forked in the middle
#: of an import would inherit that module's import lock, held by a thread it does not have).
_IMPORT_GUARD = threading.Lock()
_PREWARM_STARTED = threading.Event()

#: Who runs in-process now: ``shared`` concurrent jobs, or one ``exclusive`` job.
_COND = threading.Condition()
_STATE = {"shared": 0, "exclusive": False}


@contextlib.contextmanager
def _turn(shared: bool):
    """Wait until this job may run: beside other shared jobs, or alone."""
    with _COND:
        if shared:
            _COND.wait_for(lambda: not _STATE["exclusive"])
            _STATE["shared"] += 1
            if _STATE["shared"] == 1:
                _Router.install()
        else:
            _COND.wait_for(lambda: not _STATE["exclusive"] and _STATE["shared"] == 0)
            _STATE["exclusive"] = True
    try:
        yield
    finally:
        with _COND:
            if shared:
                _STATE["shared"] -= 1
                if _STATE["shared"] == 0:
                    _Router.uninstall()
            else:
                _STATE["exclusive"] = False
            _COND.notify_all()


class _Router:
    """``sys.stdout`` / ``sys.stderr`` while shared jobs run: each thread writes to its job's
    log (set by :meth:`target`), any other thread to the stream that was there before."""

    _local = threading.local()
    _saved: tuple | None = None

    def __init__(self, fallback):
        self._fallback = fallback

    def _stream(self):
        return getattr(self._local, "fh", None) or self._fallback

    def write(self, text):
        return self._stream().write(text)

    def flush(self):
        return self._stream().flush()

    def __getattr__(self, name):  # isatty, encoding, fileno, ... of the current stream
        return getattr(self._stream(), name)

    @classmethod
    def install(cls):
        cls._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = cls(sys.stdout), cls(sys.stderr)

    @classmethod
    def uninstall(cls):
        if cls._saved is not None:
            sys.stdout, sys.stderr = cls._saved
            cls._saved = None

    @classmethod
    @contextlib.contextmanager
    def target(cls, fh):
        cls._local.fh = fh
        try:
            yield
        finally:
            cls._local.fh = None


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
    threads = names.get("threads")
    run_in_process(shlex.split(line), log, threads=int(threads) if threads else None)


def run_in_process(argv: list[str], log: str, threads: int | None = None) -> None:
    """``biointerp *argv`` in this process, stdout and stderr to ``log``; :class:`JobFailed` on error."""
    from biointerp.cli import main

    shared = bool(argv) and argv[0] in CONCURRENT_COMMANDS
    fork = shared and fork_enabled()
    with _turn(shared), open(log, "w", encoding="utf-8") as fh:
        fh.write("$ biointerp " + shlex.join(argv) + "\n")
        fh.flush()
        if fork:
            code = _run_forked(argv, fh, threads)
            if code != 0:
                raise JobFailed(f"`biointerp {shlex.join(argv)}` failed (exit status {code}); "
                                f"its messages are in {log}")
            return
        saved_argv, code = sys.argv, 1
        if not shared:
            sys.argv = ["biointerp", *argv]
        try:
            redirect = [_Router.target(fh)] if shared else [contextlib.redirect_stdout(fh),
                                                            contextlib.redirect_stderr(fh)]
            with contextlib.ExitStack() as stack:
                for r in redirect:
                    stack.enter_context(r)
                main.main(args=list(argv), prog_name="biointerp", standalone_mode=True)
            code = 0
        except SystemExit as end:
            code = _exit_status(end, fh)
        except Exception:  # noqa: BLE001 - as a crashed process: traceback in the log, non-zero status
            traceback.print_exc(file=fh)
        finally:
            if not shared:
                sys.argv = saved_argv
    if code != 0:
        raise JobFailed(f"`biointerp {shlex.join(argv)}` failed (exit status {code}); its messages are in {log}")


def _exit_status(end: SystemExit, fh) -> int:
    """A process's exit status for ``SystemExit``; a message given as the code goes to ``fh``."""
    if end.code is None or isinstance(end.code, int):
        return end.code or 0
    fh.write(f"{end.code}\n")
    return 1


def start_forked(target, fh, threads: int | None = None) -> int:
    """Fork a child that runs ``target()`` (its exit status; an exception prints its traceback
    and exits 1) with stdout/stderr, Python and C level, on ``fh`` and ``threads`` compute
    threads; the child always ends in ``os._exit``, never back in the caller. Not during a
    background import (:data:`_IMPORT_GUARD`). Returns the child's pid."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with _IMPORT_GUARD:
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        sys.stdout = sys.stderr = fh
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)
        code = target()
    except SystemExit as end:
        code = _exit_status(end, fh)
    except BaseException:  # noqa: BLE001 - as a crashed process: traceback in the log
        with contextlib.suppress(BaseException):
            traceback.print_exc(file=fh)
    finally:
        with contextlib.suppress(BaseException):
            fh.flush()
        os._exit(code)


def wait_forked(pid: int) -> int:
    """Wait for a child of :func:`start_forked`; its exit status."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _run_forked(argv: list[str], fh, threads: int | None = None) -> int:
    """Run ``biointerp *argv`` in a forked child (:func:`start_forked`) with the rule's ``threads``
    (children side by side must not each take every core); wait for it and return its status."""
    from biointerp.cli import main

    def command() -> int:
        sys.argv = ["biointerp", *argv]
        main.main(args=list(argv), prog_name="biointerp", standalone_mode=True)
        return 0

    pid = start_forked(command, fh, threads)
    _start_prewarm()
    return wait_forked(pid)


def fork_enabled() -> bool:
    """Whether jobs may run in forked children: on Linux unless ``BIOINTERP_JOB_FORK=0``
    (``BIOINTERP_JOB_FORK=1`` forces it elsewhere; macOS discourages fork in threaded processes)."""
    flag = os.environ.get("BIOINTERP_JOB_FORK")
    if flag is not None:
        return flag != "0" and hasattr(os, "fork")
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def prewarm_after_fork(*modules: str) -> None:
    """Import ``modules`` on a background thread once the first model job has been forked, so
    that later in-process jobs find them loaded (``biointerp demo``: lightning, ~4 s, for the
    probe training that follows the model jobs). Forks wait until the import is done."""
    global PREWARM
    PREWARM = tuple(modules)


def _start_prewarm() -> None:
    if not PREWARM or _PREWARM_STARTED.is_set():
        return
    _PREWARM_STARTED.set()
    _IMPORT_GUARD.acquire()  # taken here, released by the thread: no fork slips in before it starts

    def work():
        import importlib

        try:
            for name in PREWARM:
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
        finally:
            _IMPORT_GUARD.release()

    threading.Thread(target=work, name="biointerp-prewarm", daemon=True).start()
