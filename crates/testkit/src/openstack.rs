//! Running the real `openstack` CLI (python-openstackclient from PyPI, in the virtualenv
//! `scripts/test` makes) against a test server, through the `clouds.yaml` the server wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// An `openstack` CLI bound to one server's `clouds.yaml`.
pub struct Openstack {
    binary: PathBuf,
    clouds: PathBuf,
    home: tempfile::TempDir,
}

impl Openstack {
    /// `$RONGHE_OPENSTACK_CLI`, else the virtualenv `scripts/test` makes under `target/`.
    pub fn find() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("RONGHE_OPENSTACK_CLI") {
            return Some(PathBuf::from(path));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let venv = workspace.join("target/openstack-venv/bin/openstack");
        venv.exists().then_some(venv)
    }

    /// The CLI [`Openstack::find`] finds, bound to the server whose data directory is
    /// `data_dir`; a loud failure when it is missing.
    pub fn for_data_dir(data_dir: &Path) -> anyhow::Result<Self> {
        let binary = Self::find().context(
            "the openstack CLI is missing: run ./scripts/test, which installs it into target/openstack-venv",
        )?;
        Self::new(binary, data_dir)
    }

    pub fn new(binary: PathBuf, data_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            binary,
            clouds: data_dir.join("clouds.yaml"),
            home: tempfile::Builder::new()
                .prefix("openstack-home-")
                .tempdir()?,
        })
    }

    /// Runs `openstack --os-cloud ronghe ARGS`; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
        let output = Command::new(&self.binary)
            .arg("--os-cloud")
            .arg("ronghe")
            .args(args)
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .env("HOME", self.home.path())
            .env_remove("OS_CLOUD")
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// The stdout of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let (success, stdout, stderr) = self.run(args)?;
        if success {
            Ok(stdout)
        } else {
            anyhow::bail!("openstack {args:?} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
    }

    /// The JSON a `-f json` run printed.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut args = args.to_vec();
        args.extend(["-f", "json"]);
        let stdout = self.ok(&args)?;
        serde_json::from_str(&stdout).with_context(|| format!("no JSON from {args:?}: {stdout}"))
    }
}
