//! The standard traits and resource classes every Placement knows (a selection of
//! os-traits and all of os-resource-classes). Custom ones (`CUSTOM_*`) are objects; any
//! name found on a provider (written through the Kubernetes face or by an agent) counts as
//! known too.

/// os-resource-classes' standard classes, in its order.
pub const RESOURCE_CLASSES: &[&str] = &[
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
];

/// Standard traits: the compute capabilities Nova reports, the x86 CPU features (every
/// one the agent detects among them), NICs, NUMA, storage and sharing.
pub const TRAITS: &[&str] = &[
    "COMPUTE_ACCELERATORS",
    "COMPUTE_ARCH_AARCH64",
    "COMPUTE_ARCH_X86_64",
    "COMPUTE_DEVICE_TAGGING",
    "COMPUTE_IMAGE_TYPE_AMI",
    "COMPUTE_IMAGE_TYPE_ISO",
    "COMPUTE_IMAGE_TYPE_QCOW2",
    "COMPUTE_IMAGE_TYPE_RAW",
    "COMPUTE_IMAGE_TYPE_VHD",
    "COMPUTE_IMAGE_TYPE_VMDK",
    "COMPUTE_NET_ATTACH_INTERFACE",
    "COMPUTE_NET_ATTACH_INTERFACE_WITH_TAG",
    "COMPUTE_NET_VIF_MODEL_E1000",
    "COMPUTE_NET_VIF_MODEL_VIRTIO",
    "COMPUTE_NODE",
    "COMPUTE_RESCUE_BFV",
    "COMPUTE_SAME_HOST_COLD_MIGRATE",
    "COMPUTE_SECURITY_TPM_2_0",
    "COMPUTE_SECURITY_UEFI_SECURE_BOOT",
    "COMPUTE_STATUS_DISABLED",
    "COMPUTE_TRUSTED_CERTS",
    "COMPUTE_VOLUME_ATTACH",
    "COMPUTE_VOLUME_ATTACH_WITH_TAG",
    "COMPUTE_VOLUME_EXTEND",
    "COMPUTE_VOLUME_MULTI_ATTACH",
    "HW_ARCH_AARCH64",
    "HW_ARCH_X86_64",
    "HW_CPU_HYPERTHREADING",
    "HW_CPU_X86_3DNOW",
    "HW_CPU_X86_ABM",
    "HW_CPU_X86_AESNI",
    "HW_CPU_X86_AMXBF16",
    "HW_CPU_X86_AMXINT8",
    "HW_CPU_X86_AMXTILE",
    "HW_CPU_X86_ASF",
    "HW_CPU_X86_AVX",
    "HW_CPU_X86_AVX2",
    "HW_CPU_X86_AVX512BITALG",
    "HW_CPU_X86_AVX512BW",
    "HW_CPU_X86_AVX512CD",
    "HW_CPU_X86_AVX512DQ",
    "HW_CPU_X86_AVX512ER",
    "HW_CPU_X86_AVX512F",
    "HW_CPU_X86_AVX512GFNI",
    "HW_CPU_X86_AVX512IFMA",
    "HW_CPU_X86_AVX512PF",
    "HW_CPU_X86_AVX512VAES",
    "HW_CPU_X86_AVX512VBMI",
    "HW_CPU_X86_AVX512VBMI2",
    "HW_CPU_X86_AVX512VL",
    "HW_CPU_X86_AVX512VNNI",
    "HW_CPU_X86_AVX512VPCLMULQDQ",
    "HW_CPU_X86_AVX512VPOPCNTDQ",
    "HW_CPU_X86_BMI",
    "HW_CPU_X86_BMI2",
    "HW_CPU_X86_CLMUL",
    "HW_CPU_X86_F16C",
    "HW_CPU_X86_FMA3",
    "HW_CPU_X86_FMA4",
    "HW_CPU_X86_MMX",
    "HW_CPU_X86_MPX",
    "HW_CPU_X86_PDPE1GB",
    "HW_CPU_X86_SGX",
    "HW_CPU_X86_SHA",
    "HW_CPU_X86_SSE",
    "HW_CPU_X86_SSE2",
    "HW_CPU_X86_SSE3",
    "HW_CPU_X86_SSE41",
    "HW_CPU_X86_SSE42",
    "HW_CPU_X86_SSE4A",
    "HW_CPU_X86_SSSE3",
    "HW_CPU_X86_STIBP",
    "HW_CPU_X86_SVM",
    "HW_CPU_X86_TBM",
    "HW_CPU_X86_TSX",
    "HW_CPU_X86_VMX",
    "HW_CPU_X86_XOP",
    "HW_NIC_MULTIQUEUE",
    "HW_NIC_SRIOV",
    "HW_NIC_SRIOV_MULTIQUEUE",
    "HW_NIC_SRIOV_QOS_RX",
    "HW_NIC_SRIOV_QOS_TX",
    "HW_NIC_SRIOV_TRUSTED",
    "HW_NIC_VMDQ",
    "HW_NUMA_ROOT",
    "MISC_SHARES_VIA_AGGREGATE",
    "STORAGE_DISK_HDD",
    "STORAGE_DISK_SSD",
];

pub fn is_standard_trait(name: &str) -> bool {
    TRAITS.binary_search(&name).is_ok()
}

pub fn is_standard_class(name: &str) -> bool {
    RESOURCE_CLASSES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ronghe_apiserver::kinds::placement::is_placement_name;

    #[test]
    fn standard_names_are_sorted_valid_and_not_custom() {
        assert!(
            TRAITS.windows(2).all(|pair| pair[0] < pair[1]),
            "sorted, distinct"
        );
        for name in TRAITS.iter().chain(RESOURCE_CLASSES) {
            assert!(is_placement_name(name), "{name}");
            assert!(!name.starts_with("CUSTOM_"), "{name}");
        }
        assert!(is_standard_trait("HW_CPU_X86_AVX2"));
        assert!(!is_standard_trait("CUSTOM_X"));
        assert!(is_standard_class("VGPU_DISPLAY_HEAD"));
    }
}
