//! flatbucket's user binaries as a library: the binaries in `src/bin/` are thin mains over these
//! modules.

#[cfg(feature = "server")]
pub mod allocator;
pub mod client;
#[cfg(feature = "server")]
pub mod server;
