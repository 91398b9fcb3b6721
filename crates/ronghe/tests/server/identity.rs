//! Identity end to end: projects isolate their namespaces on both faces, bad credentials
//! learn nothing, tokens expire, are revoked, survive key rotation until their key is
//! pruned, and application credentials stop working once deleted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use http_body_util::BodyExt;
use ronghe_identity::keys::KeyRepository;
use ronghe_testkit::ServerProcess;
use serde_json::{Value, json};

use super::{BINARY, server};

pub(super) type Response = (u16, Value, http::HeaderMap);

/// Raw HTTPS requests with explicit credentials, through a client that has none of its own.
pub(super) struct Face {
    client: kube::Client,
}

impl Face {
    /// A client that trusts the server, presents no credential of its own and never retries
    /// (kube-rs would otherwise wait out a 429's Retry-After and try again).
    async fn new(server: &ServerProcess) -> anyhow::Result<Self> {
        Ok(Self {
            client: server.bare_client().await?,
        })
    }

    async fn start(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<http::Response<kube::client::Body>> {
        let mut builder = http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let bytes = match body {
            Some(body) => {
                let content_type = if method == "PATCH" && !path.starts_with("/identity") {
                    "application/merge-patch+json"
                } else {
                    "application/json"
                };
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                body.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let request = builder.body(kube::client::Body::from(bytes))?;
        Ok(self.client.send(request).await?)
    }

    pub(super) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let response = self.start(method, path, headers, body).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value, headers))
    }

    /// A request on the Kubernetes face with `Authorization: Bearer <token>`.
    pub(super) async fn kube(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let bearer = format!("Bearer {token}");
        self.send(method, path, &[("authorization", &bearer)], body)
            .await
    }

    /// A request on the Keystone face with `X-Auth-Token: <token>`.
    pub(super) async fn keystone(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        self.send(method, path, &[("x-auth-token", token)], body)
            .await
    }

    async fn login(&self, user: &str, password: &str, project: &str) -> anyhow::Result<Response> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
        self.send("POST", "/identity/v3/auth/tokens", &[], Some(&body))
            .await
    }

    /// Logs in and returns the token.
    pub(super) async fn token(
        &self,
        user: &str,
        password: &str,
        project: &str,
    ) -> anyhow::Result<String> {
        let response = self.login(user, password, project).await?;
        subject_token(&response)
    }

    /// The status of validating `subject` with `caller`'s token.
    async fn validate(&self, caller: &str, subject: &str) -> anyhow::Result<u16> {
        let response = self
            .send(
                "GET",
                "/identity/v3/auth/tokens",
                &[("x-auth-token", caller), ("x-subject-token", subject)],
                None,
            )
            .await?;
        Ok(response.0)
    }

    async fn admin_token(&self, server: &ServerProcess) -> anyhow::Result<String> {
        let password = std::fs::read_to_string(server.data_dir().join("admin-password"))?;
        self.token("admin", password.trim(), "admin").await
    }
}

fn subject_token(response: &Response) -> anyhow::Result<String> {
    let (status, body, headers) = response;
    ensure!(*status == 201, "login answered {status}: {body}");
    Ok(headers
        .get("x-subject-token")
        .context("no X-Subject-Token")?
        .to_str()?
        .to_owned())
}

pub(super) fn expect(response: &Response, code: u16, what: &str) {
    let (status, body, _) = response;
    assert_eq!(*status, code, "{what}: {body}");
}

/// Polls `check` until it returns true or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two projects and three users: alice (member of team-a), bob (member of team-b), carol
/// (reader on team-a).
pub(super) struct World {
    pub(super) face: Face,
    pub(super) admin: String,
    pub(super) team_a: String,
    team_b: String,
    alice: String,
    carol: String,
    member: String,
}

impl World {
    /// team-b's project id.
    pub(super) fn team_b_id(&self) -> &str {
        &self.team_b
    }

