//! Images on disk, with no API: the content-addressed blob store both the server (Glance
//! uploads) and the agents (their image caches) keep, container images unpacked into
//! read-only overlayfs layers, and the builders of the two bootstrap images.

pub mod blob;
pub mod build;
pub mod unpack;
