//! The io_uring engine (not yet written).

use std::io;

use super::WorkerSpec;

pub fn probe() -> Result<(), String> {
    Err("io_uring engine not built yet".into())
}

pub fn run(_spec: WorkerSpec) -> io::Result<()> {
    Err(io::Error::other("io_uring engine not built yet"))
}
