#!/usr/bin/env python3
"""benches/poison_mount.py: memory failure at scale on a real mount, by hand (as root).

Usage: benches/poison_mount.py [--bin target/debug/daxfs] [--opts dax=always] [--rounds 50]
Build first: cargo build --profile test -p daxfs-cli (the test profile is optimized).

Times the poison ioctl from the caller (FUSE round trip, the daemon's work, the kernel's
invalidation): one page of a fallocated 1 GiB PMD-mapped file, a whole PMD, the whole GiB (and
its clear); `daxfs poison list` of 1,000 ranges (the CLI, process start included). Baselines in
the same run: DAXFS_IOC_STAT on the same file (a control ioctl that changes nothing) for the
injects, `poison list` of an empty table for the list. Then the daemon's memory (/proc VmRSS and
RssAnon) on a fresh mount before and after 1,000,000 bad pages in 1,000 region ranges, and after
a remount that loads them. Region in /dev/shm (sparse; ~2.2 GiB of it gets written).
"""

import argparse
import fcntl
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

PAGE = 4096
PMD = 2 << 20
GIB = 1 << 30
INJECT = 0x4020DA03
CLEAR = 0x4020DA04
STAT = 0xC048DA01
BY_REGION = 1


def poison_req(flags, offset, length):
    return struct.pack("<IIIIQQ", 1, 32, flags, 0, offset, length)


def ioctl_ns(fd, cmd, arg):
    t = time.perf_counter_ns()
    fcntl.ioctl(fd, cmd, arg)
    return time.perf_counter_ns() - t


def stat_ns(fd):
    buf = bytearray(struct.pack("<II", 1, 72) + bytes(64))
    return ioctl_ns(fd, STAT, buf)


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def daemon_pid(mnt):
    for name in os.listdir("/run/daxfs"):
        if not name.endswith(".mount"):
            continue
        with open(os.path.join("/run/daxfs", name)) as f:
            rec = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
        if rec.get("mountpoint") == mnt:
            return int(rec["pid"])
    sys.exit(f"no daemon registered for {mnt}")


