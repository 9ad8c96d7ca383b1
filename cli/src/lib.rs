//! flatbucket's user binaries as a library: the binaries in `src/bin/` are thin mains over these
//! modules.

pub mod client;
#[cfg(feature = "server")]
pub mod server;
