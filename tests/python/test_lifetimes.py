"""Pins live as long as anything made from a view lives (arrays, slices,
memoryviews, DLPack capsules); views are read-only all the way down; a
view outliving its Store keeps the attachment alive."""

import ctypes
import gc
import signal
import threading

import numpy as np
import pytest

import sealstore
from conftest import pinned_by, run_python


def test_an_array_keeps_the_pin_after_the_view_is_gone(store):
    ref = store.put(np.arange(10.0))
    v = store.fetch(ref)
    assert pinned_by(store, ref) == [1]
    a = np.asarray(v)
    del v
    gc.collect()
    assert pinned_by(store, ref) == [1]
    s = a[2:5]
    del a
    gc.collect()
    assert pinned_by(store, ref) == [1]
    assert s.tolist() == [2.0, 3.0, 4.0]
    del s
    gc.collect()
    assert pinned_by(store, ref) == []


def test_a_memoryview_keeps_the_pin(store):
    ref = store.put(b"abcdef")
    m = memoryview(store.fetch(ref))
    gc.collect()
    assert pinned_by(store, ref) == [1]
    assert m[1:3].tobytes() == b"bc"
    m.release()
    gc.collect()
    assert pinned_by(store, ref) == []


def test_arrays_from_a_view_are_read_only_and_stay_so(store):
    a = np.asarray(store.fetch(store.put(np.zeros(8))))
    assert not a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1
    with pytest.raises(ValueError):
        a.flags.writeable = True
    with pytest.raises(ValueError):
        a[1:3].setflags(write=True)


def test_a_writable_buffer_of_a_view_is_refused(store):
    v = store.fetch(store.put(b"1234"))
    with pytest.raises(TypeError, match="not writable"):
        ctypes.c_char.from_buffer(v)
    get_buffer = ctypes.pythonapi.PyObject_GetBuffer
    get_buffer.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_int]
    py_buffer = ctypes.create_string_buffer(256)
    pybuf_writable = 0x0001
    with pytest.raises(BufferError, match="read-only: materialize"):
        get_buffer(v, ctypes.addressof(py_buffer), pybuf_writable)


def test_a_write_through_a_raw_pointer_faults(store):
    ref = store.put(np.zeros(512))
    code = (
        "import ctypes, sys, numpy as np, sealstore\n"
        "s = sealstore.Store.attach(sys.argv[1])\n"
        "a = np.asarray(s.fetch(sealstore.RemoteRef.parse(sys.argv[2])))\n"
        "ctypes.memset(a.ctypes.data, 1, 8)\n"
        "print('wrote')\n"
    )
    r = run_python(code, store.name, str(ref))
    assert r.returncode == -signal.SIGSEGV, r.stdout + r.stderr
    assert "wrote" not in r.stdout
    assert np.asarray(store.fetch(ref))[0] == 0


def test_a_view_and_its_arrays_outlive_their_store_object(store):
    ref = store.put(np.arange(1000.0))
    other = sealstore.Store.attach(store.name)
    other_id = other.myid
    v = other.fetch(ref)
    a = np.asarray(v)[10:20]
    other.close()
    del other, v
    gc.collect()
    assert other_id in [p.id for p in store.processes()]  # still attached: the array holds it
    assert a.sum() == sum(range(10, 20))
    assert pinned_by(store, ref) == [other_id]
    del a
    gc.collect()
    assert other_id not in [p.id for p in store.processes()]
    assert pinned_by(store, ref) == []


def test_erasing_a_pinned_object_defers_the_free(store):
    ref = store.put(np.arange(4.0))
    a = np.asarray(store.fetch(ref))
    store.erase(ref)
    assert not store.contains(ref)
    assert a.tolist() == [0.0, 1.0, 2.0, 3.0]
    del a
    gc.collect()
    assert len(store.objects()) == 0


def test_release_drops_the_pin_unless_something_uses_it(store):
    ref = store.put(np.arange(4.0))
    v = store.fetch(ref)
    a = np.asarray(v)
    with pytest.raises(BufferError, match="1 array"):
        v.release()
    del a
    v.release()
    assert v.released and pinned_by(store, ref) == []
    with pytest.raises(sealstore.InvalidArgument, match="released"):
        np.asarray(v)
    with pytest.raises(sealstore.InvalidArgument, match="released"):
        v.shape
    with store.fetch(ref) as w:
        assert pinned_by(store, ref) == [1]
    assert w.released and pinned_by(store, ref) == []


def test_dlpack_gives_the_same_bytes_and_keeps_its_own_pin(store):
    ref = store.put(np.arange(12, dtype=np.int32).reshape(3, 4))
    v = store.fetch(ref)
    assert v.__dlpack_device__() == (1, 0)
    t = np.from_dlpack(v)
    assert t.dtype == np.int32 and t.shape == (3, 4)
    assert t.ctypes.data == np.asarray(v).ctypes.data
    assert not t.flags.writeable
    del v
    gc.collect()
    assert pinned_by(store, ref) == [1]
    assert t[2, 3] == 11
    del t
    gc.collect()
    assert pinned_by(store, ref) == []


def test_an_unconsumed_dlpack_capsule_releases_its_pin(store):
    ref = store.put(np.zeros(3))
    cap = store.fetch(ref).__dlpack__(stream=None)
    gc.collect()
    assert pinned_by(store, ref) == [1]
    del cap
    gc.collect()
    assert pinned_by(store, ref) == []


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32),
                ("ndim", ctypes.c_int32), ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", DELETER)]


def test_a_consumer_may_call_the_dlpack_deleter_from_another_thread_without_the_gil(store):
    ref = store.put(np.arange(6, dtype=np.float32).reshape(2, 3))
    cap = store.fetch(ref).__dlpack__()
    api = ctypes.pythonapi
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
    ptr = api.PyCapsule_GetPointer(cap, b"dltensor")
    managed = ctypes.cast(ptr, ctypes.POINTER(DLManagedTensor))
    t = managed.contents.dl_tensor
    assert (t.ndim, t.code, t.bits, t.lanes) == (2, 2, 32, 1)
    assert [t.shape[0], t.shape[1]] == [2, 3] and [t.strides[0], t.strides[1]] == [3, 1]
    assert api.PyCapsule_SetName(cap, b"used_dltensor") == 0  # consumed: the deleter is ours to call
    del cap
    gc.collect()
    assert pinned_by(store, ref) == [1]
    # A ctypes foreign call releases the GIL, and this runs on another thread.
    deleter = ctypes.cast(managed.contents.deleter, ctypes.c_void_p).value
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(deleter)
    th = threading.Thread(target=call, args=(ptr,))
    th.start()
    th.join()
    assert pinned_by(store, ref) == []


def test_dlpack_exports_every_element_type_numpy_reads(store):
    for dtype in ["int8", "int16", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]:
        a = np.arange(5, dtype=dtype)
        np.testing.assert_array_equal(np.from_dlpack(store.fetch(store.put(a))), a)
