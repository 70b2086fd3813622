"""The deploy lock held past its block for the work after the answer (agent/lock.py,
agent/later.py), with real flock on a temp file; the waiter runs in another process, as
the next deploy would."""

import multiprocessing
import time

import pytest

from onebox.agent import later, lock
from onebox.agent.protocol import AgentError

# spawned, not forked: a forked child would inherit the held lock's descriptor (and so
# the lock itself), which the next deploy, a process of its own, never does
SPAWN = multiprocessing.get_context("spawn")


def _take(path, queue) -> None:
    queue.put(("waiting", time.time()))
    try:
        with lock.deploy_lock(path, "next", "deploy"):
            queue.put(("got it", time.time()))
    except AgentError as exc:
        queue.put(("refused", exc.message))


def test_the_next_deploy_waits_for_the_work_after_the_answer(tmp_path):
    path = tmp_path / ".lock"
    ran = []
    with lock.deploy_lock(path, "ada@laptop", "deploy"):
        assert later.after_answer(lambda: ran.append(1), path, "stopping the blue slot", 30)
    # the block ended (the answer is out): the lock is still held, and says by what
    queue = SPAWN.Queue()
    waiter = SPAWN.Process(target=_take, args=(path, queue))
    waiter.start()
    assert queue.get(timeout=30)[0] == "waiting"
    time.sleep(0.5)
    assert queue.empty()  # waiting, not refused
    released = time.time()
    later.run_jobs()  # the old slot stopped: the lock goes
    waiter.join(10)
    outcome, got_at = queue.get(timeout=5)
    assert outcome == "got it" and got_at >= released and ran == [1]


def test_a_deploy_in_progress_is_still_refused_at_once(tmp_path):
    path = tmp_path / ".lock"
    queue = SPAWN.Queue()
    with lock.deploy_lock(path, "ada@laptop", "deploy"):
        waiter = SPAWN.Process(target=_take, args=(path, queue))
        waiter.start()
        waiter.join(30)
    assert queue.get(timeout=5)[0] == "waiting"
    outcome, message = queue.get(timeout=5)
    assert outcome == "refused" and "another operation is running: deploy by ada@laptop" in message


def test_without_the_lock_the_work_is_not_deferred(tmp_path):
    assert not later.after_answer(lambda: None, tmp_path / ".lock", "x", 1)
    assert later.JOBS == []


def test_a_failing_job_still_lets_the_lock_go(tmp_path, capsys):
    path = tmp_path / ".lock"
    with lock.deploy_lock(path, "ada@laptop", "deploy"):
        later.after_answer(lambda: 1 / 0, path, "stopping the green slot", 30)
    later.run_jobs()
    assert "ZeroDivisionError" in capsys.readouterr().err
    with lock.deploy_lock(path, "next", "deploy"):  # free again, at once
        pass


@pytest.fixture(autouse=True)
def _clean():
    yield
    later.JOBS.clear()
    lock.release_kept()


def test_the_roll_lock_lets_its_own_roll_through_and_no_one_else(tmp_path):
    """A rolling deploy's lock, held by `onebox-agent roll-lock` until its standard input
    closes (the real module, in a process of its own, as on a web host)."""
    import subprocess
    import sys

    path, token = tmp_path / ".roll.lock", "a1" * 16
    holder = subprocess.Popen(
        [sys.executable, "-m", "onebox.agent.lock", str(path), token, "ada@laptop", "deploy"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with lock.roll_guard(path, token):  # the roll's own calls
        pass
    for other in ("", "b2" * 16):  # a deploy of its own, another roll
        with pytest.raises(AgentError) as info, lock.roll_guard(path, other):
            pass
        assert "a rolling operation holds every web host: rolling deploy by ada@laptop" in (
            info.value.message
        )
    second = subprocess.run(
        [sys.executable, "-m", "onebox.agent.lock", str(path), "c3" * 16, "bob@desk", "rollback"],
        input="",
        capture_output=True,
        text=True,
    )
    assert second.returncode == 1 and second.stdout.startswith("busy: rolling deploy by ada")
    holder.stdin.close()  # the client's end (or its SSH session's): the lock goes
    assert holder.wait(timeout=10) == 0
    with lock.roll_guard(path, ""):
        pass
