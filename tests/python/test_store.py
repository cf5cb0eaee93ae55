"""The Store's calls, their errors (one class per code, with the C++
message), refs, names and writers."""

import pickle

import numpy as np
import pytest

import sealstore
from conftest import object_info, unique_name

CODES = ["NotFound", "AlreadySealed", "NotSealed", "Timeout", "OutOfMemory", "TypeMismatch", "InvalidArgument",
         "SegmentMissing", "IncompatibleSegment", "Corrupt", "PermissionDenied", "WorkerFailed", "AlreadyExists"]


def test_every_code_has_a_class_under_error():
    for code in CODES:
        cls = getattr(sealstore, code)
        assert issubclass(cls, sealstore.Error) and cls.code == code and cls.__module__ == "sealstore"
    assert issubclass(sealstore.NotFound, LookupError)
    assert issubclass(sealstore.Timeout, TimeoutError)
    assert issubclass(sealstore.InvalidArgument, ValueError)
    assert issubclass(sealstore.SegmentMissing, FileNotFoundError)
    assert issubclass(sealstore.AlreadyExists, FileExistsError)


def test_create_attach_remove(segment_name):
    assert not sealstore.Store.exists(segment_name)
    with sealstore.Store.create(segment_name, capacity=4 << 20) as s:
        assert s.name == segment_name and s.myid == 1
        assert sealstore.Store.exists(segment_name) and segment_name in sealstore.Store.list()
        ref = s.put(np.arange(3.0))
        other = sealstore.Store.attach(segment_name)
        assert other.myid != 1
        np.testing.assert_array_equal(np.asarray(other.fetch(ref)), [0, 1, 2])
        other.close()
    assert sealstore.Store.remove(segment_name)
    assert not sealstore.Store.remove(segment_name)


def test_create_of_an_existing_segment_fails_with_already_exists(store):
    with pytest.raises(sealstore.AlreadyExists, match=store.name):
        sealstore.Store.create(store.name, capacity=1 << 20)


def test_attach_of_a_missing_segment_fails_with_segment_missing():
    name = unique_name("missing")
    with pytest.raises(sealstore.SegmentMissing, match=name) as e:
        sealstore.Store.attach(name)
    assert not str(e.value).startswith("SegmentMissing:")  # the class names the code; the text the segment


def test_an_invalid_segment_name_fails_with_invalid_argument():
    with pytest.raises(sealstore.InvalidArgument):
        sealstore.Store.create("no/slashes", capacity=1 << 20)


def test_a_closed_store_refuses_every_call(store):
    ref = store.put(1)
    store.close()
    assert store.closed
    with pytest.raises(sealstore.InvalidArgument, match="closed"):
        store.fetch(ref)
    with pytest.raises(sealstore.InvalidArgument, match="closed"):
        store.put(1)


def test_a_second_put_into_a_ref_fails_with_already_sealed_and_changes_nothing(store):
    r = store.make_ref()
    assert store.try_fetch(r) is None
    store.put(r, "first")
    with pytest.raises(sealstore.AlreadySealed, match=str(r).replace("(", r"\(").replace(")", r"\)")):
        store.put(r, "second")
    assert store.materialize(r) == "first"


def test_a_failed_ref_fails_every_fetch_with_the_reason(store):
    r = store.make_ref()
    store.fail(r, "the input was bad")
    with pytest.raises(sealstore.WorkerFailed, match="the input was bad"):
        store.fetch(r, timeout=5)
    with pytest.raises(sealstore.AlreadySealed):
        store.fail(r, "again")


def test_erase_then_fetch_fails_with_not_found(store):
    ref = store.put(b"x")
    assert store.contains(ref) and ref in store
    store.erase(ref)
    assert not store.contains(ref)
    with pytest.raises(sealstore.NotFound):
        store.fetch(ref)
    with pytest.raises(sealstore.NotFound):
        store.erase(ref)


def test_erasing_a_ref_being_written_fails_with_not_sealed(store):
    w = store.create_writer(nbytes=16)
    with pytest.raises(sealstore.NotSealed):
        store.erase(w.ref)
    w.abort()


def test_the_null_ref_fails_with_invalid_argument(store):
    null = sealstore.RemoteRef()
    assert null.is_null
    with pytest.raises(sealstore.InvalidArgument):
        store.fetch(null)


def test_names_bind_lookup_unbind(store):
    ref = store.put(np.ones(2))
    store.bind("models/m1", ref)
    assert store.lookup("models/m1") == ref
    assert store.unbind("models/m1")
    assert store.lookup("models/m1") is None
    assert not store.unbind("models/m1")
    with pytest.raises(sealstore.InvalidArgument):
        store.bind("bad name!", ref)
    store.erase(ref)
    with pytest.raises(sealstore.NotFound):
        store.bind("gone", ref)


