#![no_main]
//! A stored log record, or a damaged/truncated log file opened at start (log_store.rs).
//! See warren_raft::fuzzing::log_record.

libfuzzer_sys::fuzz_target!(
    init: warren_raft_fuzz_hook(),
    |data: &[u8]| {
        warren_raft::fuzzing::run("log_entry", data);
    }
);

/// libfuzzer-sys aborts on every panic, even one the code under test catches by design
/// (LogStore::open turns redb's asserts on a damaged file into an error). Only a panic that
/// escapes the entry point is a crash: fuzz_target! aborts on that itself.
fn warren_raft_fuzz_hook() {
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
}
