//! Running the real kubectl against a test server, with its own discovery cache so caching
//! never hides a bug.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

/// A kubectl bound to one kubeconfig and one cache directory.
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

/// What one kubectl run printed.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    /// The stdout of a run that must have succeeded.
    pub fn ok(self) -> anyhow::Result<String> {
        if self.success {
            Ok(self.stdout)
        } else {
            anyhow::bail!(
                "kubectl failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
                self.code,
                self.stdout,
                self.stderr
            )
        }
    }
}

impl Kubectl {
    /// kubectl 1.32 if it is installed beside the dispatcher, else `kubectl` from PATH.
    pub fn find() -> Option<PathBuf> {
        let candidates = [
            "/usr/lib/google-cloud-sdk/bin/kubectl.1.32",
            "/usr/local/bin/kubectl",
            "/usr/bin/kubectl",
        ];
        candidates.iter().map(PathBuf::from).find(|p| p.exists())
    }

    /// The kubectl [`Kubectl::find`] finds, with `server`'s admin kubeconfig.
    pub fn for_server(server: &crate::ServerProcess) -> anyhow::Result<Self> {
        let binary = Self::find().context("kubectl is not installed")?;
        Self::new(binary, &server.kubeconfig_path())
    }

    pub fn new(binary: PathBuf, kubeconfig: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            binary,
            kubeconfig: kubeconfig.to_owned(),
            cache: tempfile::Builder::new()
                .prefix("kubectl-cache-")
                .tempdir()?,
        })
    }

    /// Runs kubectl with `args`, feeding `stdin` if given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<KubectlOutput> {
        use std::io::Write;
        let mut child = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if let Some(input) = stdin
            && let Some(mut pipe) = child.stdin.take()
        {
            pipe.write_all(input.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        Ok(KubectlOutput {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs kubectl and returns stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(args, None)?.ok()
    }

    /// `kubectl apply|create -f -` style runs with a manifest on stdin.
    pub fn with_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        self.run(args, Some(stdin))?.ok()
    }

    /// Starts kubectl in the background (e.g. `get -w`), output captured.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<std::process::Child> {
        Ok(Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?)
    }
}
