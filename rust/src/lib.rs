//! warren-raft: Raft consensus for Python applications.
//!
//! openraft provides the protocol; this crate adds a durable redb log with group commit
//! ([`log_store`]), a TCP transport with a checked frame codec and optional mutual TLS
//! ([`network`], [`codec`], [`tls`]), a state-machine bridge that hands committed entries to the
//! application ([`state_machine`]), and the node that ties them together ([`node`]). The Python
//! bindings live in `py*` modules only.

// openraft's storage traits fix the error type (StorageError, ~200 bytes); helpers return it too.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod config;
pub mod error;
/// Entry points for the fuzz targets (rust/fuzz) and their corpus replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod gauge;
mod log_file;
pub mod log_store;
pub mod logging;
pub mod network;
pub mod node;
mod probe;
pub mod proposer;
pub mod state_machine;
pub mod tls;
pub mod types;
pub mod version;
pub mod write_gate;

#[cfg(feature = "python")]
mod py;
#[cfg(feature = "python")]
mod py_completion;
#[cfg(feature = "python")]
mod py_errors;

pub use config::Config;
pub use error::{Error, Result};
pub use node::{MetricsView, Node};
pub use state_machine::Work;
pub use tls::TlsIdentity;
pub use types::NodeInfo;
pub use version::OPENRAFT_VERSION;
