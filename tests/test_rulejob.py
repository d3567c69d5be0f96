"""In-process workflow jobs (biointerp.rulejob): model commands may run side by side, each
writing to its own log; every other command runs alone."""

import sys
import threading

import pytest

from biointerp import rulejob


def test_shared_jobs_overlap_and_exclusive_jobs_wait():
    inside, release = threading.Barrier(2, timeout=10), threading.Event()
    order = []

    def shared(tag):
        with rulejob._turn(True):
            inside.wait()  # both shared jobs are inside at once (a timeout here fails the test)
            order.append(f"{tag} in")
            release.wait(10)
            order.append(f"{tag} out")

    def exclusive():
        with rulejob._turn(False):
            order.append("exclusive")

    a, b = threading.Thread(target=shared, args=("a",)), threading.Thread(target=shared, args=("b",))
    a.start(), b.start()
    while len(order) < 2:
        threading.Event().wait(0.01)
    c = threading.Thread(target=exclusive)
    c.start()
    c.join(0.3)
    assert c.is_alive(), "an exclusive job must wait for the shared ones"
    release.set()
    for t in (a, b, c):
        t.join(10)
    assert order[-1] == "exclusive" and sorted(order[:2]) == ["a in", "b in"]
    assert rulejob._STATE == {"shared": 0, "exclusive": False}


def test_router_sends_each_thread_to_its_own_log(tmp_path, capsys):
    before = sys.stdout
    logs = [tmp_path / f"{i}.log" for i in range(2)]

    def job(i):
        with rulejob._turn(True), open(logs[i], "w") as fh, rulejob._Router.target(fh):
            for _ in range(50):
                print(f"job {i}")
                sys.stderr.write(f"err {i}\n")

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    print("main thread")
    for t in threads:
        t.join(10)
    assert sys.stdout is before  # uninstalled when the last shared job ended
    for i, log in enumerate(logs):
        lines = log.read_text().splitlines()
        assert sorted(set(lines)) == [f"err {i}", f"job {i}"] and len(lines) == 100
    assert "job" not in capsys.readouterr().out


@pytest.mark.parametrize("fork", ["1", "0"])
def test_run_in_process_shared_command_logs_and_fails_cleanly(tmp_path, monkeypatch, fork):
    """A shared command runs in a forked child (default) or a thread (BIOINTERP_JOB_FORK=0)."""
    monkeypatch.setattr(rulejob, "CONCURRENT_COMMANDS", frozenset({"models"}))
    monkeypatch.setenv("BIOINTERP_JOB_FORK", fork)
    argv_before, out_before = list(sys.argv), sys.stdout
    log = tmp_path / "models.log"
    rulejob.run_in_process(["models", "list"], str(log))
    text = log.read_text()
    assert text.startswith("$ biointerp models list\n") and "demo" in text
    assert sys.argv == argv_before and sys.stdout is out_before
    with pytest.raises(rulejob.JobFailed, match="exit status 2"):
        rulejob.run_in_process(["models", "list", "--no-such-option"], str(tmp_path / "bad.log"))
    assert "no-such-option" in (tmp_path / "bad.log").read_text()
    assert rulejob._STATE == {"shared": 0, "exclusive": False}


def test_forked_jobs_run_side_by_side_in_their_own_processes(tmp_path, monkeypatch):
    """Two shared jobs fork two children that overlap in time; each writes only its own log."""
    import os
    import time

    from biointerp import cli

    monkeypatch.setattr(rulejob, "CONCURRENT_COMMANDS", frozenset({"sleepjob"}))
    import click

    @click.command("sleepjob")
    @click.argument("tag")
    def sleepjob(tag):
        click.echo(f"{tag} pid {os.getpid()} start {time.time():.3f}")
        time.sleep(1.0)
        click.echo(f"{tag} end {time.time():.3f}")

    monkeypatch.setitem(cli.main.commands, "sleepjob", sleepjob)
    logs = {t: tmp_path / f"{t}.log" for t in "ab"}
    threads = [threading.Thread(target=rulejob.run_in_process, args=(["sleepjob", t], str(logs[t]))) for t in "ab"]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert time.time() - t0 < 1.9  # side by side, not one after the other
    pids = set()
    for t, log in logs.items():
        lines = log.read_text().splitlines()
        assert lines[0] == f"$ biointerp sleepjob {t}" and lines[1].startswith(f"{t} pid")
        assert lines[2].startswith(f"{t} end") and len(lines) == 3
        pids.add(int(lines[1].split()[2]))
    assert os.getpid() not in pids and len(pids) == 2


def test_prewarm_imports_after_the_first_fork(tmp_path, monkeypatch):
    """prewarm_after_fork: the modules load on a background thread once a model job has forked."""
    monkeypatch.setattr(rulejob, "CONCURRENT_COMMANDS", frozenset({"models"}))
    monkeypatch.setattr(rulejob, "_PREWARM_STARTED", threading.Event())
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    rulejob.prewarm_after_fork("colorsys")
    try:
        assert "colorsys" not in sys.modules
        rulejob.run_in_process(["models", "list"], str(tmp_path / "m.log"))
        with rulejob._IMPORT_GUARD:  # held until the background import is done
            pass
        assert rulejob._PREWARM_STARTED.is_set() and "colorsys" in sys.modules
    finally:
        rulejob.prewarm_after_fork()


def test_start_forked_statuses_and_tracebacks(tmp_path):
    """start_forked: the child's status is the target's, a crash is a traceback in the log and
    status 1, a SystemExit message goes to the log; the parent's stdout is untouched."""
    import os

    def ok():
        print("hello from", os.getpid())
        return 3

    def crash():
        raise RuntimeError("boom")

    def exits():
        raise SystemExit("bad input")

    for target, want, text in ((ok, 3, "hello from"), (crash, 1, "RuntimeError: boom"), (exits, 1, "bad input")):
        log = tmp_path / f"{target.__name__}.log"
        with open(log, "w") as fh:
            pid = rulejob.start_forked(target, fh, threads=1)
            assert pid != os.getpid()
            assert rulejob.wait_forked(pid) == want
        assert text in log.read_text()
