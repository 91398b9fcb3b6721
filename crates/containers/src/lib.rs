//! The container driver: a pod's containers run through runc (the OCI runtime), each from
//! its image's read-only layers stacked with overlayfs under a writable layer of its own.
//!
//! [`RuncDriver`] implements the agent's [`ronghe_agent::PodDriver`]. Per pod it keeps
//! `ROOT/pods/<uid>/` (`etc/` hosts, hostname and resolv.conf; `containers/<name>-<n>/`
//! bundles; `logs/<name>/<n>.log` in the CRI format, the latest instance and the one
//! before), a network namespace `/run/netns/<prefix><uid>` with loopback up (none with
//! `hostNetwork`), and the cgroup `/<parent>/pod<uid>/<runc id>` for each container. Each
//! container instance runs as `runc run` in the foreground, a child of the driver, so
//! runc's exit status is the container's; runc's own state is in `ROOT/runc` (`runc
//! --root`), so `runc list` there shows only this driver's containers.
//!
//! Every command and mount goes through [`host::HostSeam`]. Images come through
//! [`ImageSource`].

mod config;
mod container;
mod driver;
mod error;
mod exec;
pub mod host;
mod images;
mod logs;
mod pod;
mod probes;
mod resolv;
mod sandbox;
pub mod spec;
pub mod status;

pub use config::RuncConfig;
pub use driver::RuncDriver;
pub use error::Error;
pub use images::{ImageSource, StaticImages};
