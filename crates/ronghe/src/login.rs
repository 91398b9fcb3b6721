//! The user's identity commands: `ronghe login` prints a token for a user and project
//! (what `openstack token issue` gives), and `ronghe kubeconfig` prints a kubeconfig for
//! them that holds a long-lived, revocable application credential limited to the project.
//!
//! Both talk to the Keystone face (`/identity/v3`) of the server named by a kubeconfig's
//! current cluster (or `--server` and `--ca-file`), presenting no credential but the
//! password; the password comes from `--password-file`, `--password-stdin`, `OS_PASSWORD`
//! or a prompt, and is never printed.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use http_body_util::BodyExt;
use ronghe_apiserver::identity::APPLICATION_CREDENTIAL_TOKEN_PREFIX;
use serde_json::{Value, json};

/// Where the server is and who logs in.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The kubeconfig whose current cluster names the server (its credential is not used);
    /// default: `KUBECONFIG`, then `~/.kube/config`.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The server's URL, instead of the kubeconfig's (`https://HOST:PORT`).
    #[arg(long, requires = "ca_file")]
    server: Option<String>,
    /// The CA certificate (PEM) the server's certificate is checked against.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The user's name.
    #[arg(long, short = 'u')]
    user: String,
    /// The project to scope to (the namespace of the same name).
    #[arg(long, short = 'p')]
    project: String,
    /// The Keystone domain of the user and the project.
    #[arg(long, default_value = "Default")]
    domain: String,
    /// Read the password from this file.
    #[arg(long, conflicts_with = "password_stdin")]
    password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    login: LoginArgs,
    /// Write the kubeconfig here (mode 0600) instead of printing it.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// When the credential stops working, as an RFC 3339 time (default: never; delete the
    /// application credential to revoke it).
    #[arg(long)]
    expires_at: Option<jiff::Timestamp>,
}

/// A project-scoped token and what the server said about it.
struct Login {
    client: kube::Client,
    cluster: kube::config::Cluster,
    token: String,
    user_id: String,
    expires_at: String,
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let login = log_in(&args).await?;
    eprintln!(
        "Logged in as {} in project {}; the token expires at {}.",
        args.user, args.project, login.expires_at
    );
    println!("{}", login.token);
    Ok(())
}

