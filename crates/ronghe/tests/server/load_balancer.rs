//! Octavia at `/load-balancer/v2`: the real openstack CLI (python-octaviaclient) builds a
//! load balancer with listeners, pools, members, a health monitor and L7 policies, reads
//! its status tree and statistics, fails it over and deletes it with its tree; bad input
//! gets Octavia's faults and makes nothing.

use anyhow::Context;
use ronghe_testkit::{Openstack, OpenstackApi};
use serde_json::{Value, json};

use super::{server, wait_for};

const OCTAVIA: &str = "/load-balancer/v2";

fn names(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .map(|rows| rows.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default()
}

/// The message of an Octavia fault body.
fn faultstring(body: &Value) -> &str {
    body["faultstring"].as_str().unwrap_or_default()
}

/// An openstack command that must fail, with `words` in what it prints.
fn refused(os: &Openstack, args: &[&str], words: &str) -> anyhow::Result<()> {
    let (ok, stdout, stderr) = os.run(args)?;
    anyhow::ensure!(!ok, "{args:?} succeeded: {stdout}");
    anyhow::ensure!(
        stderr.contains(words),
        "{args:?}: expected {words:?} in: {stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_cli_builds_a_load_balancer_tree_and_tears_it_down() -> anyhow::Result<()> {
    let server = server().await?;
    let os = Openstack::for_data_dir(server.data_dir())?;
    os.ok(&["network", "create", "lbnet"])?;
    os.ok(&[
        "subnet",
        "create",
        "--network",
        "lbnet",
        "--subnet-range",
        "10.5.0.0/24",
        "lbsub",
    ])?;

    let providers = os.json(&["loadbalancer", "provider", "list"])?;
    assert_eq!(names(&providers), ["ronghe"], "{providers}");

    let lb = os.json(&[
        "loadbalancer",
        "create",
        "--name",
        "lb1",
        "--vip-subnet-id",
        "lbsub",
    ])?;
    let vip = lb["vip_address"].as_str().context("a VIP")?;
    assert!(vip.starts_with("10.5.0."), "{lb}");
    assert_eq!(lb["provider"], "ronghe", "{lb}");
    assert!(
        ["PENDING_CREATE", "ACTIVE", "ERROR"]
            .contains(&lb["provisioning_status"].as_str().unwrap_or_default()),
        "{lb}"
    );
    let port = os.json(&["port", "show", lb["vip_port_id"].as_str().context("port")?])?;
    assert_eq!(port["device_owner"], "Octavia", "{port}");

    let listener = os.json(&[
        "loadbalancer",
        "listener",
        "create",
        "--name",
        "web",
        "--protocol",
        "HTTP",
        "--protocol-port",
        "80",
        "--connection-limit",
        "1000",
        "--insert-headers",
        "X-Forwarded-For=true",
        "lb1",
    ])?;
    assert_eq!(listener["protocol_port"], 80, "{listener}");
    assert_eq!(listener["connection_limit"], 1000, "{listener}");
    let pool = os.json(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "main",
        "--lb-algorithm",
        "ROUND_ROBIN",
        "--listener",
        "web",
        "--protocol",
        "HTTP",
        "--session-persistence",
        "type=HTTP_COOKIE",
    ])?;
    assert_eq!(pool["lb_algorithm"], "ROUND_ROBIN", "{pool}");
    let listener = os.json(&["loadbalancer", "listener", "show", "web"])?;
    assert_eq!(listener["default_pool_id"], pool["id"], "{listener}");
    os.json(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "api",
        "--lb-algorithm",
        "LEAST_CONNECTIONS",
        "--loadbalancer",
        "lb1",
        "--protocol",
        "HTTP",
    ])?;
    for (name, address, pool_name, backup) in [
        ("m1", "10.5.0.10", "main", false),
        ("m2", "10.5.0.11", "main", true),
        ("m3", "10.5.0.12", "api", false),
    ] {
        let mut args = vec![
            "loadbalancer",
            "member",
            "create",
            "--name",
            name,
            "--address",
            address,
            "--protocol-port",
            "8080",
            "--weight",
            "5",
        ];
        if backup {
            args.push("--enable-backup");
        }
        args.push(pool_name);
        let member = os.json(&args)?;
        assert_eq!(member["address"], address, "{member}");
        assert_eq!(member["backup"], backup, "{member}");
    }
    let members = os.json(&["loadbalancer", "member", "list", "main"])?;
    assert_eq!(names(&members).len(), 2, "{members}");
    os.ok(&[
        "loadbalancer",
        "member",
        "set",
        "--weight",
        "7",
        "main",
        "m1",
    ])?;
    let m1 = os.json(&["loadbalancer", "member", "show", "main", "m1"])?;
    assert_eq!(m1["weight"], 7, "{m1}");

    let monitor = os.json(&[
        "loadbalancer",
        "healthmonitor",
        "create",
        "--name",
        "hm",
        "--delay",
        "5",
        "--timeout",
        "3",
        "--max-retries",
        "2",
        "--type",
        "HTTP",
        "--url-path",
        "/health",
        "main",
    ])?;
    assert_eq!(monitor["http_method"], "GET", "{monitor}");
    assert_eq!(monitor["expected_codes"], "200", "{monitor}");

    let policy = os.json(&[
        "loadbalancer",
        "l7policy",
        "create",
        "--name",
        "to-api",
        "--action",
        "REDIRECT_TO_POOL",
        "--redirect-pool",
        "api",
        "web",
    ])?;
    assert_eq!(policy["position"], 1, "{policy}");
    let policy_id = policy["id"].as_str().context("policy id")?;
    let rule = os.json(&[
        "loadbalancer",
        "l7rule",
        "create",
        "--compare-type",
        "STARTS_WITH",
        "--type",
        "PATH",
        "--value",
        "/api",
        policy_id,
    ])?;
    assert_eq!(rule["value"], "/api", "{rule}");
    let rules = os.json(&["loadbalancer", "l7rule", "list", policy_id])?;
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");

    // Bad input: Octavia's faults, nothing made.
    refused(
        &os,
        &[
            "loadbalancer",
            "healthmonitor",
            "create",
            "--delay",
            "2",
            "--timeout",
            "5",
            "--max-retries",
            "2",
            "--type",
            "TCP",
            "api",
        ],
        "must not be longer than its delay",
    )?;
    refused(
        &os,
        &[
            "loadbalancer",
            "listener",
            "create",
            "--protocol",
            "TCP",
            "--protocol-port",
            "80",
            "lb1",
        ],
        "already using protocol",
    )?;
    refused(
        &os,
        &[
            "loadbalancer",
            "l7rule",
            "create",
            "--compare-type",
            "REGEX",
            "--type",
            "PATH",
            "--value",
            "^/api([",
            policy_id,
        ],
        "invalid regex",
    )?;
    refused(
        &os,
        &[
            "loadbalancer",
            "member",
            "create",
            "--address",
            "192.168.77.7",
            "--protocol-port",
            "80",
            "main",
        ],
        "not on any subnet reachable",
    )?;
    refused(
        &os,
        &[
            "loadbalancer",
            "listener",
            "create",
            "--protocol",
            "TERMINATED_HTTPS",
            "--protocol-port",
            "443",
            "--default-tls-container-ref",
            "no-such-secret",
            "lb1",
        ],
        "Could not retrieve certificate",
    )?;
    let listeners = os.json(&["loadbalancer", "listener", "list"])?;
    assert_eq!(names(&listeners), ["web"], "{listeners}");
    assert_eq!(
        names(&os.json(&["loadbalancer", "healthmonitor", "list"])?),
        ["hm"]
    );

    // The status tree, statistics, a failover.
    // `status show` prints its JSON without being asked (and refuses `-f`).
    let status: Value =
        serde_json::from_str(&os.ok(&["loadbalancer", "status", "show", "lb1"])?)?;
    let tree = &status["loadbalancer"];
    assert_eq!(tree["name"], "lb1", "{status}");
    assert_eq!(tree["listeners"][0]["name"], "web", "{status}");
    let pools = &tree["listeners"][0]["pools"];
    assert_eq!(pools.as_array().map(Vec::len), Some(2), "{status}");
    let stats = os.json(&["loadbalancer", "stats", "show", "lb1"])?;
    assert_eq!(stats["total_connections"], 0, "{stats}");
    os.ok(&["loadbalancer", "failover", "lb1"])?;

    let shown = os.json(&["loadbalancer", "show", "lb1"])?;
    let listener_id = listener["id"].as_str().context("listener id")?;
    assert!(
        shown["listeners"].to_string().contains(listener_id),
        "{shown}"
    );
    os.ok(&["loadbalancer", "set", "--description", "front door", "lb1"])?;
    let shown = os.json(&["loadbalancer", "show", "lb1"])?;
    assert_eq!(shown["description"], "front door", "{shown}");

    // A load balancer with children goes only with --cascade, and takes its tree along.
    refused(&os, &["loadbalancer", "delete", "lb1"], "it has children")?;
    os.ok(&["loadbalancer", "l7policy", "delete", policy_id])?;
    os.ok(&["loadbalancer", "member", "delete", "main", "m2"])?;
    os.ok(&["loadbalancer", "delete", "--cascade", "lb1"])?;
    let api = OpenstackApi::admin(&server, OCTAVIA).await?;
    super::wait_for(
        std::time::Duration::from_secs(30),
        "the tree to be gone",
        || async {
            let left = api.count("/lbaas/pools", "pools").await?
                + api.count("/lbaas/listeners", "listeners").await?
                + api.count("/lbaas/loadbalancers", "loadbalancers").await?;
            Ok((left == 0).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn octavia_faults_for_bad_requests() -> anyhow::Result<()> {
    let server = server().await?;
    let api = OpenstackApi::admin(&server, OCTAVIA).await?;
    let (code, body) = api
        .send(
            "GET",
            &format!("/lbaas/loadbalancers/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await?;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["faultcode"], "Client", "{body}");
    assert!(faultstring(&body).contains("not found"), "{body}");
    assert_eq!(body["debuginfo"], Value::Null, "{body}");
    let (code, body) = api
        .send(
            "POST",
            "/lbaas/loadbalancers",
            Some(&json!({"loadbalancer": {"name": "x"}})),
        )
        .await?;
    assert_eq!(code, 400, "{body}");
    assert!(
        faultstring(&body).contains("VIP must contain one of"),
        "{body}"
    );
    let (code, body) = api
        .send(
            "POST",
            "/lbaas/loadbalancers",
            Some(&json!({"loadbalancer": {"vip_subnet_id": "x", "bogus": 1}})),
        )
        .await?;
    assert_eq!(code, 400, "{body}");
    assert!(faultstring(&body).contains("Unknown attribute"), "{body}");
    let (code, _) = api.send("GET", "/lbaas/loadbalancers", None).await?;
    assert_eq!(code, 200);
    assert_eq!(api.count("/lbaas/loadbalancers", "loadbalancers").await?, 0);
    Ok(())
}

/// The members of pool `pool` as (address, port, weight, name), sorted.
async fn members_of(
    api: &OpenstackApi,
    pool: &str,
) -> anyhow::Result<Vec<(String, u64, u64, String)>> {
    let (code, body) = api
        .send("GET", &format!("/lbaas/pools/{pool}/members"), None)
        .await?;
    anyhow::ensure!(code == 200, "{code}: {body}");
    let mut members: Vec<(String, u64, u64, String)> = body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["address"].as_str().unwrap_or_default().to_owned(),
                m["protocol_port"].as_u64().unwrap_or_default(),
                m["weight"].as_u64().unwrap_or_default(),
                m["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    members.sort();
    Ok(members)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_member_update_creates_updates_and_deletes_or_changes_nothing() -> anyhow::Result<()>
{
    let server = server().await?;
    let os = Openstack::for_data_dir(server.data_dir())?;
    os.ok(&["network", "create", "bnet"])?;
    os.ok(&[
        "subnet",
        "create",
        "--network",
        "bnet",
        "--subnet-range",
        "10.6.0.0/24",
        "bsub",
    ])?;
    os.ok(&[
        "loadbalancer",
        "create",
        "--name",
        "blb",
        "--vip-subnet-id",
        "bsub",
    ])?;
    let pool = os.json(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "bpool",
        "--lb-algorithm",
        "ROUND_ROBIN",
        "--loadbalancer",
        "blb",
        "--protocol",
        "HTTP",
    ])?;
    let pool = pool["id"].as_str().context("a pool id")?.to_owned();
    for (name, address) in [("a", "10.6.0.15"), ("b", "10.6.0.16")] {
        os.ok(&[
            "loadbalancer",
            "member",
            "create",
            "--name",
            name,
            "--address",
            address,
            "--protocol-port",
            "80",
            &pool,
        ])?;
    }
    let api = OpenstackApi::admin(&server, OCTAVIA).await?;
    let path = format!("/lbaas/pools/{pool}/members");
    let member = |address: &str, weight: u64, name: &str| json!({"address": address, "protocol_port": 80, "weight": weight, "name": name});

    // Bad entries change nothing: an address twice, an address no subnet of the VIP
    // reaches (admission, found by the dry run), an attribute members do not have.
    let before = members_of(&api, &pool).await?;
    for (members, code, words) in [
        (
            json!([member("10.6.0.17", 1, "c"), member("10.6.0.17", 2, "d")]),
            409,
            "already using ip 10.6.0.17 on protocol_port 80",
        ),
        (
            json!([
                member("10.6.0.16", 5, "b"),
                member("192.168.99.9", 1, "far")
            ]),
            400,
            "not on any subnet reachable",
        ),
        (
            json!([{"address": "10.6.0.18", "protocol_port": 80, "bogus": 1}]),
            400,
            "Unknown attribute",
        ),
        (json!([{"address": "10.6.0.18"}]), 400, "protocol_port"),
    ] {
        let (status, body) = api
            .send("PUT", &path, Some(&json!({"members": members})))
            .await?;
        assert_eq!(status, code, "{members}: {body}");
        assert!(
            faultstring(&body).contains(words),
            "{words:?} not in {body}"
        );
        assert_eq!(
            members_of(&api, &pool).await?,
            before,
            "{members} changed something"
        );
    }

    // 16 is updated, 17 made, 15 deleted.
    let (status, body) = api
        .send(
            "PUT",
            &path,
            Some(&json!({"members": [member("10.6.0.16", 7, "b2"), member("10.6.0.17", 1, "c")]})),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let wanted = [
        ("10.6.0.16".to_owned(), 80, 7, "b2".to_owned()),
        ("10.6.0.17".to_owned(), 80, 1, "c".to_owned()),
    ];
    settled(&api, &pool, |members| members == wanted).await?;
    // additive_only keeps the members not listed.
    let (status, body) = api
        .send(
            "PUT",
            &format!("{path}?additive_only=true"),
            Some(&json!({"members": [member("10.6.0.18", 3, "d")]})),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    settled(&api, &pool, |members| members.len() == 3).await?;
    // An empty list empties the pool.
    let (status, body) = api
        .send("PUT", &path, Some(&json!({"members": []})))
        .await?;
    assert_eq!(status, 202, "{body}");
    settled(&api, &pool, |members| members.is_empty()).await?;
    Ok(())
}

/// Waits until the members of `pool` are as `wanted` says (deleted ones may linger
/// PENDING_DELETE for a moment, as in Octavia).
async fn settled(
    api: &OpenstackApi,
    pool: &str,
    wanted: impl Fn(&[(String, u64, u64, String)]) -> bool,
) -> anyhow::Result<()> {
    wait_for(
        std::time::Duration::from_secs(30),
        "the pool's members",
        || async {
            let members = members_of(api, pool).await?;
            Ok(wanted(&members).then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fully_populated_load_balancer_is_made_in_one_call_or_not_at_all() -> anyhow::Result<()> {
    let server = server().await?;
    let os = Openstack::for_data_dir(server.data_dir())?;
    os.ok(&["network", "create", "gnet"])?;
    let subnet = os.json(&[
        "subnet",
        "create",
        "--network",
        "gnet",
        "--subnet-range",
        "10.7.0.0/24",
        "gsub",
    ])?;
    let subnet = subnet["id"].as_str().context("a subnet id")?.to_owned();
    let api = OpenstackApi::admin(&server, OCTAVIA).await?;
    let graph = |name: &str, member: &str| {
        json!({"loadbalancer": {
            "name": name,
            "vip_subnet_id": subnet,
            "listeners": [{
                "name": format!("{name}-web"),
                "protocol": "HTTP",
                "protocol_port": 80,
                "default_pool": {
                    "name": format!("{name}-webpool"),
                    "protocol": "HTTP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [
                        {"address": "10.7.0.10", "protocol_port": 8080},
                        {"address": member, "protocol_port": 8080},
                    ],
                    "healthmonitor": {"type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 2},
                },
                "l7policies": [{
                    "action": "REDIRECT_TO_POOL",
                    "redirect_pool": {"name": format!("{name}-api")},
                    "rules": [{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/api"}],
                }],
            }],
            "pools": [{
                "name": format!("{name}-api"),
                "protocol": "HTTP",
                "lb_algorithm": "LEAST_CONNECTIONS",
                "members": [{"address": "10.7.0.12", "protocol_port": 9000}],
            }],
        }})
    };

    let (status, body) = api
        .send(
            "POST",
            "/lbaas/loadbalancers",
            Some(&graph("glb", "10.7.0.11")),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let lb = &body["loadbalancer"];
    let pool_named = |name: &str| {
        lb["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let (web, api_pool) = (pool_named("glb-webpool"), pool_named("glb-api"));
    assert_eq!(web["members"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(web["healthmonitor"]["type"], "HTTP", "{body}");
    assert_eq!(api_pool["lb_algorithm"], "LEAST_CONNECTIONS", "{body}");
    let listener = &lb["listeners"][0];
    assert_eq!(listener["default_pool_id"], web["id"], "{body}");
    let policy = &listener["l7policies"][0];
    assert_eq!(
        policy["redirect_pool_id"], api_pool["id"],
        "a redirect pool named after one of the request's pools is that pool: {body}"
    );
    assert_eq!(policy["rules"][0]["value"], "/api", "{body}");
    // The CLI sees the same graph.
    let listed = os.json(&["loadbalancer", "listener", "list", "--loadbalancer", "glb"])?;
    assert_eq!(names(&listed), ["glb-web"]);
    let members = os.json(&["loadbalancer", "member", "list", "glb-webpool"])?;
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");

    // A graph with a bad part makes nothing: not even its load balancer stays.
    for (request, words) in [
        (graph("bad", "192.168.9.9"), "not on any subnet reachable"),
        (
            {
                let mut request = graph("odd", "10.7.0.11");
                request["loadbalancer"]["listeners"][0]["bogus"] = json!(1);
                request
            },
            "Unknown attribute",
        ),
        (
            {
                let mut request = graph("flat", "10.7.0.11");
                request["loadbalancer"]["pools"] = json!({"name": "x"});
                request
            },
            "Invalid input for field/attribute pools",
        ),
    ] {
        let (status, body) = api
            .send("POST", "/lbaas/loadbalancers", Some(&request))
            .await?;
        assert_eq!(status, 400, "{body}");
        assert!(
            faultstring(&body).contains(words),
            "{words:?} not in {body}"
        );
    }
    wait_for(
        std::time::Duration::from_secs(30),
        "only the good load balancer left",
        || async {
            let listed = os.json(&["loadbalancer", "list"])?;
            Ok((names(&listed) == ["glb"]).then_some(()))
        },
    )
    .await?;
    Ok(())
}
