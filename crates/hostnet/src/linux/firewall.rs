//! Installing rendered nftables tables: replaced in one `nft -f` transaction only when the
//! rendering changed or the kernel's tables no longer look the way they did right after
//! the last install (someone flushed or edited them). What was installed is kept in the
//! state directory too, so a restarted agent finds an untouched host already right.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::HostNetError;
use crate::names::NFT_TABLE;
use crate::run::run;

/// What was installed in one namespace, to tell drift from "already right".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Installed {
    rendered: String,
    listed: String,
}

/// The file in the state directory.
const STATE_FILE: &str = "nft-installed.json";

/// Installed rulesets by namespace key ("host", or a router netns name), as last saved
/// to the state directory.
#[derive(Debug, Default)]
pub(crate) struct InstalledRulesets {
    tables: BTreeMap<String, Installed>,
    saved: BTreeMap<String, Installed>,
}

impl std::ops::Deref for InstalledRulesets {
    type Target = BTreeMap<String, Installed>;

    fn deref(&self) -> &Self::Target {
        &self.tables
    }
}

impl std::ops::DerefMut for InstalledRulesets {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tables
    }
}

impl InstalledRulesets {
    /// What an earlier agent saved in `state_dir`; nothing when it saved nothing or the
    /// file does not read (then everything is installed once again).
    pub(crate) fn load(state_dir: &Path) -> Self {
        let tables: BTreeMap<String, Installed> = std::fs::read(state_dir.join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        InstalledRulesets {
            saved: tables.clone(),
            tables,
        }
    }

    /// Saves what is installed to `state_dir` when it changed since the last save
    /// (written aside, then renamed over the old file).
    pub(crate) fn save(&mut self, state_dir: &Path) -> Result<(), HostNetError> {
        if self.tables == self.saved {
            return Ok(());
        }
        let path = state_dir.join(STATE_FILE);
        let partial = state_dir.join(format!("{STATE_FILE}.partial"));
        let bytes = serde_json::to_vec(&self.tables).unwrap_or_default();
        std::fs::write(&partial, bytes)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(HostNetError::io(format!("saving {}", path.display())))?;
        self.saved = self.tables.clone();
        Ok(())
    }
}

/// The kernel's view of our tables of `families` in `netns`; a missing table reads as a
/// marker, so a deleted table is drift.
async fn list(netns: Option<&Path>, families: &[&str]) -> String {
    let mut out = String::new();
    for family in families {
        match run(netns, "nft", &["list", "table", family, NFT_TABLE], None).await {
            Ok(text) => out.push_str(&text),
            Err(_) => out.push_str(&format!("# no table {family} {NFT_TABLE}\n")),
        }
    }
    out
}

/// Installs `rendered` (tables of `families`) unless the same is already in place.
/// Returns whether it installed.
pub(crate) async fn sync(
    installed: &mut InstalledRulesets,
    key: &str,
    netns: Option<&Path>,
    families: &[&str],
    rendered: &str,
) -> Result<bool, HostNetError> {
    let current = list(netns, families).await;
    if let Some(previous) = installed.get(key)
        && previous.rendered == rendered
        && previous.listed == current
    {
        return Ok(false);
    }
    run(netns, "nft", &["-f", "-"], Some(rendered)).await?;
    let listed = list(netns, families).await;
    installed.insert(
        key.to_string(),
        Installed {
            rendered: rendered.to_string(),
            listed,
        },
    );
    Ok(true)
}

/// Deletes our tables of `families` in `netns` (absent ones are fine).
pub(crate) async fn delete(netns: Option<&Path>, families: &[&str]) -> Result<(), HostNetError> {
    let mut script = String::new();
    for family in families {
        script.push_str(&format!(
            "table {family} {NFT_TABLE}\ndelete table {family} {NFT_TABLE}\n"
        ));
    }
    run(netns, "nft", &["-f", "-"], Some(&script)).await?;
    Ok(())
}
