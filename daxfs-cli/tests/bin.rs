//! The `daxfs` binary runs. Also why `cargo test --workspace` builds it (a package's integration
//! tests get its binaries), with the same features as every test: scripts/test runs the root
//! package's tests with that binary (DAXFS_NO_BUILD=1) instead of building another variant.

#[test]
fn the_binary_prints_its_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daxfs"))
        .arg("--version")
        .output()
        .expect("run daxfs --version");
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    assert_eq!(v.trim(), format!("daxfs {}", env!("CARGO_PKG_VERSION")));
}
