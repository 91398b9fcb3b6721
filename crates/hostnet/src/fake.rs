//! `FakeHostNetwork`: the same trait with no I/O, for fast tests and simulated hosts. It
//! keeps the last plan and the objects a real host would have, and reports changes the
//! way the real driver does (created, repaired, removed; nothing on a repeated plan).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::names;
use crate::plan::{Attachment, HostPlan, Segment};
use crate::{Action, Applied, DnsSockets, HostNetError, HostNetwork, PortReadiness};

#[derive(Default)]
pub struct FakeHostNetwork {
    prefix: String,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    plan: Option<HostPlan>,
    /// Object name ("bridge rb-…") to a description of its configuration.
    objects: BTreeMap<String, String>,
}

impl FakeHostNetwork {
    /// `prefix` plays the role of `LinuxConfig::prefix` in netns names.
    pub fn new(prefix: &str) -> Self {
        FakeHostNetwork {
            prefix: prefix.into(),
            state: Mutex::default(),
        }
    }

    /// The plan of the last successful apply.
    pub fn last_plan(&self) -> Option<HostPlan> {
        self.lock().plan.clone()
    }

    /// The objects that would exist on a real host, by name.
    pub fn objects(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A panic in another test thread must not hide this fake's state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a real host would hold for `plan`.
fn expected_objects(prefix: &str, plan: &HostPlan) -> BTreeMap<String, String> {
    let mut objects = BTreeMap::new();
    for network in &plan.networks {
        objects.insert(
            format!("bridge {}", names::bridge(&network.id)),
            format!("mtu={}", network.mtu),
        );
        if let Segment::Vxlan { vni } = network.segment {
            objects.insert(
                format!("vxlan {}", names::vxlan(&network.id)),
                format!("vni={vni} local={} mtu={}", plan.tunnel_ip, network.mtu),
            );
            for vtep in &network.remote_vteps {
                objects.insert(
                    format!("fdb {} 00:00:00:00:00:00 {vtep}", names::vxlan(&network.id)),
                    String::new(),
                );
            }
            for (mac, vtep) in &network.remote_macs {
                objects.insert(
                    format!("fdb {} {mac} {vtep}", names::vxlan(&network.id)),
                    String::new(),
                );
            }
        }
        if let Some(service) = &network.service {
            objects.insert(
                format!("netns {}", names::service_netns(prefix, &network.id)),
                format!("{service:?}"),
            );
            objects.insert(
                format!("dnsmasq {}", network.id),
                format!("{:?}", service.dhcp),
            );
        }
        for port in &network.ports {
            let kind = match port.attachment {
                Attachment::Veth { .. } => "veth",
                Attachment::Tap { .. } => "tap",
            };
            objects.insert(
                format!("{kind} {}", port.host_device()),
                format!("{port:?} mtu={}", network.mtu),
            );
        }
    }
    for router in &plan.routers {
        objects.insert(
            format!("netns {}", names::router_netns(prefix, &router.id)),
            format!("{router:?}"),
        );
    }
    objects.insert("nft host".into(), crate::nft::render_host(plan));
    objects
}

#[async_trait]
impl HostNetwork for FakeHostNetwork {
    async fn apply(&self, plan: &HostPlan) -> Result<Applied, HostNetError> {
        plan.validate().map_err(HostNetError::InvalidPlan)?;
        let wanted = expected_objects(&self.prefix, plan);
        let mut state = self.lock();
        let mut applied = Applied::default();
        for (name, description) in &wanted {
            match state.objects.get(name) {
                None => applied.record(Action::Created, name.clone()),
                Some(old) if old != description => applied.record(Action::Repaired, name.clone()),
                Some(_) => {}
            }
        }
        for name in state.objects.keys() {
            if !wanted.contains_key(name) {
                applied.record(Action::Removed, name.clone());
            }
        }
        for network in &plan.networks {
            for port in &network.ports {
                applied.ports.insert(
                    port.id.clone(),
                    PortReadiness {
                        ready: true,
                        error: None,
                    },
                );
            }
        }
        state.objects = wanted;
        state.plan = Some(plan.clone());
        Ok(applied)
    }

    async fn teardown(&self) -> Result<(), HostNetError> {
        let mut state = self.lock();
        state.objects.clear();
        state.plan = None;
        Ok(())
    }

    async fn metadata_listener(
        &self,
        network_id: &str,
    ) -> Result<std::net::TcpListener, HostNetError> {
        let served = self
            .lock()
            .plan
            .as_ref()
            .and_then(|plan| plan.network(network_id))
            .is_some_and(|network| network.service.is_some());
        if !served {
            return Err(HostNetError::NoService {
                network_id: network_id.into(),
            });
        }
        // A simulated host has no 169.254.169.254 of its own: any local port will do.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(HostNetError::io("binding the fake metadata listener"))?;
        listener.set_nonblocking(true).map_err(HostNetError::io(
            "making the fake metadata listener non-blocking",
        ))?;
        Ok(listener)
    }

    async fn dns_sockets(
        &self,
        network_id: &str,
        address: IpAddr,
    ) -> Result<DnsSockets, HostNetError> {
        let served = self
            .lock()
            .plan
            .as_ref()
            .and_then(|plan| plan.network(network_id))
            .and_then(|network| network.service.as_ref())
            .is_some_and(|service| service.addresses.iter().any(|a| a.addr() == address));
        if !served {
            return Err(HostNetError::NoService {
                network_id: network_id.into(),
            });
        }
        // A simulated host has no service address of its own: loopback, any port.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .map_err(HostNetError::io("binding the fake DNS socket"))?;
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(HostNetError::io("binding the fake DNS listener"))?;
        udp.set_nonblocking(true)
            .and_then(|()| tcp.set_nonblocking(true))
            .map_err(HostNetError::io("making the fake DNS sockets non-blocking"))?;
        Ok(DnsSockets { udp, tcp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::*;

    fn plan(ports: usize) -> HostPlan {
        HostPlan {
            tunnel_ip: "10.77.0.1".parse().unwrap(),
            networks: vec![NetworkPlan {
                id: "net".into(),
                segment: Segment::Vxlan { vni: 7 },
                mtu: 1450,
                remote_vteps: vec!["10.77.0.2".parse().unwrap()],
                remote_macs: vec![],
                service: None,
                ports: (0..ports)
                    .map(|i| PortPlan {
                        id: format!("port-{i}"),
                        mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, i as u8]),
                        addresses: vec![format!("10.0.0.{}/24", i + 10).parse().unwrap()],
                        gateway: None,
                        routes: vec![],
                        attachment: Attachment::Tap {
                            name: names::tap(&format!("port-{i}")),
                        },
                        security: None,
                        qos: None,
                    })
                    .collect(),
            }],
            routers: vec![],
        }
    }

    #[tokio::test]
    async fn repeated_plans_change_nothing_and_removals_are_reported() {
        let fake = FakeHostNetwork::new("rh-");
        let first = fake.apply(&plan(2)).await.unwrap();
        assert!(first.count(Action::Created) >= 5, "{first:?}");
        assert!(first.all_ports_ready());
        assert!(fake.apply(&plan(2)).await.unwrap().unchanged());
        let third = fake.apply(&plan(1)).await.unwrap();
        assert_eq!(third.count(Action::Removed), 1, "{third:?}");
        // The ruleset does not mention unsecured ports, so only the TAP goes.
        assert!(
            third
                .changes
                .iter()
                .any(|c| c.object == format!("tap {}", names::tap("port-1")))
        );
        assert!(fake.metadata_listener("net").await.is_err());
        assert!(
            fake.dns_sockets("net", "10.0.0.2".parse().unwrap())
                .await
                .is_err(),
            "no service, no DNS"
        );
        fake.teardown().await.unwrap();
        assert!(fake.objects().is_empty());
    }

    #[tokio::test]
    async fn dns_sockets_are_on_loopback_for_the_service_addresses_only() {
        let fake = FakeHostNetwork::new("rh-");
        let mut served = plan(1);
        served.networks[0].service = Some(ServicePlan {
            mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, 2]),
            addresses: vec!["10.0.0.2/24".parse().unwrap()],
            dhcp: vec![],
            hosts: vec![],
        });
        fake.apply(&served).await.unwrap();
        let sockets = fake
            .dns_sockets("net", "10.0.0.2".parse().unwrap())
            .await
            .unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(b"query", sockets.udp.local_addr().unwrap())
            .unwrap();
        let udp = tokio::net::UdpSocket::from_std(sockets.udp).unwrap();
        let mut buffer = [0; 16];
        let (length, from) = udp.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..length], b"query");
        assert_eq!(from, client.local_addr().unwrap());
        let tcp = tokio::net::TcpListener::from_std(sockets.tcp).unwrap();
        let address = tcp.local_addr().unwrap();
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(address), tcp.accept());
        connected.unwrap();
        accepted.unwrap();
        for (network, address) in [("net", "10.0.0.9"), ("other", "10.0.0.2")] {
            assert!(
                fake.dns_sockets(network, address.parse().unwrap())
                    .await
                    .is_err(),
                "{network} {address} is not a service address"
            );
        }
    }
}
