//! Client commands: they find the server through a kubeconfig, like kubectl
//! (`--kubeconfig FILE`, else `KUBECONFIG`, else `~/.kube/config`).

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The kubeconfig to use.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

/// A kube client for the server named by the kubeconfig.
pub async fn connect(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    use anyhow::Context as _;
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

pub async fn version(args: ClientArgs) -> anyhow::Result<()> {
    println!("client: ronghe {}", env!("CARGO_PKG_VERSION"));
    let client = connect(args.kubeconfig.as_ref()).await?;
    let info = client.apiserver_version().await?;
    println!(
        "server: {} (Kubernetes API {}.{})",
        info.git_version, info.major, info.minor
    );
    Ok(())
}

/// A client for a cluster presenting `token` (or no credential), that never retries (a
/// password login must not be replayed).
pub async fn for_cluster(
    cluster: &kube::config::Cluster,
    token: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let auth_info = kube::config::AuthInfo {
        token: token.map(|t| t.to_owned().into()),
        ..Default::default()
    };
    let kubeconfig = kube::config::Kubeconfig {
        clusters: vec![kube::config::NamedCluster {
            name: "ronghe".into(),
            cluster: Some(cluster.clone()),
            other: Default::default(),
        }],
        auth_infos: vec![kube::config::NamedAuthInfo {
            name: "user".into(),
            auth_info: Some(auth_info),
            other: Default::default(),
        }],
        contexts: vec![kube::config::NamedContext {
            name: "ronghe".into(),
            context: Some(kube::config::Context {
                cluster: "ronghe".into(),
                user: Some("user".into()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("ronghe".into()),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}