    pub(super) async fn new(server: &ServerProcess) -> anyhow::Result<Self> {
        let face = Face::new(server).await?;
        let admin = face.admin_token(server).await?;
        let mut world = World {
            face,
            admin,
            team_a: String::new(),
            team_b: String::new(),
            alice: String::new(),
            carol: String::new(),
            member: String::new(),
        };
        world.team_a = world.create_project("team-a").await?;
        world.team_b = world.create_project("team-b").await?;
        world.member = world.role("member").await?;
        let reader = world.role("reader").await?;
        world.alice = world.create_user("alice", "pw-alice").await?;
        let bob = world.create_user("bob", "pw-bob").await?;
        world.carol = world.create_user("carol", "pw-carol").await?;
        let (team_a, team_b, member) = (
            world.team_a.clone(),
            world.team_b.clone(),
            world.member.clone(),
        );
        world.grant(&team_a, &world.alice.clone(), &member).await?;
        world.grant(&team_b, &bob, &member).await?;
        world.grant(&team_a, &world.carol.clone(), &reader).await?;
        Ok(world)
    }

    async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        self.face.keystone(&self.admin, method, path, body).await
    }

    async fn create_project(&self, name: &str) -> anyhow::Result<String> {
        let response = self
            .admin(
                "POST",
                "/identity/v3/projects",
                Some(&json!({"project": {"name": name}})),
            )
            .await?;
        expect(&response, 201, "create project");
        let id = response.1["project"]["id"]
            .as_str()
            .context("project id")?
            .to_owned();
        let path = format!("/api/v1/namespaces/{name}");
        eventually(
            Duration::from_secs(10),
            "the project's namespace",
            || async { Ok(self.face.kube(&self.admin, "GET", &path, None).await?.0 == 200) },
        )
        .await?;
        Ok(id)
    }

    async fn create_user(&self, name: &str, password: &str) -> anyhow::Result<String> {
        let response = self
            .admin(
                "POST",
                "/identity/v3/users",
                Some(&json!({"user": {"name": name, "password": password}})),
            )
            .await?;
        expect(&response, 201, "create user");
        Ok(response.1["user"]["id"]
            .as_str()
            .context("user id")?
            .to_owned())
    }

    async fn role(&self, name: &str) -> anyhow::Result<String> {
        let response = self
            .admin("GET", &format!("/identity/v3/roles?name={name}"), None)
            .await?;
        expect(&response, 200, "list roles");
        Ok(response.1["roles"][0]["id"]
            .as_str()
            .context("role id")?
            .to_owned())
    }

    async fn grant(&self, project: &str, user: &str, role: &str) -> anyhow::Result<()> {
        let path = format!("/identity/v3/projects/{project}/users/{user}/roles/{role}");
        expect(&self.admin("PUT", &path, None).await?, 204, "grant");
        Ok(())
    }
}

/// A namespaced kind and a valid object of it.
struct Kind {
    prefix: &'static str,
    plural: &'static str,
    body: fn(&str, &str) -> Value,
    /// Whether only cloud admins write it, even in one's own project (quotas).
    admin_written: bool,
}

impl Kind {
    fn collection(&self, namespace: &str) -> String {
        format!("{}/namespaces/{namespace}/{}", self.prefix, self.plural)
    }

    fn name(&self) -> String {
        format!("{}{}", self.prefix, self.plural)
    }
}

fn meta(namespace: &str, name: &str) -> Value {
    json!({"name": name, "namespace": namespace})
}

fn regarding(namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace, "name": "x"})
}

const KINDS: &[Kind] = &[
    Kind {
        prefix: "/api/v1",
        plural: "configmaps",
        body: |ns, name| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(ns, name),
                   "data": {"k": "v"}})
        },
        admin_written: false,
    },
    Kind {
        prefix: "/api/v1",
        plural: "secrets",
        body: |ns, name| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(ns, name),
                   "type": "Opaque", "data": {"k": "dg=="}})
        },
        admin_written: false,
    },
    Kind {
        prefix: "/api/v1",
        plural: "pods",
        body: |ns, name| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta(ns, name),
                   "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
        },
        admin_written: false,
    },
    Kind {
        prefix: "/api/v1",
        plural: "resourcequotas",
        body: |ns, name| {
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(ns, name),
                   "spec": {"hard": {"count/widgets.example.com": "10"}}})
        },
        admin_written: true,
    },
    Kind {
        prefix: "/api/v1",
        plural: "events",
        body: |ns, name| {
            json!({"apiVersion": "v1", "kind": "Event", "metadata": meta(ns, name),
                   "involvedObject": regarding(ns), "reason": "Test", "message": "m",
                   "type": "Normal", "source": {"component": "test"}})
        },
        admin_written: false,
    },
    Kind {
        prefix: "/apis/coordination.k8s.io/v1",
        plural: "leases",
        body: |ns, name| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": meta(ns, name), "spec": {"holderIdentity": "h"}})
        },
        admin_written: false,
    },
    Kind {
        prefix: "/apis/events.k8s.io/v1",
        plural: "events",
        body: |ns, name| {
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta(ns, name),
                   "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "test/ctl",
                   "reportingInstance": "i", "action": "Test", "reason": "Test",
                   "regarding": regarding(ns), "type": "Normal"})
        },
        admin_written: false,
    },
];

