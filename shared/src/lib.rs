//! flatbucket's core: the Flatpak/OSTree repository format in pure Rust and the storage ports the
//! API handlers and jobs run on.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod jobs;
pub mod repo;
pub mod state;
pub mod store;
