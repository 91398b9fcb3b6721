//! A `ronghe server` child process for one test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::BodyExt;

/// A running server. Dropping it kills the process and removes its data directory.
pub struct ServerProcess {
    binary: PathBuf,
    extra_args: Vec<String>,
    /// Whether the server runs its embedded agent (real drivers on this machine).
    embedded_agent: bool,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `binary server --no-agent` with a fresh data directory on a free loopback
    /// port, plus `extra_args`, and waits until it answers `/readyz`. Its hosts are the
    /// agents a test starts.
    pub async fn start(binary: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::launch(binary, extra_args, false).await
    }

    /// Like [`ServerProcess::start`], with the embedded agent: this machine is a host
    /// whose workloads run through runc and QEMU (root only).
    pub async fn start_with_agent(binary: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::launch(binary, extra_args, true).await
    }

    async fn launch(
        binary: &Path,
        extra_args: &[&str],
        embedded_agent: bool,
    ) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("ronghe-test-").tempdir()?;
        let log_path = data_dir.path().join("server.log");
        let mut server = Self {
            binary: binary.to_owned(),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            embedded_agent,
            data_dir,
            child: None,
            log_path,
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig_path();
        // A restart must not read the previous process's kubeconfig (its port is stale).
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(&self.binary)
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(self.agent_args())
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RONGHE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("the server exited with {status}; log:\n{}", self.log());
            }
            if kubeconfig.exists()
                && let Ok(client) = self.client().await
                && client.apiserver_version().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not become ready within 30 s; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn agent_args(&self) -> &'static [&'static str] {
        if self.embedded_agent {
            &[]
        } else {
            &["--no-agent"]
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig")
    }

    /// The server's URL, as its kubeconfig names it.
    pub fn url(&self) -> anyhow::Result<String> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())?;
        kubeconfig
            .clusters
            .into_iter()
            .find_map(|cluster| cluster.cluster?.server)
            .context("the kubeconfig names no server")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A kube-rs client with the admin kubeconfig. Its automatic retries (on 429, 503,
    /// 504) are off, so tests see exactly what the server answered.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        config.default_retry = false;
        Ok(kube::Client::try_from(config)?)
    }

    /// A kube-rs client that trusts the server, presents no credential of its own and never
    /// retries (for raw requests carrying their own, such as a Keystone token).
    pub async fn bare_client(&self) -> anyhow::Result<kube::Client> {
        self.uncredentialed(false).await
    }

    /// A kube-rs client that trusts the server but presents no credential.
    pub async fn anonymous_client(&self) -> anyhow::Result<kube::Client> {
        self.uncredentialed(true).await
    }

    async fn uncredentialed(&self, retry: bool) -> anyhow::Result<kube::Client> {
        let mut kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_path())?;
        for user in &mut kubeconfig.auth_infos {
            if let Some(auth) = user.auth_info.as_mut() {
                auth.token = None;
            }
        }
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        if !retry {
            config.default_retry = false;
        }
        Ok(kube::Client::try_from(config)?)
    }

    /// Runs `ronghe images bootstrap` against this server: the public `busybox` and
    /// `test-guest` images.
    pub fn bootstrap_images(&self) -> anyhow::Result<()> {
        let output = Command::new(&self.binary)
            .args(["images", "bootstrap", "--data-dir"])
            .arg(self.data_dir())
            .output()
            .context("running ronghe images bootstrap")?;
        if !output.status.success() {
            bail!(
                "ronghe images bootstrap failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("the server is not running");
        };
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the server did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (a crash).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn().await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server log ({}) ---\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Sends a raw request through a kube-rs client (TLS and credentials from its kubeconfig)
/// and returns the status and body.
pub async fn raw_request(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<(u16, serde_json::Value, http::HeaderMap)> {
    let mut builder = http::Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, content_type);
    }
    let request = builder.body(kube::client::Body::from(body))?;
    let response = client.send(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    Ok((status, value, headers))
}
