//! flatbucket's core: the Flatpak/OSTree repository format in pure Rust and the storage ports the
//! API handlers and jobs run on. The handlers, jobs and state stores are the `server` feature; the
//! client uses the format and the stores alone.

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod app;
#[cfg(feature = "server")]
pub mod config;
pub mod domain;
#[cfg(feature = "server")]
pub mod jobs;
pub mod repo;
#[cfg(feature = "server")]
pub mod state;
pub mod store;
