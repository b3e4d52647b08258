#![no_main]
//! InstallSnapshot chunks received and installed by a follower, up to the hand-off to the
//! application; or a damaged current.meta read at start (state_machine.rs).
//! See warren_raft::fuzzing::snapshot_install.

libfuzzer_sys::fuzz_target!(
    init: warren_raft_fuzz_hook(),
    |data: &[u8]| {
        warren_raft::fuzzing::run("snapshot_install", data);
    }
);

/// libfuzzer-sys aborts on every panic, even one the code under test catches by design
/// (LogStore::open turns redb's asserts on a damaged file into an error). Only a panic that
/// escapes the entry point is a crash: fuzz_target! aborts on that itself.
fn warren_raft_fuzz_hook() {
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
}
