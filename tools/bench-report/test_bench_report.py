"""Tests of bench-report's reading of runs, target verdicts and comparisons."""
import importlib.machinery
import importlib.util
import os
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
_loader = importlib.machinery.SourceFileLoader("bench_report", os.path.join(HERE, "bench-report"))
_spec = importlib.util.spec_from_loader("bench_report", _loader)
br = importlib.util.module_from_spec(_spec)
_loader.exec_module(br)


def agg(name, **counters):
    """The median aggregate of one benchmark, as sealstore_bench writes it."""
    d = {"name": name + "/manual_time_median", "run_name": name + "/manual_time", "run_type": "aggregate",
         "aggregate_name": "median", "repetitions": 5}
    d.update(counters)
    return d


def run_of(*benchmarks):
    return br.Run({"context": {"date": "today"}, "benchmarks": list(benchmarks)})


def verdict(run, text):
    for issue, target, v in br.evaluate(run):
        if text in target:
            return v
    raise AssertionError("no target containing " + text)


class ReadingRuns(unittest.TestCase):
    def test_medians_are_taken_from_aggregates_and_other_statistics_ignored(self):
        r = run_of(dict(agg("put/1M", ns_per_op=10.0), aggregate_name="mean"), agg("put/1M", ns_per_op=7.0))
        self.assertEqual(r.get("put/1M", "ns_per_op"), 7.0)
        self.assertEqual(r.repetitions, 5)

    def test_repetitions_without_aggregates_are_reduced_to_their_median(self):
        reps = [{"run_name": "fetch/size/64/manual_time", "run_type": "iteration", "ns_per_op": v}
                for v in (30.0, 90.0, 31.0)]
        r = run_of(*reps)
        self.assertEqual(r.get("fetch/size/64", "ns_per_op"), 31.0)
        self.assertEqual(r.repetitions, 3)

    def test_fixed_iteration_counts_are_not_part_of_the_name(self):
        r = run_of({"run_name": "transfer/1G/iterations:5/manual_time", "run_type": "iteration", "ns_per_op": 5.0})
        self.assertEqual(r.get("transfer/1G", "ns_per_op"), 5.0)

    def test_failed_benchmarks_are_reported_not_used(self):
        r = run_of({"run_name": "put/1M/manual_time", "error_occurred": True, "error_message": "boom"})
        self.assertIsNone(r.get("put/1M"))
        self.assertEqual(r.errors, {"put/1M": "boom"})

    def test_families_are_ordered_by_size(self):
        r = run_of(agg("put/1M", ns_per_op=1.0), agg("put/64", ns_per_op=1.0), agg("put/4K", ns_per_op=1.0))
        self.assertEqual([s for s, _ in r.family("put")], [64, 4096, 1 << 20])

    def test_a_later_run_replaces_figures_of_the_same_name(self):
        first = run_of(agg("put/1M", ns_per_op=10.0), agg("put_fresh/plain/1M", bw_ratio=0.5))
        first.merge(run_of(agg("put_fresh/plain/1M", bw_ratio=0.95), agg("put_fresh/plain/4M", bw_ratio=0.97)))
        self.assertEqual(first.get("put_fresh/plain/1M", "bw_ratio"), 0.95)
        self.assertEqual(first.get("put/1M", "ns_per_op"), 10.0)
        self.assertEqual([s for s, _ in first.family("put_fresh/plain")], [1 << 20, 4 << 20])

    def test_sizes_parse_and_print(self):
        self.assertEqual(br.parse_size("256M"), 256 << 20)
        self.assertEqual(br.size_label(1 << 30), "1 GiB")
        self.assertEqual(br.size_label(64), "64 B")


