//! Container images (an OCI image layout tarball, or a plain rootfs tarball) unpacked into
//! layer directories for overlayfs.
