#!/usr/bin/env bash
# benches/direct_mmap.sh: true DAX mmap (`daxfs exec`) against tmpfs in the same run, by hand.
#
# Usage: benches/direct_mmap.sh [SIZE_MIB] [ROUNDS]   (defaults 1024, 3)
# Env:   DAXFS_BIN, DAXFS_PRELOAD (default: target/debug/daxfs and its libdaxfs_preload.so,
#        built with `cargo build --profile test -p daxfs-cli -p daxfs-preload`), DAXFS_OPTS
#        (mount options, default dax=always).
#
# Jobs (benches/direct_mmap.c): first-touch sequential read of the file through mmap, random
# 4 KiB loads, random 4 KiB stores + msync every 256. Each on a file on tmpfs (/dev/shm), on
# daxfs under `daxfs exec` (the region in /dev/shm too), and on daxfs without the library (the
# FUSE mmap). Prints the median time of ROUNDS per job and the ratios tmpfs/daxfs (throughput
# relative to tmpfs: 1.0 = as fast as tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
rounds=${2:-3}
bin=${DAXFS_BIN:-target/debug/daxfs}
lib=${DAXFS_PRELOAD:-$(dirname "$bin")/libdaxfs_preload.so}
[ -x "$bin" ] && [ -f "$lib" ] || {
	echo "build first: cargo build --profile test -p daxfs-cli -p daxfs-preload" >&2
	exit 1
}
work=$(mktemp -d /dev/shm/daxfs-bench.XXXXXX)
cleanup() {
	"$bin" umount "$work/mnt" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -o "$work/direct_mmap" benches/direct_mmap.c
mkdir "$work/mnt" "$work/tmpfs"
"$bin" mkfs "$work/region" --size $((size + size / 4 + 64))M >/dev/null
"$bin" mount "$work/region" "$work/mnt" -o "${DAXFS_OPTS:-dax=always}"
for f in "$work/tmpfs/f" "$work/mnt/f"; do
	dd if=/dev/urandom of="$f" bs=1M count="$size" conv=fsync status=none
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # run KIND JOB -> median ns
	local kind=$1 job=$2 r
	for r in $(seq "$rounds"); do
		case $kind in
		tmpfs) "$work/direct_mmap" "$work/tmpfs/f" "$job" ;;
		preload) DAXFS_PRELOAD="$lib" "$bin" exec -- "$work/direct_mmap" "$work/mnt/f" "$job" ;;
		fuse) "$work/direct_mmap" "$work/mnt/f" "$job" ;;
		esac | awk '{print $2}'
	done | median
}
printf "%-10s %12s %12s %12s %10s %10s\n" job tmpfs_ms preload_ms fuse_ms preload/x fuse/x
for job in seqread randload randstore; do
	t=$(run tmpfs "$job")
	p=$(run preload "$job")
	f=$(run fuse "$job")
	awk -v j="$job" -v t="$t" -v p="$p" -v f="$f" 'BEGIN {
		printf "%-10s %12.1f %12.1f %12.1f %10.2f %10.2f\n", j, t/1e6, p/1e6, f/1e6, t/p, t/f }'
done
echo "(x/x = throughput relative to tmpfs in this run; size ${size} MiB, median of $rounds)"
