#!/usr/bin/env python3
"""Renders a run of the suite with bench-report and checks the result.

Usage: check_report.py BENCH_REPORT RUN.json OUTDIR
Exits 77 (skipped) when gnuplot is not installed.
"""
import json
import os
import re
import shutil
import subprocess
import sys


def main():
    tool, run_json, outdir = sys.argv[1:4]
    if shutil.which("gnuplot") is None:
        print("gnuplot is not installed (tools/deps.sh gnuplot-nox): skipped")
        return 77
    os.makedirs(outdir, exist_ok=True)
    out = os.path.join(outdir, "benchmarks.md")
    readme = os.path.join(outdir, "README.md")
    with open(readme, "w") as f:
        f.write("# x\n\n<!-- bench-headline:begin -->\nold\n<!-- bench-headline:end -->\n\nafter\n")
    subprocess.run([sys.executable, tool, "report", run_json, "--out", out, "--readme", readme], check=True)

    with open(run_json) as f:
        names = {re.sub(r"/(manual_time|iterations:\d+)", "", b["run_name"]) for b in json.load(f)["benchmarks"]}
    with open(out) as f:
        text = f.read()
    failures = []
    for section in ("## The run", "## Headline", "## Targets", "## Plots", "## Every figure", "## Worker pool"):
        if section not in text:
            failures.append("missing section " + section)
    for n in sorted(names):
        if "`%s`" % n not in text:
            failures.append("benchmark %s is not in the figures table" % n)
    pngs = re.findall(r"\]\(([^)]+\.png)\)", text)
    if len(pngs) < 4:
        failures.append("expected at least 4 plots, found %d" % len(pngs))
    for p in pngs:
        with open(os.path.join(outdir, p), "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                failures.append(p + " is not a PNG")
    if re.search(r"\| (met|missed|not measured) \|", text) is None and "**met**" not in text:
        failures.append("no target verdicts")
    with open(readme) as f:
        r = f.read()
    if "old" in r or "fetch + release" not in r or not r.rstrip().endswith("after"):
        failures.append("the README headline block was not replaced in place")
    for f in failures:
        print("FAIL: " + f)
    print("%d checks failed" % len(failures) if failures else "report OK: %d benchmarks, %d plots" %
          (len(names), len(pngs)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
