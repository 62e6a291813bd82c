//! The `daxfs` command line.
fn main() {
    eprintln!("daxfs: not built yet");
    std::process::exit(1);
}
