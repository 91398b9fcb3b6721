//! The `busybox` container image: a rootfs tarball from busybox-static.
