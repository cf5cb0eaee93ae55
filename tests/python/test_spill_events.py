"""Spilling and seal events from Python."""
import multiprocessing as mp
import os

import numpy as np
import pytest

import sealstore


def test_a_spilled_array_comes_back_as_the_same_view(segment_name, tmp_path):
    s = sealstore.Store.create(segment_name, capacity=4 << 20, spill_directory=str(tmp_path / "spill"))
    with s:
        refs = [s.put(np.full((256, 1024), k, dtype=np.float32)) for k in range(8)]  # 8 MiB into 4
        info = s.info()
        assert info.spills >= 4 and info.spilled_objects >= 4
        assert info.spill_directory.startswith(str(tmp_path / "spill"))
        places = {o.ref: o.place for o in s.objects()}
        assert sorted(set(places.values())) == ["segment", "spill"]
        for k, r in enumerate(refs):
            a = np.asarray(s.fetch(r))
            assert a.shape == (256, 1024) and a.dtype == np.float32
            assert float(a[17, 99]) == k
            del a
        assert s.info().restores >= 4


def test_spill_now_and_its_errors(segment_name, tmp_path):
    with sealstore.Store.create(segment_name, capacity=1 << 20) as plain:
        r = plain.put(b"x" * 100)
        with pytest.raises(sealstore.InvalidArgument, match="does not spill"):
            plain.spill(r)
    sealstore.Store.remove(segment_name)
    with pytest.raises(sealstore.InvalidArgument, match="watermarks"):
        sealstore.Store.create(segment_name, spill_directory=str(tmp_path), spill_high_water=0.5, spill_low_water=0.9)
    with sealstore.Store.create(segment_name, capacity=1 << 20, spill_directory=str(tmp_path)) as s:
        r = s.put("hello")
        assert s.spill(r) is True
        assert s.spill(r) is False
        assert s.objects()[0].place == "spill"
        assert s.materialize(r) == "hello"
        assert s.objects()[0].spill_file is True


def _seal_some(name, n):
    with sealstore.Store.attach(name) as t:
        for k in range(n):
            t.put(k)


def test_a_subscriber_hears_another_processes_seals(segment_name):
    with sealstore.Store.create(segment_name, capacity=1 << 20) as s:
        sub = s.subscribe()
        assert s.info().subscribers == 1
        assert sub.next(timeout=0) is None
        ctx = mp.get_context("spawn")
        p = ctx.Process(target=_seal_some, args=(segment_name, 20))
        p.start()
        got = []
        for ev in sub:
            got.append(s.materialize(ev.ref))
            assert ev.missed == 0 and ev.type == "i64" and ev.size == 8
            assert ev.sealed_by_pid == p.pid
            if len(got) == 20:
                break
        p.join()
        assert got == list(range(20))
        assert sub.position >= 20 and sub.missed == 0
        sub.close()
        assert s.info().subscribers == 0
