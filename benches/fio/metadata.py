#!/usr/bin/env python3
"""Metadata job of benches/fio/run: create, stat and unlink N empty files in one directory.

Each phase is timed on its own (time.perf_counter) and reported as operations per second in a JSON
object on stdout (or --out FILE):
  create: os.open(O_CREAT|O_EXCL|O_WRONLY) + os.close   (one file per op)
  stat:   os.stat                                        (same names, same order)
  unlink: os.unlink
Single-threaded on purpose: it measures the round trip of one request, not parallelism. The
python call overhead (~1 us per op) is negligible next to a FUSE round trip but does cap tmpfs.
"""
import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", help="empty-or-new directory on the filesystem under test")
    ap.add_argument("--files", type=int, default=10000, help="number of files (default 10000)")
    ap.add_argument("--out", help="write the JSON result here instead of stdout")
    args = ap.parse_args()
    if args.files <= 0:
        print("metadata.py: --files must be positive", file=sys.stderr)
        return 2
    os.makedirs(args.directory, exist_ok=True)
    names = [os.path.join(args.directory, "f%06d" % i) for i in range(args.files)]
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY

    t0 = time.perf_counter()
    for n in names:
        os.close(os.open(n, flags, 0o644))
    t1 = time.perf_counter()
    for n in names:
        st = os.stat(n)
        if st.st_size != 0:
            print("metadata.py: %s has size %d, expected 0" % (n, st.st_size), file=sys.stderr)
            return 1
    t2 = time.perf_counter()
    for n in names:
        os.unlink(n)
    t3 = time.perf_counter()
    left = os.listdir(args.directory)
    if left:
        print("metadata.py: %d entries left after unlink" % len(left), file=sys.stderr)
        return 1
    os.rmdir(args.directory)

    res = {
        "files": args.files,
        "create_ops": args.files / (t1 - t0),
        "stat_ops": args.files / (t2 - t1),
        "unlink_ops": args.files / (t3 - t2),
        "seconds": {"create": t1 - t0, "stat": t2 - t1, "unlink": t3 - t2},
    }
    text = json.dumps(res, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
