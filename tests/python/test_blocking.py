"""A blocking fetch sleeps without the GIL until another thread or process
seals the object, gives up at its timeout, and Ctrl-C interrupts it."""

import signal
import subprocess
import sys
import threading
import time

import numpy as np

import sealstore
from conftest import child_env, object_info, run_python, wait_until


def waiting_on(store, ref):
    o = object_info(store, ref)
    return o is not None and o.waiters > 0


def test_a_fetch_waits_for_another_process_to_seal(store):
    r = store.make_ref()
    code = (
        "import sys, numpy as np, sealstore\n"
        "s = sealstore.Store.attach(sys.argv[1])\n"
        "r = sealstore.RemoteRef.parse(sys.argv[2])\n"
        "v = s.fetch(r, timeout=60)\n"
        "print(np.asarray(v).sum())\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, store.name, str(r)], env=child_env(),
                             stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: waiting_on(store, r), "the child to wait on the ref")
        store.put(r, np.arange(10.0))
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0 and float(out) == 45.0
    finally:
        child.kill()
        child.wait()


def test_a_waiting_fetch_lets_other_threads_run(store):
    r = store.make_ref()
    got = []
    th = threading.Thread(target=lambda: got.append(store.materialize(r, timeout=30)))
    th.start()
    wait_until(lambda: waiting_on(store, r), "the thread to wait on the ref")
    store.put(r, "done")  # needs the GIL the waiting thread must have released
    th.join(30)
    assert got == ["done"]


def test_a_timeout_is_honoured_without_spinning(store):
    r = store.make_ref()
    cpu0, t0 = time.process_time(), time.monotonic()
    try:
        store.fetch(r, timeout=0.3)
    except sealstore.Timeout as e:
        assert str(r) in str(e)
    else:
        raise AssertionError("fetch of an unfilled ref returned")
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 5
    assert time.process_time() - cpu0 < 0.15


def test_ctrl_c_interrupts_a_blocking_fetch(store):
    r = store.make_ref()
    code = (
        "import sys, sealstore\n"
        "s = sealstore.Store.attach(sys.argv[1])\n"
        "try:\n"
        "    s.fetch(sealstore.RemoteRef.parse(sys.argv[2]))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(3)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, store.name, str(r)], env=child_env(),
                             stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: waiting_on(store, r), "the child to wait on the ref")
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=10)
        assert child.returncode == 3 and out.strip() == "interrupted"
        assert time.monotonic() - t0 < 5
    finally:
        child.kill()
        child.wait()
    wait_until(lambda: not waiting_on(store, r), "the child's wait to be withdrawn")


def test_ctrl_c_interrupts_fetch_many_and_materialize(store):
    r = store.make_ref()
    for call in ["s.fetch_many([r])", "s.materialize(r)"]:
        code = (
            "import sys, sealstore\n"
            "s = sealstore.Store.attach(sys.argv[1])\n"
            "r = sealstore.RemoteRef.parse(sys.argv[2])\n"
            f"{call}\n"
        )
        child = subprocess.Popen([sys.executable, "-c", code, store.name, str(r)], env=child_env(),
                                 stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: waiting_on(store, r), f"the child to wait in {call}")
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=10)
            assert child.returncode != 0 and "KeyboardInterrupt" in err
        finally:
            child.kill()
            child.wait()
        wait_until(lambda: not waiting_on(store, r), "the child's wait to be withdrawn")


def test_try_fetch_in_another_process_never_waits(store):
    r = store.make_ref()
    r2 = run_python("import sys, sealstore\n"
                    "s = sealstore.Store.attach(sys.argv[1])\n"
                    "print(s.try_fetch(sealstore.RemoteRef.parse(sys.argv[2])))\n", store.name, str(r))
    assert r2.returncode == 0 and r2.stdout.strip() == "None"
    store.put(r, 5)
    assert store.materialize(r) == 5
