//! The VM driver: VMs run through QEMU (`qemu-system-x86_64`), driven over QMP, with their
//! serial console captured to a log.
