//! Shared helpers for flatbucket's end-to-end suites: running the real
//! `flatpak` and `ostree` tools in isolation and building Flatpak fixtures.

#[cfg(feature = "aws")]
pub mod aws;
pub mod bigapp;
pub mod fault;
pub mod fixture;
pub mod flat_manager;
pub mod gpg;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod machine;
pub mod many_refs;
pub mod mirror;
pub mod publishing;
pub mod router;
pub mod synthetic;
pub mod tools;
