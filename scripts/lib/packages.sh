# The Debian packages Ronghe runs workloads with (sourced by scripts/up and scripts/test):
# runc for containers, QEMU for VMs, busybox-static and Debian's kernel for the bootstrap
# images (`ronghe images bootstrap`), the end-to-end tests and the benchmarks; iproute2,
# nftables, conntrack and dnsmasq-base (DHCP for VMs) for the hosts' virtual networks;
# wrk and haproxy for `ronghe bench lb` (the load generator, and the proxy Ronghe's is
# measured against; the bench starts its own haproxy, the package's service is not used).
RONGHE_PACKAGES=(gcc pkg-config ca-certificates runc qemu-system-x86 qemu-utils busybox-static linux-image-amd64 iproute2 nftables conntrack dnsmasq-base wrk haproxy)

# Installs the missing ones with apt-get when running as root on Debian; says what is
# missing otherwise (the tests that need them then say what they skip).
ronghe_install_packages() {
  local missing=() package
  for package in "${RONGHE_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian enables (and where it can, starts) haproxy's service on install; nothing
    # here uses it.
    if [[ " ${missing[*]} " == *" haproxy "* ]] && command -v systemctl >/dev/null; then
      systemctl disable --now haproxy >/dev/null 2>&1 || true
    fi
  else
    echo "ronghe: missing packages (install them as root): ${missing[*]}" >&2
  fi
}