def memory(mnt):
    """VmRSS and RssAnon of the mount's daemon, in KiB."""
    with open(f"/proc/{daemon_pid(mnt)}/status") as f:
        kv = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    return {k: int(kv[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssShmem", "RssFile")}


def us(ns_list):
    s = sorted(ns_list)
    return statistics.median(s) / 1e3, s[len(s) * 9 // 10] / 1e3, s[-1] / 1e3


def report(what, ns_list, base=None):
    med, p90, mx = us(ns_list)
    ratio = f", {med / base:.1f}x the baseline" if base else ""
    print(f"{what}: median {med:.1f} us, p90 {p90:.1f} us, max {mx:.1f} us (n={len(ns_list)}){ratio}")
    return med


def file_injects(a, mnt):
    big = os.path.join(mnt, "big")
    gib = os.path.join(mnt, "gib")
    fd = os.open(big, os.O_CREAT | os.O_RDWR, 0o644)
    os.posix_fallocate(fd, 0, GIB)
    base = report("baseline: DAXFS_IOC_STAT on the file", [stat_ns(fd) for _ in range(a.rounds)])
    # One page of each PMD entry 0..rounds, then the whole PMD entries 256..256+rounds.
    one = [ioctl_ns(fd, INJECT, poison_req(0, k * PMD + 300 * PAGE, PAGE)) for k in range(a.rounds)]
    report("inject one page of a 1 GiB PMD file (target <= 1 ms)", one, base)
    pmd = [ioctl_ns(fd, INJECT, poison_req(0, (256 + k) * PMD, PMD)) for k in range(a.rounds)]
    report("inject a whole PMD (2 MiB)", pmd, base)
    ioctl_ns(fd, CLEAR, poison_req(0, 0, GIB))
    os.close(fd)
    os.unlink(big)
    g = os.open(gib, os.O_CREAT | os.O_RDWR, 0o644)
    inj, clr = [], []
    for _ in range(a.gib_rounds):
        os.posix_fallocate(g, 0, GIB)
        inj.append(ioctl_ns(g, INJECT, poison_req(0, 0, GIB)))
        clr.append(ioctl_ns(g, CLEAR, poison_req(0, 0, GIB)))
    report("inject 1 GiB (262,144 pages, target <= 1 s)", inj, base)
    report("clear 1 GiB", clr, base)
    os.close(g)
    os.unlink(gib)


def list_ns(a, mnt):
    t = time.perf_counter_ns()
    out = run(a.bin, "poison", "list", mnt)
    return time.perf_counter_ns() - t, out


def million(a, region, mnt):
    mem0 = memory(mnt)
    base = [list_ns(a, mnt)[0] for _ in range(a.list_rounds)]
    root = os.open(mnt, os.O_RDONLY)
    first = 65_536
    t = time.perf_counter_ns()
    for i in range(1000):
        fcntl.ioctl(root, INJECT, poison_req(BY_REGION, (first + i * 1500) * PAGE, 1000 * PAGE))
    total = (time.perf_counter_ns() - t) / 1e6
    os.close(root)
    print(f"1,000 region injects of 1,000 pages (1,000,000 bad pages): {total:.0f} ms in all")
    mem1 = memory(mnt)
    runs = [list_ns(a, mnt) for _ in range(a.list_rounds)]
    lines = runs[0][1].splitlines()
    assert len(lines) == 1000, f"poison list shows {len(lines)} lines"
    b = report("baseline: daxfs poison list of an empty table (CLI)", base)
    report("daxfs poison list of 1,000 ranges (CLI)", [r[0] for r in runs], b)
    mem2 = memory(mnt)
    run(a.bin, "umount", mnt)
    mount(a, region, mnt)
    mem3 = memory(mnt)
    assert len(run(a.bin, "poison", "list", mnt).splitlines()) == 1000
    for what, m in [("fresh mount", mem0), ("after 1,000,000 bad pages", mem1),
                    ("after 10 poison lists", mem2), ("remounted with them", mem3)]:
        print(f"daemon memory {what}: VmRSS {m['VmRSS'] / 1024:.1f} MiB, RssAnon "
              f"{m['RssAnon'] / 1024:.1f} MiB, RssShmem {m['RssShmem'] / 1024:.1f} MiB, "
              f"RssFile {m['RssFile'] / 1024:.1f} MiB")
    print(f"VmRSS with 1,000,000 bad pages: {mem1['VmRSS'] / 1024:.1f} MiB (target <= 16 MiB), "
          f"{mem1['VmRSS'] / mem0['VmRSS']:.2f}x the fresh mount's; growth "
          f"{(mem1['VmRSS'] - mem0['VmRSS']) / 1024:.2f} MiB")


def mount(a, region, mnt):
    args = [a.bin, "mount", region, mnt]
    if a.opts:
        args += ["-o", a.opts]
    run(*args)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="target/debug/daxfs")
    p.add_argument("--opts", default="", help="mount options, e.g. dax=never,io_uring")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--gib-rounds", type=int, default=3)
    p.add_argument("--list-rounds", type=int, default=10)
    a = p.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    a.bin = os.path.abspath(a.bin)
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"{a.bin} is missing: cargo build --profile test -p daxfs-cli")
    if "io_uring" in a.opts:
        with open("/sys/module/fuse/parameters/enable_uring", "w") as f:
            f.write("1")
    with tempfile.TemporaryDirectory(prefix="daxfs-bench-", dir="/dev/shm") as work:
        region, mnt = os.path.join(work, "region"), os.path.join(work, "mnt")
        os.mkdir(mnt)
        run(a.bin, "mkfs", region, "--size", "8G")
        print(f"{a.bin}, -o {a.opts or '(defaults)'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"load {os.getloadavg()[0]:.1f}")
        try:
            mount(a, region, mnt)
            file_injects(a, mnt)
            run(a.bin, "umount", mnt)
            mount(a, region, mnt)
            million(a, region, mnt)
        finally:
            subprocess.run([a.bin, "umount", mnt], capture_output=True)
        fsck = run(a.bin, "fsck", region)
        print("fsck:", fsck.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
