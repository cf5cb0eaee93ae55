"""Values cross languages: what C++ seals comes out of numpy with its dtype
and shape; what Python seals, C++ reads with the matching types."""

import os
import subprocess

import numpy as np
import pytest

import sealstore

PEER = os.environ.get("SEALSTORE_PY_PEER")
pytestmark = pytest.mark.skipif(not PEER, reason="SEALSTORE_PY_PEER (the C++ peer, built with the tests) not set")


def peer(mode, name):
    r = subprocess.run([PEER, mode, name], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def fetched(store, name):
    return store.fetch(store.lookup(name))


def test_what_cpp_seals_reads_in_numpy_with_its_type(store):
    peer("seal", store.name)
    nd = np.asarray(fetched(store, "cpp/nd_f64"))
    assert nd.dtype == np.float64 and nd.shape == (3, 4)
    np.testing.assert_array_equal(nd, np.arange(12).reshape(3, 4) * 0.5)
    vec = np.asarray(fetched(store, "cpp/vec_i32"))
    assert vec.dtype == np.int32 and vec.shape == (4,) and vec.tolist() == [-1, 2, -3, 4]
    cube = np.asarray(fetched(store, "cpp/nd_u16"))
    assert cube.dtype == np.uint16 and cube.shape == (2, 2, 2) and cube[1, 1, 1] == 107
    assert store.materialize(store.lookup("cpp/text")) == "from C++"
    assert store.materialize(store.lookup("cpp/i64")) == -7
    f = store.materialize(store.lookup("cpp/f32"))
    assert f == 1.25 and np.asarray(fetched(store, "cpp/f32")).dtype == np.float32
    assert store.materialize(store.lookup("cpp/bool")) is True
    assert store.materialize(store.lookup("cpp/vec_u8")).tolist() == [1, 2, 3]
    assert fetched(store, "cpp/vec_i32").type == "i32[]"


def test_what_python_seals_reads_in_cpp_with_the_matching_types(store):
    store.bind("py/nd_f64", store.put(np.arange(6.0).reshape(2, 3) + 0.25))
    store.bind("py/vec_i32", store.put(np.array([5, -6, 7], dtype=np.int32), kind="array"))
    store.bind("py/nd_u8", store.put(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)))
    store.bind("py/text", store.put("from Python \u2713"))
    store.bind("py/int", store.put(1 << 40))
    store.bind("py/float", store.put(2.75))
    store.bind("py/bool", store.put(True))
    store.bind("py/np_f32", store.put(np.float32(0.5)))
    w = store.create_writer(shape=(4,), dtype=np.float32)
    np.asarray(w)[:] = np.arange(4)
    store.bind("py/writer_f32", w.seal())
    store.bind("py/bytes", store.put(b"abc"))
    peer("check", store.name)
