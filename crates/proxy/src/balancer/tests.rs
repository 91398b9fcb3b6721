//! Tests of member selection and the persistence table.

use std::collections::BTreeMap;

use super::*;

const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn candidates(weights: &[u16]) -> Vec<Candidate<'static>> {
    weights
        .iter()
        .enumerate()
        .map(|(index, weight)| Candidate {
            id: IDS[index],
            weight: *weight,
            backup: false,
            admin_state_up: true,
            healthy: true,
            active_connections: 0,
        })
        .collect()
}

fn client(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn picks(
    balancer: &mut Balancer,
    members: &[Candidate<'_>],
    count: usize,
) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..count {
        let index = balancer.choose(members, client(1), None).unwrap();
        *counts.entry(IDS[index]).or_insert(0) += 1;
    }
    counts
}

#[test]
fn round_robin_is_smooth_and_weighted() {
    let members = candidates(&[5, 1, 1]);
    let mut balancer = Balancer::new(LbAlgorithm::RoundRobin);
    let sequence: String = (0..7)
        .map(|_| IDS[balancer.choose(&members, client(1), None).unwrap()])
        .collect();
    assert_eq!(sequence, "aabacaa", "nginx's smooth sequence");
    let counts = picks(&mut balancer, &members, 700);
    assert_eq!(counts, BTreeMap::from([("a", 500), ("b", 100), ("c", 100)]));

    let members = candidates(&[1, 1, 1]);
    let mut balancer = Balancer::new(LbAlgorithm::RoundRobin);
    let sequence: String = (0..6)
        .map(|_| IDS[balancer.choose(&members, client(1), None).unwrap()])
        .collect();
    assert_eq!(sequence, "abcabc");
}

#[test]
fn weight_zero_admin_down_and_unhealthy_members_are_never_chosen() {
    let mut members = candidates(&[1, 0, 1, 1]);
    members[2].admin_state_up = false;
    members[3].healthy = false;
    for algorithm in [
        LbAlgorithm::RoundRobin,
        LbAlgorithm::LeastConnections,
        LbAlgorithm::SourceIp,
    ] {
        let mut balancer = Balancer::new(algorithm);
        for last in 0..100 {
            assert_eq!(
                balancer.choose(&members, client(last), None),
                Some(0),
                "{algorithm:?}"
            );
        }
    }
}

#[test]
fn backups_serve_only_while_no_normal_member_is_up() {
    let mut members = candidates(&[1, 1, 1, 1]);
    members[2].backup = true;
    members[3].backup = true;
    let mut balancer = Balancer::new(LbAlgorithm::RoundRobin);
    assert_eq!(
        picks(&mut balancer, &members, 10),
        BTreeMap::from([("a", 5), ("b", 5)])
    );

    members[0].healthy = false;
    assert_eq!(
        picks(&mut balancer, &members, 10),
        BTreeMap::from([("b", 10)])
    );

    // A normal member of weight 0 does not count as up.
    members[1].weight = 0;
    assert_eq!(
        picks(&mut balancer, &members, 10),
        BTreeMap::from([("c", 5), ("d", 5)])
    );

    members[0].healthy = true;
    assert_eq!(
        picks(&mut balancer, &members, 4),
        BTreeMap::from([("a", 4)])
    );
}

#[test]
fn nothing_is_chosen_when_every_member_is_down() {
    let mut members = candidates(&[1, 1]);
    members[1].backup = true;
    for member in &mut members {
        member.healthy = false;
    }
    for algorithm in [
        LbAlgorithm::RoundRobin,
        LbAlgorithm::LeastConnections,
        LbAlgorithm::SourceIp,
    ] {
        let mut balancer = Balancer::new(algorithm);
        assert_eq!(balancer.choose(&members, client(1), Some("a")), None);
        assert_eq!(balancer.choose(&[], client(1), None), None);
    }
}

#[test]
fn least_connections_weighs_open_connections_and_rotates_ties() {
    let mut members = candidates(&[1, 1, 1]);
    members[0].active_connections = 3;
    members[1].active_connections = 1;
    members[2].active_connections = 2;
    let mut balancer = Balancer::new(LbAlgorithm::LeastConnections);
    assert_eq!(balancer.choose(&members, client(1), None), Some(1));

    // Weight 3 with 5 open (5/3) is lighter than weight 1 with 2 open.
    let mut members = candidates(&[3, 1]);
    members[0].active_connections = 5;
    members[1].active_connections = 2;
    assert_eq!(balancer.choose(&members, client(1), None), Some(0));

    // Simulated load: each pick opens a connection that stays open.
    let mut members = candidates(&[2, 1, 1]);
    let mut balancer = Balancer::new(LbAlgorithm::LeastConnections);
    for _ in 0..400 {
        let index = balancer.choose(&members, client(1), None).unwrap();
        members[index].active_connections += 1;
    }
    let open: Vec<u64> = members.iter().map(|m| m.active_connections).collect();
    assert_eq!(open, [200, 100, 100]);

    // Equal members with no connections: ties rotate rather than piling on one.
    let members = candidates(&[1, 1, 1]);
    let mut balancer = Balancer::new(LbAlgorithm::LeastConnections);
    let sequence: String = (0..6)
        .map(|_| IDS[balancer.choose(&members, client(1), None).unwrap()])
        .collect();
    assert_eq!(sequence, "abcabc");
}

#[test]
fn source_ip_is_stable_weighted_and_moves_only_the_leavers_clients() {
    let members = candidates(&[1, 1, 2]);
    let mut balancer = Balancer::new(LbAlgorithm::SourceIp);
    let clients: Vec<IpAddr> = (0..4000u32)
        .map(|n| IpAddr::from((0x0a00_0000 + n).to_be_bytes()))
        .collect();
    let first: Vec<usize> = clients
        .iter()
        .map(|ip| balancer.choose(&members, *ip, None).unwrap())
        .collect();
    let again: Vec<usize> = clients
        .iter()
        .map(|ip| balancer.choose(&members, *ip, None).unwrap())
        .collect();
    assert_eq!(first, again, "the same client always gets the same member");

    let mut counts = [0usize; 3];
    for index in &first {
        counts[*index] += 1;
    }
    // Expected 1000, 1000, 2000; the bounds are generous but catch an unweighted hash.
    assert!((800..1200).contains(&counts[0]), "{counts:?}");
    assert!((800..1200).contains(&counts[1]), "{counts:?}");
    assert!((1700..2300).contains(&counts[2]), "{counts:?}");

    let mut without_b = members.clone();
    without_b[1].healthy = false;
    for (ip, before) in clients.iter().zip(&first) {
        let after = balancer.choose(&without_b, *ip, None).unwrap();
        assert_ne!(after, 1);
        if *before != 1 {
            assert_eq!(after, *before, "a client of a remaining member stays put");
        }
    }

    // IPv6 clients hash too.
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let chosen = balancer.choose(&members, v6, None);
    assert_eq!(balancer.choose(&members, v6, None), chosen);
}

#[test]
fn persistence_is_honoured_while_the_member_takes_connections() {
    let mut members = candidates(&[1, 1, 1]);
    members[2].backup = true;
    let mut balancer = Balancer::new(LbAlgorithm::RoundRobin);
    for _ in 0..5 {
        assert_eq!(balancer.choose(&members, client(1), Some("b")), Some(1));
    }
    assert!(balancer.choose(&members, client(1), Some("gone")).is_some());

    members[1].healthy = false;
    assert_eq!(balancer.choose(&members, client(1), Some("b")), Some(0));
    members[1].healthy = true;
    members[1].weight = 0;
    assert_eq!(balancer.choose(&members, client(1), Some("b")), Some(0));

    // Stuck to a backup: honoured while the backups serve, not once a normal one is back.
    members[0].healthy = false;
    assert_eq!(balancer.choose(&members, client(1), Some("c")), Some(2));
    members[0].healthy = true;
    assert_eq!(balancer.choose(&members, client(1), Some("c")), Some(0));
}

#[test]
fn persistence_table_expires_idle_entries_and_stays_bounded() {
    let start = Instant::now();
    let mut table = PersistenceTable::new(Duration::from_secs(10), 2);
    table.insert(client(1), "a", start);
    assert_eq!(
        table.get(&client(1), start + Duration::from_secs(8)),
        Some("a")
    );
    // The read refreshed the entry.
    assert_eq!(
        table.get(&client(1), start + Duration::from_secs(16)),
        Some("a")
    );
    assert_eq!(table.get(&client(1), start + Duration::from_secs(27)), None);
    assert!(table.is_empty());

    table.insert(client(1), "a", start);
    table.insert(client(2), "b", start);
    table.insert(client(3), "c", start + Duration::from_secs(1));
    assert_eq!(
        table.len(),
        2,
        "full of live entries: the newcomer is not kept"
    );
    assert_eq!(table.get(&client(3), start + Duration::from_secs(1)), None);
    table.insert(client(3), "c", start + Duration::from_secs(20));
    assert_eq!(
        table.get(&client(3), start + Duration::from_secs(20)),
        Some("c")
    );
    assert_eq!(table.len(), 1, "expired entries made room");
}

#[test]
fn a_full_table_is_swept_only_once_an_entry_can_have_expired() {
    let start = Instant::now();
    let millis = |n: u64| start + Duration::from_millis(n);
    let key = |n: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
    let mut table = PersistenceTable::new(Duration::from_secs(10), 100);
    for n in 0..100 {
        table.insert(key(n), "a", millis(u64::from(n)));
    }
    assert_eq!(table.sweeps, 0);

    // A flood of newcomers while every entry is live: one sweep finds nothing, and no
    // other runs (each would scan the whole table) until the oldest entry can expire.
    for n in 0..1000 {
        table.insert(key(1000 + n), "b", millis(2000 + u64::from(n)));
    }
    assert_eq!(table.sweeps, 1);
    assert_eq!(table.len(), 100);
    table.insert(key(5000), "b", millis(10_000));
    assert_eq!(table.sweeps, 1, "the oldest entry expires only after 10 s");

    // Past the oldest entries' expiry one sweep makes room (entries 0..=49 are over 10 s
    // old at 10.05 s).
    table.insert(key(5001), "c", millis(10_050));
    assert_eq!(table.sweeps, 2);
    assert_eq!(table.len(), 51);
    assert_eq!(table.get(&key(5001), millis(10_050)), Some("c"));
    assert_eq!(table.get(&key(70), millis(10_050)), Some("a"));
}
