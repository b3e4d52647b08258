#![no_main]
//! A peer's byte stream, frame after frame, as the Raft transport reads it (codec.rs, network.rs).
//! See warren_raft::fuzzing::frames.

libfuzzer_sys::fuzz_target!(
    init: warren_raft_fuzz_hook(),
    |data: &[u8]| {
        warren_raft::fuzzing::run("frame", data);
    }
);

/// libfuzzer-sys aborts on every panic, even one the code under test catches by design
/// (LogStore::open turns redb's asserts on a damaged file into an error). Only a panic that
/// escapes the entry point is a crash: fuzz_target! aborts on that itself.
fn warren_raft_fuzz_hook() {
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
}
