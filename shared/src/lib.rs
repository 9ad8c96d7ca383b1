//! flatbucket's core: the Flatpak/OSTree repository format in pure Rust and the storage ports the
//! API handlers and jobs run on.

pub mod repo;
pub mod store;