class Verdicts(unittest.TestCase):
    def test_a_ratio_below_its_floor_is_missed_with_the_shortfall(self):
        r = run_of(agg("put/1M", bw_ratio=0.85), agg("put/64M", bw_ratio=0.95), agg("put/4K", bw_ratio=0.1))
        v = verdict(r, "put of ≥ 1 MiB into space written before")
        self.assertEqual(v.status, "missed")
        self.assertEqual(v.figure, "0.85x")
        self.assertIn("5.6% short", v.detail)
        self.assertIn("1M", v.detail)

    def test_small_puts_do_not_count_against_the_one_mebibyte_target(self):
        r = run_of(agg("put/1M", bw_ratio=0.95), agg("put/4K", bw_ratio=0.1))
        self.assertEqual(verdict(r, "put of ≥ 1 MiB into space written before").status, "met")

    def test_fetch_over_the_limit_names_the_slowest(self):
        r = run_of(agg("fetch/size/64", ns_per_op=40.0), agg("fetch/size/1G", ns_per_op=130.0))
        v = verdict(r, "fetch + release ≤ 100 ns median")
        self.assertEqual(v.status, "missed")
        self.assertIn("30.0% over", v.detail)
        self.assertIn("size/1G", v.detail)

    def test_scaling_is_the_aggregate_over_one_alone(self):
        r = run_of(agg("small_ops/two_processes", bw_ratio=1.65, items_per_second=9e6),
                   agg("small_ops/two_threads", bw_ratio=1.9))
        v = verdict(r, "2 processes at once")
        self.assertEqual((v.status, v.figure), ("missed", "1.65x"))
        self.assertIn("9", v.detail)
        self.assertEqual(verdict(r, "2 threads of one process").status, "met")
        self.assertEqual(verdict(r, "4 processes on 2 cores").status, "not measured")

    def test_materialize_into_is_judged_against_malloc_plus_memcpy_of_the_same_run(self):
        r = run_of(agg("materialize/64", bw_ratio=0.6, baseline_ns_per_op=12.0),
                   agg("materialize_into/64", ns_per_op=30.0, bw_ratio=0.3))
        v = verdict(r, "materialize_into of 64 bytes")
        self.assertEqual((v.status, v.figure), ("missed", "0.4x"))
        self.assertIn("0.3x against a bare memcpy", v.detail)

    def test_flatness_is_slowest_over_fastest(self):
        r = run_of(agg("fetch/size/64", ns_per_op=40.0), agg("fetch/size/1G", ns_per_op=70.0))
        v = verdict(r, "fetch flat from 64 B")
        self.assertEqual((v.status, v.figure), ("missed", "1.75x"))
        self.assertIn("64 B to 1 GiB measured", v.detail)

    def test_every_materialize_size_below_the_floor_is_listed(self):
        r = run_of(agg("materialize/64", bw_ratio=0.2), agg("materialize/1K", bw_ratio=0.5),
                   agg("materialize/1M", bw_ratio=0.99))
        v = verdict(r, "materialize ≥ 0.9x malloc")
        self.assertEqual(v.status, "missed")
        self.assertIn("64 0.2x", v.detail)
        self.assertIn("1K 0.5x", v.detail)
        self.assertNotIn("1M", v.detail)

    def test_absent_figures_are_not_measured_rather_than_met(self):
        r = run_of(agg("fetch/size/64", ns_per_op=40.0))
        self.assertEqual(verdict(r, "put of 64 MiB").status, "not measured")
        self.assertEqual(verdict(r, "empty task round trip").status, "not measured")

    def test_pool_targets_are_judged_once_the_pool_benchmarks_exist(self):
        r = run_of(agg("baseline/futex_round_trip", ns_per_op=40000.0), agg("pool/empty_task", ns_per_op=70000.0),
                   agg("pool/ref_task/64M", ns_per_op=1000000.0),
                   agg("transfer/64M", baseline_ns_per_op=50000000.0))
        self.assertEqual(verdict(r, "empty task round trip").status, "missed")
        self.assertEqual(verdict(r, "64 MiB ref").status, "missed")  # 50x, not 100x

    def test_seal_to_wake_uses_the_medians(self):
        r = run_of(agg("seal_to_wake/sleeping", median_time_ratio=1.1, time_ratio=3.0, median_ns=22000.0,
                       baseline_median_ns=20000.0))
        self.assertEqual(verdict(r, "seal-to-wake ≤ 1.2x").status, "met")

    def test_the_spin_option_is_judged_on_its_median(self):
        r = run_of(agg("seal_to_wake/spinning", median_ns=150.0, baseline_median_ns=110.0))
        v = verdict(r, "bounded spin")
        self.assertEqual(v.status, "met")
        self.assertIn("110 ns", v.detail)
        r = run_of(agg("seal_to_wake/spinning", median_ns=1500.0))
        self.assertEqual(verdict(r, "bounded spin").status, "missed")


    def test_spill_and_restore_are_judged_on_bandwidth_against_the_file(self):
        r = run_of(agg("spill/write/64M", bw_ratio=0.85, ns_per_op=3e7, baseline_ns_per_op=2.6e7),
                   agg("spill/restore/64M", bw_ratio=0.7, ns_per_op=1e7, baseline_ns_per_op=7e6))
        self.assertEqual(verdict(r, "spill of a 64 MiB object").status, "met")
        self.assertEqual(verdict(r, "restore (fetch) of a spilled").status, "missed")

    def test_the_4x_workload_needs_every_object_intact(self):
        r = run_of(agg("spill/workload_4x", intact=256.0, objects=256.0, spills=500.0, restores=480.0))
        v = verdict(r, "a workload 4x the segment")
        self.assertEqual(v.status, "met")
        self.assertIn("500 spills", v.detail)
        r = run_of(agg("spill/workload_4x", intact=255.0, objects=256.0))
        self.assertEqual(verdict(r, "a workload 4x the segment").status, "missed")
        self.assertEqual(verdict(run_of(), "a workload 4x the segment").status, "not measured")


class Comparing(unittest.TestCase):
    def test_the_change_per_figure_is_signed_and_worded(self):
        old = run_of(agg("put/1M", ns_per_op=100.0), agg("gone/1", ns_per_op=1.0))
        new = run_of(agg("put/1M", ns_per_op=125.0))
        lines = "\n".join(br.compare_lines(new, old))
        self.assertIn("+25.0% (slower)", lines)
        self.assertIn("Only in the older run: `gone/1`", lines)

    def test_the_readme_block_is_replaced_and_nothing_else(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "README.md")
            with open(path, "w") as f:
                f.write("a\n%s\nold\n%s\nb\n" % (br.README_BEGIN, br.README_END))
            br.update_readme(path, run_of(agg("small_ops/one_process", items_per_second=3e6)), "docs/benchmarks.md")
            with open(path) as f:
                text = f.read()
        self.assertTrue(text.startswith("a\n"))
        self.assertTrue(text.endswith("\nb\n"))
        self.assertNotIn("old", text)
        self.assertIn("3 M/s", text)


if __name__ == "__main__":
    unittest.main()
