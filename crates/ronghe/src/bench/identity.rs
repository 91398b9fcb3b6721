//! `ronghe bench identity`: what identity costs. Token issue per second and validation
//! cost per call, measured in process on the code every request runs (Fernet decryption
//! and directory lookups, no store read), and one password login (argon2id), which is
//! slow on purpose. Keystone, for comparison, takes about 77 ms to issue a token.

use std::time::{Duration, Instant};

use clap::Args;
use ronghe_apiserver::identity::{IdentityService, RequestedScope, UserRef};
use ronghe_identity::directory::IdentityKind;
use ronghe_identity::token::Method;
use serde_json::json;

#[derive(Args, Debug)]
pub struct IdentityBenchArgs {
    /// How long each measurement runs.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

pub async fn run(args: IdentityBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let service = IdentityService::new(&dir.path().join("keys"), Duration::from_secs(3600))?;
    let password_hash = ronghe_identity::password::hash_password("bench-password")?;
    let object = |name: &str, spec: serde_json::Value| {
        json!({"metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
               "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec})
    };
    // A directory of a realistic size: 1,000 users in 100 projects.
    service.seed(|directory| -> anyhow::Result<()> {
        for (role, implies) in [
            ("admin", vec!["member"]),
            ("member", vec!["reader"]),
            ("reader", vec![]),
        ] {
            directory
                .upsert(
                    IdentityKind::Role,
                    &object(role, json!({"implies": implies})),
                )
                .map_err(anyhow::Error::msg)?;
        }
        for p in 0..100 {
            directory
                .upsert(
                    IdentityKind::Project,
                    &object(&format!("project-{p}"), json!({})),
                )
                .map_err(anyhow::Error::msg)?;
        }
        for u in 0..1000 {
            let name = format!("user-{u}");
            directory
                .upsert(
                    IdentityKind::User,
                    &object(&name, json!({"passwordHash": password_hash})),
                )
                .map_err(anyhow::Error::msg)?;
            let spec =
                json!({"user": name, "role": "member", "project": format!("project-{}", u % 100)});
            directory
                .upsert(
                    IdentityKind::RoleAssignment,
                    &object(&format!("a-{u}"), spec),
                )
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    })?;
    let user = service
        .directory()
        .user("user-7")
        .map(|u| u.uid)
        .ok_or_else(|| anyhow::anyhow!("no user"))?;
    let scope = RequestedScope::ProjectName("project-7".into());
    let window = Duration::from_secs(args.seconds.max(1));

    // Issue: build the principal, encrypt the token.
    let started = Instant::now();
    let mut issued = 0u64;
    let mut token = String::new();
    while started.elapsed() < window {
        token = service
            .issue(user, &scope, vec![Method::Password], None, None)
            .map_err(anyhow::Error::msg)?
            .0;
        issued += 1;
    }
    let issue_rate = issued as f64 / started.elapsed().as_secs_f64();

    // Validate: what every request on either face runs.
    let started = Instant::now();
    let mut validated = 0u64;
    while started.elapsed() < window {
        service.validate(&token).map_err(anyhow::Error::msg)?;
        validated += 1;
    }
    let validate_cost = started.elapsed().as_secs_f64() * 1e6 / validated as f64;

    // A whole password login: the argon2id check, then the token.
    let logins = 10;
    let started = Instant::now();
    for _ in 0..logins {
        let uid = service
            .check_password(
                &UserRef::Name("user-7".into()),
                "bench-password",
                [127, 0, 0, 1].into(),
            )
            .map_err(anyhow::Error::msg)?;
        service
            .issue(uid, &scope, vec![Method::Password], None, None)
            .map_err(anyhow::Error::msg)?;
    }
    let login_ms = started.elapsed().as_secs_f64() * 1e3 / logins as f64;

    println!("identity benchmark (in process, 1 thread; directory: 1,000 users, 100 projects)");
    println!(
        "  token issue            {issue_rate:>10.0} tokens/s   ({:.1} µs each)",
        1e6 / issue_rate
    );
    println!(
        "  token validation       {validate_cost:>10.2} µs per request (Fernet + directory, no store read)"
    );
    println!("  password login         {login_ms:>10.1} ms per login (argon2id verify + issue)");
    println!("  token length           {:>10} characters", token.len());
    println!("  Keystone (reference)   {:>10} ms per token issue", 77);
    Ok(())
}
