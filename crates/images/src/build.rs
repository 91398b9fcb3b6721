//! Builders of the bootstrap images from this machine's Debian packages.

pub mod busybox;
pub mod guest;
