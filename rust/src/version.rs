//! The openraft release this crate is built on, for a program's `--version` (Warren's reports it).
//!
//! Cargo gives a crate its own version (`CARGO_PKG_VERSION`), not its dependencies'; the constant is
//! kept beside the exact pin by hand, and the test below fails when the pin in Cargo.toml or the
//! version resolved in Cargo.lock moves without it.

/// openraft's version: equal to the exact pin `openraft = { version = "=…" }` in rust/Cargo.toml.
pub const OPENRAFT_VERSION: &str = "0.9.25";

#[cfg(test)]
mod tests {
    use super::OPENRAFT_VERSION;

    const MANIFEST: &str = include_str!("../Cargo.toml");
    const LOCK: &str = include_str!("../../Cargo.lock");

    #[test]
    fn the_constant_is_the_exact_pin_in_cargo_toml() {
        let line = MANIFEST
            .lines()
            .find(|line| line.trim_start().starts_with("openraft ="))
            .expect("rust/Cargo.toml depends on openraft");
        let pin = format!("version = \"={OPENRAFT_VERSION}\"");
        assert!(line.contains(&pin), "OPENRAFT_VERSION is {OPENRAFT_VERSION}, Cargo.toml says: {line}");
    }

    #[test]
    fn the_constant_is_the_version_in_cargo_lock() {
        let mut lines = LOCK.lines();
        lines.find(|line| *line == "name = \"openraft\"").expect("Cargo.lock holds openraft");
        let version = lines.next().expect("a version line follows the name");
        assert_eq!(version, format!("version = \"{OPENRAFT_VERSION}\""));
    }
}
