"""Values in and out: every arithmetic dtype and rank, scalars, bytes and
text, with the stored types C++ reads; and the inputs sealstore refuses."""

import numpy as np
import pytest

import sealstore

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
SHAPES = [(7,), (3, 4), (2, 3, 4), (2, 1, 3, 2), (0,), (4, 0)]


def sample(dtype, shape):
    n = int(np.prod(shape))
    return (np.arange(n) % 5 == 1).reshape(shape) if dtype == "bool" else np.arange(n, dtype=dtype).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_an_array_comes_back_with_its_dtype_shape_and_values(store, dtype, shape):
    a = sample(dtype, shape)
    ref = store.put(a)
    v = store.fetch(ref)
    b = np.asarray(v)
    assert b.dtype == np.dtype(dtype)
    assert b.shape == shape
    np.testing.assert_array_equal(b, a)
    assert v.kind == "ndarray" and v.shape == shape and v.dtype == np.dtype(dtype)
    assert v.nbytes == a.nbytes
    m = store.materialize(ref)
    assert m.dtype == np.dtype(dtype) and m.shape == shape and m.flags.writeable
    np.testing.assert_array_equal(m, a)


def test_the_stored_type_is_the_one_cpp_names(store):
    v = store.fetch(store.put(np.zeros((10, 20))))
    assert v.type == "f64[10x20]"
    assert store.fetch(store.put(np.zeros(5, dtype=np.int32), kind="array")).type == "i32[]"


def test_a_view_is_read_where_it_lies_not_copied(store):
    v = store.fetch(store.put(np.arange(100.0)))
    a, b = np.asarray(v), np.asarray(v)
    assert a.ctypes.data == b.ctypes.data
    assert np.shares_memory(a, b)
    assert memoryview(v).readonly


def test_kind_array_stores_a_vector_that_reads_back_one_dimensional(store):
    ref = store.put(np.array([3, 1, 4], dtype=np.int32), kind="array")
    v = store.fetch(ref)
    assert v.kind == "array" and v.shape == (3,) and v.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(v), [3, 1, 4])


@pytest.mark.parametrize(
    "value, expected, kind",
    [
        (42, 42, "scalar"),
        (-(2**63), -(2**63), "scalar"),
        (2.5, 2.5, "scalar"),
        (True, True, "scalar"),
        (np.float32(1.5), 1.5, "scalar"),
        (np.uint16(65535), 65535, "scalar"),
        ("héllo, wörld", "héllo, wörld", "string"),
        ("", "", "string"),
        (b"\x00raw\xff", b"\x00raw\xff", "bytes"),
        (bytearray(b"abc"), b"abc", "bytes"),
        (memoryview(b"xyz"), b"xyz", "bytes"),
    ],
)
def test_python_values_round_trip(store, value, expected, kind):
    ref = store.put(value)
    got = store.materialize(ref)
    assert got == expected and type(got) is type(expected)
    assert store.fetch(ref).kind == kind


def test_scalars_view_as_zero_dimensional_arrays(store):
    a = np.asarray(store.fetch(store.put(7)))
    assert a.shape == () and a.dtype == np.int64 and a[()] == 7
    assert np.asarray(store.fetch(store.put(True))).dtype == np.bool_


def test_bytes_and_text_view_as_uint8(store):
    v = store.fetch(store.put("abc"))
    assert v.dtype == np.uint8 and v.shape == (3,)
    assert bytes(v) == b"abc"
    assert np.asarray(v).tolist() == [97, 98, 99]


def test_kind_bytes_stores_an_arrays_raw_bytes(store):
    a = np.arange(4, dtype=np.uint16)
    v = store.fetch(store.put(a, kind="bytes"))
    assert v.kind == "bytes" and bytes(v) == a.tobytes()


def test_strided_and_byteswapped_arrays_are_stored_as_their_values(store):
    a = np.arange(24, dtype=np.float64).reshape(4, 6)[::2, 1::2]
    np.testing.assert_array_equal(np.asarray(store.fetch(store.put(a))), a)
    f = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    np.testing.assert_array_equal(np.asarray(store.fetch(store.put(f))), f)
    s = np.arange(5, dtype=">i4")
    b = np.asarray(store.fetch(store.put(s)))
    assert b.dtype == np.dtype("int32") and b.dtype.isnative
    np.testing.assert_array_equal(b, s)


def test_a_materialized_copy_is_independent(store):
    ref = store.put(np.zeros(4))
    m = store.materialize(ref)
    m[0] = 9
    assert np.asarray(store.fetch(ref))[0] == 0
    assert not np.shares_memory(m, np.asarray(store.fetch(ref)))


def test_sealing_copies_later_changes_do_not_leak_in(store):
    a = np.zeros(3)
    ref = store.put(a)
    a[0] = 1
    assert np.asarray(store.fetch(ref))[0] == 0


@pytest.mark.parametrize("dtype", ["float16", "complex128", "object", "U3", "datetime64[s]", "longdouble"])
def test_a_dtype_without_a_cpp_element_type_is_refused(store, dtype):
    with pytest.raises(TypeError, match="dtype"):
        store.put(np.zeros(2, dtype=dtype))


def test_a_structured_dtype_is_refused(store):
    with pytest.raises(TypeError, match="dtype"):
        store.put(np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]))


def test_an_unsupported_python_object_is_refused(store):
    with pytest.raises(TypeError, match="dict"):
        store.put({"a": 1})
    with pytest.raises(TypeError, match="list"):
        store.put([1, 2])


def test_an_int_beyond_int64_is_refused(store):
    with pytest.raises(OverflowError):
        store.put(2**63)


def test_rank_above_four_fails_with_invalid_argument(store):
    with pytest.raises(sealstore.InvalidArgument, match=r"1 to 4 dimensions; got shape \(1, 1, 1, 1, 1\)"):
        store.put(np.zeros((1, 1, 1, 1, 1)))


def test_kind_array_needs_one_dimension(store):
    with pytest.raises(sealstore.InvalidArgument, match="one dimension"):
        store.put(np.zeros((2, 2)), kind="array")
    with pytest.raises(TypeError, match="one-dimensional numpy array"):
        store.put(b"abc", kind="array")


def test_an_unknown_kind_fails_with_invalid_argument(store):
    with pytest.raises(sealstore.InvalidArgument, match="kind must be"):
        store.put(np.zeros(2), kind="matrix")


def test_a_value_larger_than_the_segment_fails_with_out_of_memory(store):
    with pytest.raises(sealstore.OutOfMemory):
        store.put(np.zeros(2 << 20))  # 16 MiB into 8
    assert len(store.objects()) == 0
