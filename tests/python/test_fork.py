"""Across fork: an inherited Store, View or Writer refuses with an error that
says to attach; multiprocessing children of every start method attach by
name and read the same pages."""

import multiprocessing
import os

import numpy as np
import pytest

import mp_workers
import sealstore


def run_in_fork(fn):
    """Runs fn() in a forked child; returns the lines it reported."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rd)
        try:
            lines = fn()
        except BaseException as e:  # noqa: B036 - reported to the parent, whatever it was
            lines = [f"child raised {type(e).__name__}: {e}"]
        os.write(wr, "\n".join(lines).encode())
        os._exit(0)
    os.close(wr)
    with os.fdopen(rd) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return out.splitlines()


def expect_refusal(call, words):
    try:
        call()
    except sealstore.InvalidArgument as e:
        return "refused" if words in str(e) else f"refused without '{words}': {e}"
    return "not refused"


def test_objects_inherited_across_fork_refuse_and_say_to_attach(store):
    ref = store.put(np.arange(5.0))
    view = store.fetch(ref)
    writer = store.create_writer(nbytes=4)

    def child():
        return [
            expect_refusal(lambda: store.put(1), "attach again"),
            expect_refusal(lambda: store.fetch(ref), "attach again"),
            expect_refusal(lambda: np.asarray(view), "attach again"),
            expect_refusal(lambda: view.__dlpack__(), "attach again"),
            expect_refusal(lambda: np.asarray(writer), "fork"),
            expect_refusal(lambda: writer.seal(), "fork"),
            str(np.asarray(sealstore.Store.attach(store.name).fetch(ref)).sum()),
        ]

    assert run_in_fork(child) == ["refused"] * 6 + ["10.0"]
    # The parent's objects are untouched by the child's refusals.
    assert np.asarray(view).sum() == 10.0
    np.asarray(writer)[:] = 1
    assert store.materialize(writer.seal()) == b"\x01" * 4


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_attach_by_name(store, method):
    ctx = multiprocessing.get_context(method)
    ref = store.put(np.arange(100.0).reshape(10, 10))
    out = store.make_ref()
    p = ctx.Process(target=mp_workers.sum_into, args=(store.name, ref, out))
    p.start()
    try:
        assert store.materialize(out, timeout=60) == 4950.0
        p.join(60)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_pool_shares_one_matrix(store, method):
    m = np.arange(64.0).reshape(8, 8)
    ref = store.put(m)
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2, initializer=mp_workers.attach, initargs=(store.name,)) as pool:
        sums = pool.map(mp_workers.row_sum, [(ref, i) for i in range(8)], chunksize=1)
    assert sums == m.sum(axis=1).tolist()
