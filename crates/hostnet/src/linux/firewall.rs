//! Installing rendered nftables tables: replaced in one `nft -f` transaction only when the
//! rendering changed or the kernel's tables no longer look the way they did right after
//! the last install (someone flushed or edited them).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::HostNetError;
use crate::names::NFT_TABLE;
use crate::run::run;

/// What was installed in one namespace, to tell drift from "already right".
#[derive(Clone, Debug, Default)]
pub(crate) struct Installed {
    rendered: String,
    listed: String,
}

/// Installed rulesets by namespace key ("host", or a router netns name).
pub(crate) type InstalledRulesets = BTreeMap<String, Installed>;

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
