"""Fixtures for sealstore's Python tests: a small segment of its own for
each test, removed even when the test fails, and helpers to run real child
processes of the same interpreter with the same import path."""

import itertools
import os
import subprocess
import sys
import time

import pytest

import sealstore

_counter = itertools.count()


def unique_name(tag="py"):
    return f"test.{tag}.{os.getpid()}.{next(_counter)}"


@pytest.fixture
def segment_name():
    name = unique_name()
    try:
        yield name
    finally:
        sealstore.Store.remove(name)


@pytest.fixture
def store(segment_name):
    s = sealstore.Store.create(segment_name, capacity=8 << 20)
    try:
        yield s
    finally:
        s.close()


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def run_python(code, *args, timeout=60, **kwargs):
    """Runs code in a fresh interpreter (the one running the tests)."""
    return subprocess.run([sys.executable, "-c", code, *args], env=child_env(), capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)


def wait_until(predicate, what, timeout=30.0):
    """Polls the store for a state another thread or process brings about;
    fails with `what` if it does not come within timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def object_info(store, ref):
    for o in store.objects():
        if o.ref == ref:
            return o
    return None


def pinned_by(store, ref):
    o = object_info(store, ref)
    return [] if o is None else list(o.pinned_by)