const VERBS: &[&str] = &[
    "create",
    "get",
    "list",
    "watch",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

/// The status of `verb` on `kind` in `namespace` with `token`. The object `existing` exists
/// (the admin made it); `create` and `delete` work on a fresh name.
async fn attempt(
    world: &World,
    token: &str,
    kind: &Kind,
    namespace: &str,
    verb: &str,
) -> anyhow::Result<Response> {
    let face = &world.face;
    let collection = kind.collection(namespace);
    let existing = format!("{collection}/existing");
    match verb {
        "create" => {
            let body = (kind.body)(namespace, "made");
            face.kube(token, "POST", &collection, Some(&body)).await
        }
        "get" => face.kube(token, "GET", &existing, None).await,
        "list" => face.kube(token, "GET", &collection, None).await,
        "watch" => {
            let bearer = format!("Bearer {token}");
            let path = format!("{collection}?watch=true&timeoutSeconds=1");
            let response = face
                .start("GET", &path, &[("authorization", &bearer)], None)
                .await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            Ok((status, Value::Null, headers))
        }
        "update" => {
            let current = face.kube(&world.admin, "GET", &existing, None).await?;
            expect(&current, 200, "admin get for update");
            let mut body = current.1;
            body["metadata"]["labels"] = json!({"updated": "yes"});
            face.kube(token, "PUT", &existing, Some(&body)).await
        }
        "patch" => {
            let body = json!({"metadata": {"labels": {"patched": "yes"}}});
            face.kube(token, "PATCH", &existing, Some(&body)).await
        }
        "delete" => {
            // The admin makes the victim, so a refused delete is not a 404.
            let victim = "victim";
            let body = (kind.body)(namespace, victim);
            let made = face
                .kube(&world.admin, "POST", &collection, Some(&body))
                .await?;
            assert!(
                made.0 == 201 || made.0 == 409,
                "admin create victim: {}",
                made.1
            );
            face.kube(token, "DELETE", &format!("{collection}/{victim}"), None)
                .await
        }
        "deletecollection" => face.kube(token, "DELETE", &collection, None).await,
        _ => bail!("unknown verb {verb}"),
    }
}

/// (who, token, namespace, expected for reads, expected for writes); `None` is any 2xx.
type Case<'a> = (&'a str, &'a str, &'a str, Option<u16>, Option<u16>);