pub async fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<()> {
    let login = log_in(&args.login).await?;
    let LoginArgs { user, project, .. } = &args.login;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let request = json!({"application_credential": {
        "name": format!("kubeconfig-{project}-{suffix}"),
        "description": format!("kubeconfig for {user} in project {project}, made by ronghe kubeconfig"),
        "expires_at": args.expires_at.map(|t| t.to_string()),
    }});
    let path = format!(
        "/identity/v3/users/{}/application_credentials",
        login.user_id
    );
    let (status, _, body) = send(&login.client, &path, Some(&login.token), &request).await?;
    if status != 201 {
        bail!(
            "creating an application credential failed ({status}): {}",
            fault(&body)
        );
    }
    let credential = &body["application_credential"];
    let (Some(id), Some(secret)) = (credential["id"].as_str(), credential["secret"].as_str())
    else {
        bail!("the server's application credential has no id or secret");
    };
    let token = format!("{APPLICATION_CREDENTIAL_TOKEN_PREFIX}{id}.{secret}");
    let user_entry = format!("{user}@{project}");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "ronghe", "cluster": cluster_json(&login.cluster)?}],
        "users": [{"name": user_entry, "user": {"token": token}}],
        "contexts": [{"name": project, "context": {"cluster": "ronghe", "user": user_entry, "namespace": project}}],
        "current-context": project,
        "preferences": {},
    });
    let yaml = serde_yaml_ng::to_string(&kubeconfig)?;
    match &args.output {
        Some(path) => {
            ronghe_server::files::write_private(path, yaml.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "Wrote {}: user {user} in project {project}, application credential {id}.",
                path.display()
            );
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

async fn log_in(args: &LoginArgs) -> anyhow::Result<Login> {
    let cluster = cluster(args)?;
    let client = crate::client::for_cluster(&cluster, None).await?;
    let password = password(args)?;
    let request = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": args.user,
            "domain": {"name": args.domain},
            "password": password,
        }}},
        "scope": {"project": {"name": args.project, "domain": {"name": args.domain}}},
    }});
    let (status, headers, body) = send(&client, "/identity/v3/auth/tokens", None, &request).await?;
    if status != 201 {
        bail!("logging in failed ({status}): {}", fault(&body));
    }
    let token = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .context("the server sent no X-Subject-Token")?
        .to_owned();
    Ok(Login {
        client,
        cluster,
        token,
        user_id: body["token"]["user"]["id"]
            .as_str()
            .context("the token names no user")?
            .to_owned(),
        expires_at: body["token"]["expires_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The cluster to talk to: `--server` with `--ca-file`, or the kubeconfig's current one.
/// A password only goes to a server whose certificate is checked.
fn cluster(args: &LoginArgs) -> anyhow::Result<kube::config::Cluster> {
    let cluster = named_cluster(args)?;
    if !cluster
        .server
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
    {
        bail!("the server must be an https:// URL, so the password is not sent in clear");
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        bail!(
            "the kubeconfig skips TLS verification; refusing to send a password (give --ca-file)"
        );
    }
    Ok(cluster)
}

fn named_cluster(args: &LoginArgs) -> anyhow::Result<kube::config::Cluster> {
    if let (Some(server), Some(ca_file)) = (&args.server, &args.ca_file) {
        let ca =
            std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        return Ok(kube::config::Cluster {
            server: Some(server.clone()),
            certificate_authority_data: Some(STANDARD.encode(ca)),
            ..Default::default()
        });
    }
    let kubeconfig = match &args.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading {}", path.display()))?,
        None => kube::config::Kubeconfig::read().context(
            "no kubeconfig: pass --kubeconfig (the server's DIR/kubeconfig names it) or --server and --ca-file",
        )?,
    };
    let context_name = kubeconfig
        .current_context
        .clone()
        .context("the kubeconfig has no current context")?;
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .context("the kubeconfig's current context is not defined")?;
    let mut cluster = kubeconfig
        .clusters
        .into_iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster)
        .context("the kubeconfig's current cluster is not defined")?;
    if let Some(ca_file) = &args.ca_file {
        let ca =
            std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        cluster.certificate_authority_data = Some(STANDARD.encode(ca));
        cluster.certificate_authority = None;
        cluster.insecure_skip_tls_verify = None;
    }
    Ok(cluster)
}

/// The cluster as a kubeconfig entry, with its CA embedded so the file stands alone.
fn cluster_json(cluster: &kube::config::Cluster) -> anyhow::Result<Value> {
    let mut entry = json!({"server": cluster.server});
    if let Some(data) = &cluster.certificate_authority_data {
        entry["certificate-authority-data"] = json!(data);
    } else if let Some(path) = &cluster.certificate_authority {
        let pem = std::fs::read(path).with_context(|| format!("reading the CA file {path}"))?;
        entry["certificate-authority-data"] = json!(STANDARD.encode(pem));
    }
    if let Some(name) = &cluster.tls_server_name {
        entry["tls-server-name"] = json!(name);
    }
    Ok(entry)
}

/// POSTs JSON to the Keystone face; returns the status, headers and JSON body.
async fn send(
    client: &kube::Client,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, http::HeaderMap, Value)> {
    let mut request =
        http::Request::post(path).header(http::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header("X-Auth-Token", token);
    }
    let request = request.body(kube::client::Body::from(body.to_string().into_bytes()))?;
    let response = client
        .send(request)
        .await
        .context("the server cannot be reached")?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((parts.status.as_u16(), parts.headers, body))
}

/// The message of a Keystone fault body.
fn fault(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or("no message")
        .to_owned()
}

fn password(args: &LoginArgs) -> anyhow::Result<String> {
    let password = if let Some(path) = &args.password_file {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    } else if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line
    } else if let Ok(password) = std::env::var("OS_PASSWORD") {
        password
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {}: ", args.user))?
    } else {
        bail!("no password: use --password-file, --password-stdin or OS_PASSWORD");
    };
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
