//! The domain: builds and their lifecycle, jobs, and API tokens. No storage, no HTTP.

pub mod build;
pub mod job;
pub mod token;
