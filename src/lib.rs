//! tandem: a static-file HTTP/1.1 server daemon with two I/O engines.
//!
//! Layers, top to bottom: `config` -> `daemon` (listeners, workers, signals)
//! -> `engine::{epoll, uring}` -> `http::Conn` (sans-IO) -> `files::Responder`.

pub mod config;
pub mod daemon;
pub mod engine;
pub mod files;
pub mod http;
pub mod log;
pub mod sys;
