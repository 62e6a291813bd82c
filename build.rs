//! The `loom` feature as `cfg(loom)` for this crate's targets only (its dependencies keep their
//! normal build; see the feature's comment in Cargo.toml). `RUSTFLAGS="--cfg loom"` still works.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_LOOM").is_some() {
        println!("cargo::rustc-cfg=loom");
    }
}
