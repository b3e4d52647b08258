//! Writes the fuzz targets' seed inputs, made by the real encoders, into the corpus:
//! `cargo run -p warren-raft --example fuzz_seeds [-- DIR]` (DIR: rust/fuzz/corpus by default).
//! Each target's seeds go to DIR/<target>/seed-<name>; other corpus files are left alone.

use std::path::PathBuf;

use warren_raft::fuzzing;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus"));
    for target in fuzzing::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in fuzzing::seeds(target) {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
        println!("{}: {} seeds", dir.display(), fuzzing::seeds(target).len());
    }
    Ok(())
}
