//! The container driver: a pod's containers run through runc (the OCI runtime), each from
//! its image unpacked into read-only overlayfs layers.
