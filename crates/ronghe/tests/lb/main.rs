//! Load balancing through real processes: a `ronghe proxy` process driven over its
//! control socket, and `ronghe bench lb` against HAProxy. No API server involved.

mod bench;
mod proxy;

use std::time::Duration;

pub const BINARY: &str = env!("CARGO_BIN_EXE_ronghe");

/// How long anything awaited may take. Generous: the machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(20);
