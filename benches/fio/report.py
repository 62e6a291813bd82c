#!/usr/bin/env python3
"""Table of benches/fio/run: reads a results directory and prints one markdown table.

Layout read (written by benches/fio/run):
  RESULTS/run<R>/<target>/<job>.json      raw fio JSON (--output-format=json)
  RESULTS/run<R>/<target>/metadata.json   benches/fio/metadata.py output
  RESULTS/run<R>/<target>/FAILED          present when the target could not be set up
Each cell shows the mean over runs and, when there are several, every run's value in brackets.
Ratios (daxfs / tmpfs, daxfs / passthrough_hp) use the means of the same invocation.
"""
import json
import os
import statistics
import sys

TARGETS = [
    "tmpfs",
    "dax-always",
    "dax-never",
    "dax-always-uring",
    "dax-never-uring",
    "dax-default",
    "passthrough_hp",
    "passthrough_hp-uring",
]
DAXFS = ["dax-always", "dax-never", "dax-always-uring", "dax-never-uring", "dax-default"]
LABEL = {
    "tmpfs": "tmpfs",
    "dax-always": "daxfs dax=always",
    "dax-never": "daxfs dax=never",
    "dax-always-uring": "daxfs dax=always,io_uring",
    "dax-never-uring": "daxfs dax=never,io_uring",
    "dax-default": "daxfs (no options)",
    "passthrough_hp": "passthrough_hp",
    "passthrough_hp-uring": "passthrough_hp -o io_uring",
}
SHORT = {
    "dax-always": "always",
    "dax-never": "never",
    "dax-always-uring": "always,io_uring",
    "dax-never-uring": "never,io_uring",
    "dax-default": "no options",
}
# (row label, file, fio direction or metadata key, unit)
ROWS = [
    ("seq read 1M", "seqread", "read", "MB/s"),
    ("seq write 1M", "seqwrite", "write", "MB/s"),
    ("4k randread, 1 job", "randread1", "read", "IOPS"),
    ("4k randread, 2 jobs", "randread2", "read", "IOPS"),
    ("4k randwrite, 1 job", "randwrite1", "write", "IOPS"),
    ("4k randwrite, 2 jobs", "randwrite2", "write", "IOPS"),
    ("create (10k empty files)", "metadata", "create_ops", "ops/s"),
    ("stat", "metadata", "stat_ops", "ops/s"),
    ("unlink", "metadata", "unlink_ops", "ops/s"),
]


def value(path, key, unit):
    """One figure from one result file, or None when missing/unreadable."""
    try:
        with open(path) as f:
            text = f.read()
        # fio may print warnings before the JSON object.
        data = json.loads(text[text.index("{"):])
    except (OSError, ValueError):
        return None
    if unit == "ops/s":
        return data.get(key)
    jobs = data.get("jobs") or []
    if not jobs:
        return None
    if any(j.get("error", 0) for j in jobs):
        return None
    d = [j[key] for j in jobs]  # group_reporting gives one entry; sum in case it does not
    if unit == "MB/s":
        return sum(x["bw_bytes"] for x in d) / 1e6
    return sum(x["iops"] for x in d)


def fmt(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return "{:,.0f}".format(x)
    return "{:.1f}".format(x)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "{:.2f}x".format(a / b)


def main():
    if len(sys.argv) != 2:
        print("usage: report.py RESULTS_DIR", file=sys.stderr)
        return 2
    res = sys.argv[1]
    runs = sorted(
        (d for d in os.listdir(res) if d.startswith("run") and d[3:].isdigit()),
        key=lambda d: int(d[3:]),
    )
    present = [t for t in TARGETS if any(os.path.isdir(os.path.join(res, r, t)) for r in runs)]
    cols = [LABEL[t] for t in present]
    ratio_cols = []
    for d in DAXFS:
        for base in ("tmpfs", "passthrough_hp"):
            if d in present and base in present:
                ratio_cols.append((d, base))
    present_dax = [d for d in DAXFS if d in present]
    best_cols = [b for b in ("passthrough_hp", "passthrough_hp-uring") if b in present and present_dax]
    hdr = ["job", "unit"] + cols
    hdr += ["{} / {}".format(LABEL[d].replace("daxfs ", ""), base) for d, base in ratio_cols]
    hdr += ["best daxfs / {} (mode)".format(LABEL[b]) for b in best_cols]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    nfiles = None
    for r in runs:
        for t in present:
            try:
                with open(os.path.join(res, r, t, "metadata.json")) as f:
                    nfiles = nfiles or json.load(f).get("files")
            except (OSError, ValueError):
                pass
    for label, job, key, unit in ROWS:
        if key == "create_ops" and nfiles:
            label = "create ({:,} empty files)".format(nfiles)
        means = {}
        cells = []
        for t in present:
            vals = []
            for r in runs:
                d = os.path.join(res, r, t)
                if not os.path.isdir(d):
                    continue
                vals.append(value(os.path.join(d, job + ".json"), key, unit))
            got = [v for v in vals if v is not None]
            m = statistics.mean(got) if got else None
            means[t] = m
            cell = fmt(m)
            if len(vals) > 1 and got:
                cell += " (" + ", ".join(fmt(v) for v in vals) + ")"
            cells.append(cell)
        row = [label, unit] + cells
        row += [ratio(means.get(d), means.get(base)) for d, base in ratio_cols]
        cand = [(means[d], d) for d in present_dax if means.get(d) is not None]
        for b in best_cols:
            if cand:
                best, mode = max(cand)
                row.append("{} ({})".format(ratio(best, means.get(b)), SHORT[mode]))
            else:
                row.append("n/a")
        lines.append("| " + " | ".join(row) + " |")
    failed = []
    for r in runs:
        for t in present:
            f = os.path.join(res, r, t, "FAILED")
            if os.path.exists(f):
                with open(f) as fh:
                    failed.append("{} {}: {}".format(r, LABEL[t], fh.read().strip()))
    print("\n".join(lines))
    if len(runs) > 1:
        print("\nCells: mean of {} runs (each run's value in brackets).".format(len(runs)))
    for f in failed:
        print("\nFAILED " + f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