def test_a_ref_prints_parses_compares_hashes_and_pickles(store):
    ref = store.put(1)
    text = str(ref)
    assert text.startswith("RemoteRef(where=1, whence=1, id=")
    back = sealstore.RemoteRef.parse(text)
    assert back == ref and hash(back) == hash(ref) and back.where == 1 and back.whence == 1
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert ref != store.put(1)
    assert ref != text
    assert len({ref, back}) == 1


def test_parse_of_malformed_text_fails_with_invalid_argument():
    with pytest.raises(sealstore.InvalidArgument, match="nonsense"):
        sealstore.RemoteRef.parse("nonsense")


def test_fetch_of_an_unfilled_ref_times_out_with_timeout(store):
    r = store.make_ref()
    with pytest.raises(sealstore.Timeout):
        store.fetch(r, timeout=0)
    with pytest.raises(TimeoutError):
        store.fetch(r, timeout=0.05)


@pytest.mark.parametrize("timeout", [-1, float("nan")])
def test_a_negative_or_nan_timeout_fails_with_invalid_argument(store, timeout):
    with pytest.raises(sealstore.InvalidArgument, match="timeout"):
        store.fetch(store.make_ref(), timeout=timeout)


def test_fetch_many_returns_views_in_order(store):
    refs = [store.put(np.full(3, i)) for i in range(10)]
    views = store.fetch_many(refs)
    assert [int(np.asarray(v)[0]) for v in views] == list(range(10))
    unfilled = store.make_ref()
    with pytest.raises(sealstore.Timeout):
        store.fetch_many(refs + [unfilled], timeout=0.05)


def test_a_writer_fills_in_place_then_seals(store):
    w = store.create_writer(shape=(3, 4), dtype=np.float32)
    assert w.shape == (3, 4) and w.dtype == np.float32 and w.nbytes == 48
    a = np.asarray(w)
    assert a.flags.writeable
    a[:] = np.arange(12).reshape(3, 4)
    del a
    ref = w.seal()
    assert store.contains(ref)
    v = store.fetch(ref)
    assert v.type == "f32[3x4]"
    np.testing.assert_array_equal(np.asarray(v), np.arange(12).reshape(3, 4))


def test_a_writer_refuses_to_seal_while_arrays_of_its_buffer_live(store):
    w = store.create_writer(shape=4, dtype=np.int64)
    a = np.asarray(w)
    a[:] = 7
    with pytest.raises(BufferError, match="delete them first"):
        w.seal()
    with pytest.raises(BufferError):
        w.abort()
    del a
    ref = w.seal()
    assert store.materialize(ref).tolist() == [7, 7, 7, 7]


def test_a_sealed_writer_refuses_further_use(store):
    w = store.create_writer(nbytes=8)
    np.asarray(w)[:] = 1
    w.seal()
    with pytest.raises(sealstore.InvalidArgument, match="sealed or aborted"):
        w.seal()
    with pytest.raises(sealstore.InvalidArgument, match="sealed or aborted"):
        np.asarray(w)


def test_a_writer_fills_a_made_ref_and_waiting_is_over(store):
    r = store.make_ref()
    w = store.create_writer(r, nbytes=3)
    np.asarray(w)[:] = [1, 2, 3]
    assert w.seal() == r
    assert store.materialize(r) == b"\x01\x02\x03"


def test_an_aborted_or_dropped_writer_gives_its_space_back(store):
    r = store.make_ref()
    w = store.create_writer(r, shape=(100,), dtype=np.float64)
    w.abort()
    assert object_info(store, r).state == "unfilled"
    with store.create_writer(shape=(100,), dtype=np.float64) as w2:
        dropped = w2.ref
    assert not store.contains(dropped)
    w3 = store.create_writer(shape=(100,), dtype=np.float64)
    gone = w3.ref
    del w3
    assert not store.contains(gone)


def test_create_writer_argument_errors(store):
    with pytest.raises(sealstore.InvalidArgument, match="shape and dtype, or nbytes"):
        store.create_writer()
    with pytest.raises(sealstore.InvalidArgument, match="both shape and dtype"):
        store.create_writer(shape=(2,))
    with pytest.raises(sealstore.InvalidArgument, match="not both"):
        store.create_writer(shape=(2,), dtype=np.int8, nbytes=2)
    with pytest.raises(TypeError, match="dtype"):
        store.create_writer(shape=(2,), dtype=np.complex64)
    with pytest.raises(sealstore.InvalidArgument, match="kind"):
        store.create_writer(shape=(2,), dtype=np.int8, kind="bytes")
    with pytest.raises(sealstore.InvalidArgument, match="kind"):
        store.create_writer(nbytes=2, kind="array")
    with pytest.raises(sealstore.OutOfMemory):
        store.create_writer(nbytes=64 << 20)


def test_info_processes_objects(store):
    ref = store.put(np.zeros(1000))
    info = store.info()
    assert info.name == store.name and info.capacity >= 8 << 20 and info.objects == 1
    assert [p.id for p in store.processes()] == [1]
    o = object_info(store, ref)
    assert o.state == "sealed" and o.size == 8000 and o.type == "f64[1000]" and o.creator == 1
