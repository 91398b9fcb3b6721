//! The `test-guest` VM image: Debian's kernel and a busybox initramfs.