#[tokio::test(flavor = "multi_thread")]
async fn isolation_across_projects_on_both_faces() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let face = &world.face;
    let alice = face.token("alice", "pw-alice", "team-a").await?;
    let carol = face.token("carol", "pw-carol", "team-a").await?;

    // The admin makes one object of every kind in each namespace.
    for kind in KINDS {
        for namespace in ["team-a", "team-b"] {
            let body = (kind.body)(namespace, "existing");
            let made = face
                .kube(
                    &world.admin,
                    "POST",
                    &kind.collection(namespace),
                    Some(&body),
                )
                .await?;
            expect(
                &made,
                201,
                &format!("admin creates {} in {namespace}", kind.name()),
            );
        }
    }

    // Across namespaces alice sees only team-a.
    let all = face.kube(&alice, "GET", "/api/v1/configmaps", None).await?;
    expect(&all, 200, "alice lists all configmaps");
    let items = all.1["items"].as_array().context("items")?;
    assert!(
        items
            .iter()
            .any(|item| item["metadata"]["namespace"] == "team-a"
                && item["metadata"]["name"] == "existing"),
        "{}",
        all.1
    );
    assert!(
        items
            .iter()
            .all(|item| item["metadata"]["namespace"] == "team-a"),
        "{}",
        all.1
    );
    let namespaces = face.kube(&alice, "GET", "/api/v1/namespaces", None).await?;
    expect(&namespaces, 200, "alice lists namespaces");
    let names: Vec<&Value> = namespaces.1["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|item| &item["metadata"]["name"])
        .collect();
    assert_eq!(names, [&json!("team-a")], "{}", namespaces.1);

    // Every kind and verb: (who, namespace, expected for reads, expected for writes), where
    // `None` means any 2xx. The allowed cases run last, since they delete the objects.
    let cases: [Case; 3] = [
        ("alice", &alice, "team-b", Some(403), Some(403)),
        ("carol", &carol, "team-a", None, Some(403)),
        ("alice", &alice, "team-a", None, None),
    ];
    let mut failures = Vec::new();
    for (who, token, namespace, reads, writes) in cases {
        for kind in KINDS {
            for verb in VERBS {
                let response = attempt(&world, token, kind, namespace, verb).await?;
                let wanted = match (is_read(verb), writes) {
                    (true, _) => reads,
                    (false, None) if kind.admin_written => Some(403),
                    (false, writes) => writes,
                };
                let ok = match wanted {
                    Some(code) => response.0 == code,
                    None => (200..300).contains(&response.0),
                };
                if !ok {
                    failures.push(format!(
                        "{who} {verb} {} in {namespace}: {} (wanted {wanted:?}) {}",
                        kind.name(),
                        response.0,
                        response.1
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The Keystone face.
    expect(
        &face
            .keystone(&alice, "GET", "/identity/v3/users", None)
            .await?,
        403,
        "alice lists users",
    );
    let other = face
        .keystone(
            &alice,
            "GET",
            &format!("/identity/v3/projects/{}", world.team_b),
            None,
        )
        .await?;
    assert!(other.0 == 403 || other.0 == 404, "{} {}", other.0, other.1);
    let projects = face
        .keystone(&alice, "GET", "/identity/v3/projects", None)
        .await?;
    expect(&projects, 200, "alice lists projects");
    let ids: Vec<&Value> = projects.1["projects"]
        .as_array()
        .context("projects")?
        .iter()
        .map(|project| &project["id"])
        .collect();
    assert_eq!(ids, [&json!(world.team_a)], "{}", projects.1);
    expect(
        &face
            .keystone(
                &alice,
                "POST",
                "/identity/v3/projects",
                Some(&json!({"project": {"name": "team-c"}})),
            )
            .await?,
        403,
        "alice creates a project",
    );
    Ok(())
}

const TEAM_A_CM: &str = "/api/v1/namespaces/team-a/configmaps";

/// The token with one character in the middle changed.
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_get_401_and_nothing_learned() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let face = &world.face;

    let wrong = face.login("alice", "not-her-password", "team-a").await?;
    expect(&wrong, 401, "wrong password");
    assert_eq!(wrong.1["error"]["code"], 401, "{}", wrong.1);
    let unknown = face.login("mallory", "whatever", "team-a").await?;
    expect(&unknown, 401, "unknown user");
    assert_eq!(wrong.1, unknown.1, "the bodies tell the cases apart");

    // A disabled user can't log in, and its earlier tokens stop working.
    let carol = face.token("carol", "pw-carol", "team-a").await?;
    expect(
        &face.kube(&carol, "GET", TEAM_A_CM, None).await?,
        200,
        "carol reads",
    );
    expect(
        &world
            .admin(
                "PATCH",
                &format!("/identity/v3/users/{}", world.carol),
                Some(&json!({"user": {"enabled": false}})),
            )
            .await?,
        200,
        "disable carol",
    );
    expect(
        &face.login("carol", "pw-carol", "team-a").await?,
        401,
        "disabled login",
    );
    expect(
        &face.kube(&carol, "GET", TEAM_A_CM, None).await?,
        401,
        "disabled user's token",
    );

    // Tampered, truncated, empty and garbage tokens.
    let alice = face.token("alice", "pw-alice", "team-a").await?;
    expect(
        &face.kube(&alice, "GET", TEAM_A_CM, None).await?,
        200,
        "alice reads",
    );
    let bad = [
        ("tampered", tampered(&alice)),
        ("truncated", alice[..alice.len() - 8].to_owned()),
        ("garbage", "garbage-token".to_owned()),
    ];
    for (what, token) in &bad {
        let kube = face.kube(token, "GET", TEAM_A_CM, None).await?;
        expect(&kube, 401, &format!("{what} on the kubernetes face"));
        assert_eq!(kube.1["kind"], "Status", "{}", kube.1);
        let keystone = face
            .keystone(token, "GET", "/identity/v3/projects", None)
            .await?;
        expect(&keystone, 401, &format!("{what} on the keystone face"));
        assert_eq!(keystone.1["error"]["code"], 401, "{}", keystone.1);
        let bearer = format!("Bearer {token}");
        let keystone_bearer = face
            .send(
                "GET",
                "/identity/v3/projects",
                &[("authorization", &bearer)],
                None,
            )
            .await?;
        expect(
            &keystone_bearer,
            401,
            &format!("{what} as a bearer on the keystone face"),
        );
    }
    for header in ["Bearer ", "Bearer", "Basic Zm9vOmJhcg==", "Bearer a b c"] {
        let response = face
            .send("GET", TEAM_A_CM, &[("authorization", header)], None)
            .await?;
        expect(&response, 401, &format!("authorization {header:?}"));
    }

    // Password guessing is throttled, and then even the right password is refused.
    let erin = world.create_user("erin", "pw-erin").await?;
    world.grant(&world.team_a, &erin, &world.member).await?;
    // The guesses go in together: argon2 in a debug build is slow enough that five in a row
    // could outlast the limiter's 60 s window on a loaded machine.
    let guesses =
        futures::future::join_all((0..5).map(|_| face.login("erin", "guess", "team-a"))).await;
    for (attempt, guess) in guesses.into_iter().enumerate() {
        expect(&guess?, 401, &format!("guess {attempt}"));
    }
    let sixth = face.login("erin", "guess", "team-a").await?;
    expect(&sixth, 429, "sixth guess");
    assert_eq!(sixth.1["error"]["code"], 429, "{}", sixth.1);
    assert!(sixth.2.contains_key("retry-after"), "{:?}", sixth.2);
    expect(
        &face.login("erin", "pw-erin", "team-a").await?,
        429,
        "right password while locked out",
    );
    // Another user is not locked out.
    face.token("alice", "pw-alice", "team-a").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_revoked_tokens_are_refused() -> anyhow::Result<()> {
    // Expiry, on a server whose tokens live 2 s.
    {
        let server =
            ServerProcess::start(Path::new(BINARY), &["--token-lifetime-seconds", "2"]).await?;
        let face = Face::new(&server).await?;
        let token = face.admin_token(&server).await?;
        let long_lived = std::fs::read_to_string(server.data_dir().join("admin-token"))?;
        let long_lived = long_lived.trim();
        expect(
            &face.kube(&token, "GET", "/api/v1/namespaces", None).await?,
            200,
            "fresh token",
        );
        eventually(Duration::from_secs(15), "the token to expire", || async {
            Ok(face
                .kube(&token, "GET", "/api/v1/namespaces", None)
                .await?
                .0
                == 401)
        })
        .await?;
        let keystone = face
            .keystone(&token, "GET", "/identity/v3/projects", None)
            .await?;
        expect(&keystone, 401, "expired token on the keystone face");
        assert_eq!(face.validate(long_lived, &token).await?, 404);
    }

    // Revocation and password changes, on a server with the default lifetime.
    let server = server().await?;
    let world = World::new(&server).await?;
    let face = &world.face;
    let token = face.token("alice", "pw-alice", "team-a").await?;
    expect(
        &face.kube(&token, "GET", TEAM_A_CM, None).await?,
        200,
        "before revoking",
    );
    assert_eq!(face.validate(&world.admin, &token).await?, 200);
    let revoked = face
        .send(
            "DELETE",
            "/identity/v3/auth/tokens",
            &[("x-auth-token", &token), ("x-subject-token", &token)],
            None,
        )
        .await?;
    expect(&revoked, 204, "revoke");
    expect(
        &face.kube(&token, "GET", TEAM_A_CM, None).await?,
        401,
        "revoked",
    );
    assert_eq!(face.validate(&world.admin, &token).await?, 404);

    let before = face.token("alice", "pw-alice", "team-a").await?;
    expect(
        &face.kube(&before, "GET", TEAM_A_CM, None).await?,
        200,
        "before password change",
    );
    expect(
        &world
            .admin(
                "PATCH",
                &format!("/identity/v3/users/{}", world.alice),
                Some(&json!({"user": {"password": "new"}})),
            )
            .await?,
        200,
        "change password",
    );
    expect(
        &face.kube(&before, "GET", TEAM_A_CM, None).await?,
        401,
        "token from before the password change",
    );
    assert_eq!(face.validate(&world.admin, &before).await?, 404);
    expect(
        &face.login("alice", "pw-alice", "team-a").await?,
        401,
        "old password",
    );
    let after = face.token("alice", "new", "team-a").await?;
    expect(
        &face.kube(&after, "GET", TEAM_A_CM, None).await?,
        200,
        "new password's token",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_keep_live_tokens_until_pruned() -> anyhow::Result<()> {
    let mut server = server().await?;
    let keys = KeyRepository::new(server.data_dir().join("fernet-keys"));
    let long_lived = std::fs::read_to_string(server.data_dir().join("admin-token"))?
        .trim()
        .to_owned();

    let face = Face::new(&server).await?;
    let old = face.admin_token(&server).await?;
    assert_eq!(face.validate(&long_lived, &old).await?, 200);

    // One rotation: the old primary becomes a secondary and still decrypts.
    keys.rotate(3)?;
    server.restart().await?;
    let face = Face::new(&server).await?;
    assert_eq!(
        face.validate(&long_lived, &old).await?,
        200,
        "old token after one rotation"
    );
    expect(
        &face.kube(&old, "GET", "/api/v1/namespaces", None).await?,
        200,
        "old token after one rotation",
    );
    let new = face.admin_token(&server).await?;
    assert_eq!(face.validate(&long_lived, &new).await?, 200, "new token");
    assert_eq!(face.validate(&new, &old).await?, 200, "new validates old");

    // A second rotation prunes the old token's key.
    keys.rotate(3)?;
    server.restart().await?;
    let face = Face::new(&server).await?;
    expect(
        &face.kube(&old, "GET", "/api/v1/namespaces", None).await?,
        401,
        "old token after its key is pruned",
    );
    assert_eq!(face.validate(&long_lived, &old).await?, 404, "pruned token");
    assert_eq!(
        face.validate(&long_lived, &new).await?,
        200,
        "newer token survives"
    );
    expect(
        &face.kube(&new, "GET", "/api/v1/namespaces", None).await?,
        200,
        "newer token after two rotations",
    );
    let newest = face.admin_token(&server).await?;
    assert_eq!(
        face.validate(&long_lived, &newest).await?,
        200,
        "newest token"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn application_credentials_are_revocable() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let face = &world.face;
    let alice = face.token("alice", "pw-alice", "team-a").await?;

    let created = face
        .keystone(
            &alice,
            "POST",
            &format!("/identity/v3/users/{}/application_credentials", world.alice),
            Some(&json!({"application_credential": {"name": "ci"}})),
        )
        .await?;
    expect(&created, 201, "create application credential");
    let credential = &created.1["application_credential"];
    let id = credential["id"].as_str().context("id")?.to_owned();
    let secret = credential["secret"].as_str().context("secret")?.to_owned();

    let bearer = format!("rgac.{id}.{secret}");
    expect(
        &face.kube(&bearer, "GET", TEAM_A_CM, None).await?,
        200,
        "rgac bearer",
    );
    expect(
        &face
            .kube(&bearer, "GET", "/api/v1/namespaces/team-b/configmaps", None)
            .await?,
        403,
        "rgac bearer in another project",
    );
    let login = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret}}}});
    let issued = face
        .send("POST", "/identity/v3/auth/tokens", &[], Some(&login))
        .await?;
    let issued_token = subject_token(&issued)?;
    expect(
        &face.kube(&issued_token, "GET", TEAM_A_CM, None).await?,
        200,
        "token from the application credential",
    );

    expect(
        &face
            .keystone(
                &alice,
                "DELETE",
                &format!(
                    "/identity/v3/users/{}/application_credentials/{id}",
                    world.alice
                ),
                None,
            )
            .await?,
        204,
        "delete application credential",
    );
    expect(
        &face.kube(&bearer, "GET", TEAM_A_CM, None).await?,
        401,
        "deleted rgac bearer",
    );
    expect(
        &face
            .send("POST", "/identity/v3/auth/tokens", &[], Some(&login))
            .await?,
        401,
        "login with a deleted application credential",
    );
    expect(
        &face.kube(&issued_token, "GET", TEAM_A_CM, None).await?,
        401,
        "token issued from a deleted application credential",
    );
    Ok(())
}

/// Runs the `ronghe` binary with `stdin`; returns whether it succeeded, stdout and stderr.
fn ronghe(
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(bool, String, String)> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(BINARY)
        .args(args)
        .env_remove("OS_PASSWORD")
        .env_remove("KUBECONFIG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    Ok((
        output.status.success(),
        String::from_utf8(output.stdout)?,
        String::from_utf8(output.stderr)?,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn login_and_kubeconfig_commands_give_a_member_its_project() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let server = server().await?;
    let world = World::new(&server).await?;
    let face = &world.face;
    let admin_kubeconfig = server.kubeconfig_path();
    let admin_kubeconfig = admin_kubeconfig.to_str().context("path")?;

    // `ronghe login` prints a project-scoped token.
    let (ok, token, stderr) = ronghe(
        &[
            "login",
            "--kubeconfig",
            admin_kubeconfig,
            "-u",
            "alice",
            "-p",
            "team-a",
        ],
        "",
        &[("OS_PASSWORD", "pw-alice")],
    )?;
    ensure!(ok, "ronghe login failed: {stderr}");
    ensure!(!stderr.contains("pw-alice"), "the password was echoed");
    let token = token.trim();
    expect(
        &face.kube(token, "GET", TEAM_A_CM, None).await?,
        200,
        "login token",
    );
    expect(
        &face
            .kube(token, "GET", "/api/v1/namespaces/team-b/configmaps", None)
            .await?,
        403,
        "login token in another project",
    );
    let (ok, _, stderr) = ronghe(
        &[
            "login",
            "--kubeconfig",
            admin_kubeconfig,
            "-u",
            "alice",
            "-p",
            "team-a",
            "--password-stdin",
        ],
        "wrong\n",
        &[],
    )?;
    ensure!(
        !ok && stderr.contains("(401)"),
        "a wrong password must fail: {stderr}"
    );

    // `ronghe kubeconfig` writes a private kubeconfig with an application credential.
    let path = server.data_dir().join("alice.kubeconfig");
    let (ok, _, stderr) = ronghe(
        &[
            "kubeconfig",
            "--kubeconfig",
            admin_kubeconfig,
            "--user",
            "alice",
            "--project",
            "team-a",
            "--password-stdin",
            "-o",
            path.to_str().context("path")?,
        ],
        "pw-alice\n",
        &[],
    )?;
    ensure!(ok, "ronghe kubeconfig failed: {stderr}");
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "the kubeconfig is mode {mode:o}");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    ensure!(
        config.default_namespace == "team-a",
        "the context's namespace is the project"
    );
    let client = kube::Client::try_from(config)?;
    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::default_namespaced(client.clone());
    let configmap = serde_json::from_value(json!({"metadata": {"name": "from-kubeconfig"}}))?;
    configmaps.create(&Default::default(), &configmap).await?;
    let elsewhere: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "team-b");
    match elsewhere.list(&Default::default()).await {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => bail!("listing team-b with alice's kubeconfig gave {other:?}"),
    }
    let credentials = face
        .keystone(
            &face.token("alice", "pw-alice", "team-a").await?,
            "GET",
            &format!("/identity/v3/users/{}/application_credentials", world.alice),
            None,
        )
        .await?;
    expect(&credentials, 200, "list application credentials");
    let names: Vec<&str> = credentials.1["application_credentials"]
        .as_array()
        .context("credentials")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(
        names.iter().any(|n| n.starts_with("kubeconfig-team-a-")),
        "the kubeconfig's credential is listed (and so revocable): {names:?}"
    );
    Ok(())
}
