//! `flat-manager-client` and `gentoken`: a client for flat-manager's v1 API that reads the local
//! archive repository through flatbucket's repository core (no libostree).
//!
//! `args` is the command line, `commands` runs it; `push`, `upload` and `local` upload a
//! repository; `steps` and `follow` commit, publish and follow jobs; `api` is the typed HTTP
//! layer with `retry`, `error` and `wire`; `output` writes the result document.

pub mod api;
pub mod args;
pub mod commands;
pub mod error;
pub mod follow;
pub mod gentoken;
pub mod local;
pub mod output;
pub mod progress;
pub mod push;
pub mod retry;
pub mod steps;
pub mod token;
pub mod upload;
pub mod urls;
pub mod wire;
