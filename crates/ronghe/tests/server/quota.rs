//! Quotas on the wire: the OpenStack quota APIs answer bad input in each service's own
//! fault shape and refuse members, and a ResourceQuota with a bad amount is a 422.

use anyhow::Context;
use serde_json::{Value, json};

use super::identity::{World, expect};
use super::server;

#[tokio::test(flavor = "multi_thread")]
async fn quota_apis_refuse_bad_input_in_each_services_shape() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let face = &world.face;
    let admin = world.admin.as_str();
    let team_a = world.team_a.as_str();
    let compute = format!("/compute/v2.1/os-quota-sets/{team_a}");
    let network = format!("/networking/v2.0/quotas/{team_a}");
    let volume = format!("/volume/v3/os-quota-sets/{team_a}");
    let load_balancer = format!("/load-balancer/v2/lbaas/quotas/{team_a}");

    // Unknown keys, bad values and unlimited-only names: 400, in the service's shape.
    let per_user = format!("{compute}?user_id=someone");
    let cases: [(&str, Value, &str); 8] = [
        (
            &per_user,
            json!({"quota_set": {"instances": 2}}),
            "badRequest",
        ),
        (
            &volume,
            json!({"quota_set": {"gigabytes": 2_147_483_647}}),
            "badRequest",
        ),
        (
            &network,
            json!({"quota": {"port": 1_i64 << 40}}),
            "NeutronError",
        ),
        (
            &compute,
            json!({"quota_set": {"instances": 2, "bogus": 1}}),
            "badRequest",
        ),
        (
            &compute,
            json!({"quota_set": {"metadata_items": 5}}),
            "badRequest",
        ),
        (&volume, json!({"quota_set": {"volumes": -7}}), "badRequest"),
        (&network, json!({"quota": {"port": "many"}}), "NeutronError"),
        (
            &load_balancer,
            json!({"quota": {"pool": 1.5}}),
            "faultstring",
        ),
    ];
    for (path, body, shape) in cases {
        let response = face.keystone(admin, "PUT", path, Some(&body)).await?;
        expect(&response, 400, &format!("PUT {path} {body}"));
        assert!(response.1.get(shape).is_some(), "{path}: {}", response.1);
    }
    // Nothing was written by the refused requests.
    let shown = face.keystone(admin, "GET", &compute, None).await?;
    expect(&shown, 200, "show");
    assert_eq!(shown.1["quota_set"]["instances"], -1, "{}", shown.1);

    // Each service resets only its own limits; -1 for a name Ronghe does not limit is fine.
    let body = json!({"quota_set": {"instances": 3, "metadata_items": -1}});
    expect(
        &face.keystone(admin, "PUT", &compute, Some(&body)).await?,
        200,
        "set instances",
    );
    let body = json!({"quota": {"port": 7}});
    expect(
        &face.keystone(admin, "PUT", &network, Some(&body)).await?,
        200,
        "set ports",
    );
    expect(
        &face.keystone(admin, "DELETE", &network, None).await?,
        204,
        "reset network",
    );
    let shown = face.keystone(admin, "GET", &compute, None).await?;
    assert_eq!(shown.1["quota_set"]["instances"], 3, "{}", shown.1);
    let shown = face.keystone(admin, "GET", &network, None).await?;
    assert_eq!(shown.1["quota"]["port"], -1, "{}", shown.1);
    expect(
        &face.keystone(admin, "DELETE", &compute, None).await?,
        202,
        "reset compute",
    );
    let gone = face
        .kube(
            admin,
            "GET",
            "/api/v1/namespaces/team-a/resourcequotas/openstack",
            None,
        )
        .await?;
    expect(&gone, 404, "the quota goes with its last limit");

    // A member reads its own project's quota, not another's, and sets none.
    let alice = face.token("alice", "pw-alice", "team-a").await?;
    expect(
        &face.keystone(&alice, "GET", &compute, None).await?,
        200,
        "member show",
    );
    let other = format!("/networking/v2.0/quotas/{}", world.team_b_id());
    let refused = face.keystone(&alice, "GET", &other, None).await?;
    expect(&refused, 403, "member show elsewhere");
    assert!(refused.1.get("NeutronError").is_some(), "{}", refused.1);
    let body = json!({"quota_set": {"instances": 50}});
    let refused = face.keystone(&alice, "PUT", &compute, Some(&body)).await?;
    expect(&refused, 403, "member set");
    assert!(refused.1.get("forbidden").is_some(), "{}", refused.1);

    // Unknown projects are 404 for admins.
    let missing = face
        .keystone(
            admin,
            "GET",
            "/compute/v2.1/os-quota-sets/0123456789abcdef0123456789abcdef",
            None,
        )
        .await?;
    expect(&missing, 404, "unknown project");
    assert!(missing.1.get("itemNotFound").is_some(), "{}", missing.1);

    // A limit below what is in use is refused where the service checks (Neutron with
    // check_limit); the detail shows the use.
    let body = json!({"quota": {"network": 3, "check_limit": true}});
    expect(
        &face.keystone(admin, "PUT", &network, Some(&body)).await?,
        200,
        "set network",
    );
    let details = face
        .keystone(admin, "GET", &format!("{network}/details"), None)
        .await?;
    expect(&details, 200, "details");
    assert_eq!(
        details.1["quota"]["network"],
        json!({"used": 0, "limit": 3, "reserved": 0}),
        "{}",
        details.1
    );

    // The Kubernetes face refuses a quota with a bad amount, and a member's write to one.
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "bad"}, "spec": {"hard": {"pods": "lots"}}});
    let quotas = "/api/v1/namespaces/team-a/resourcequotas";
    let invalid = face.kube(admin, "POST", quotas, Some(&quota)).await?;
    expect(&invalid, 422, "invalid quota");
    let message = invalid.1["message"].as_str().context("message")?;
    assert!(message.contains("spec.hard[pods]"), "{message}");
    let fine = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "mine"}, "spec": {"hard": {"pods": "100"}}});
    expect(
        &face.kube(&alice, "POST", quotas, Some(&fine)).await?,
        403,
        "member creates a quota",
    );
    Ok(())
}
