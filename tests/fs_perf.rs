//! Embedded-API throughput (no FUSE), for orientation; ignored by default. Run with
//! `cargo test --release --test fs_perf -- --ignored --nocapture` (region on /dev/shm).

use std::ffi::OsStr;
use std::time::Instant;

use daxfs::fs::*;

mod embedded;
use rand::Rng;

#[test]
#[ignore]
fn embedded_api_throughput() {
    let region = embedded::region(1 << 30);
    let fs = region.open();
    let c = Ctx::root();
    let (a, _) = fs.create(ROOT_INO, OsStr::new("f"), 0o644, 0, &c).unwrap();
    let mb = vec![1u8; 1 << 20];
    let t = Instant::now();
    for i in 0..512u64 {
        fs.write(a.ino, i << 20, &mb, &c).unwrap();
    }
    fs.fsync(a.ino, false).unwrap();
    let d = t.elapsed();
    eprintln!(
        "1 MiB writes, new blocks, + fsync: {:.0} MiB/s",
        512.0 / d.as_secs_f64()
    );
    let t = Instant::now();
    for i in 0..512u64 {
        fs.write(a.ino, i << 20, &mb, &c).unwrap();
    }
    eprintln!(
        "1 MiB overwrites: {:.0} MiB/s",
        512.0 / t.elapsed().as_secs_f64()
    );
    let mut rng = rand::rng();
    let b4 = vec![2u8; 4096];
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let p = rng.random_range(0..(512u64 << 8));
        fs.write(a.ino, p << 12, &b4, &c).unwrap();
    }
    eprintln!(
        "4 KiB random overwrites: {:.0} kIOPS",
        n as f64 / t.elapsed().as_secs_f64() / 1e3
    );
    let t = Instant::now();
    let mut sum = 0u64;
    for _ in 0..n {
        let p = rng.random_range(0..(512u64 << 8));
        sum += fs
            .read_with(a.ino, p << 12, 4096, |s| s[4095] as u64)
            .unwrap();
    }
    eprintln!(
        "4 KiB random read_with: {:.0} kIOPS",
        n as f64 / t.elapsed().as_secs_f64() / 1e3
    );
    assert!(sum > 0);
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    for i in 0..512u64 {
        fs.read(a.ino, i << 20, &mut buf).unwrap();
    }
    eprintln!(
        "1 MiB reads (one copy): {:.0} MiB/s",
        512.0 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    fs.fsync(a.ino, false).unwrap();
    eprintln!("fsync after random overwrites: {:?}", t.elapsed());
    let t = Instant::now();
    for i in 0..2000 {
        let (x, fh) = fs
            .create(ROOT_INO, OsStr::new(&format!("s{i}")), 0o644, 0, &c)
            .unwrap();
        fs.write(x.ino, 0, &b4, &c).unwrap();
        fs.release(x.ino, fh).unwrap();
    }
    eprintln!(
        "create + 4 KiB write + close: {:.0}/s",
        2000.0 / t.elapsed().as_secs_f64()
    );
}
