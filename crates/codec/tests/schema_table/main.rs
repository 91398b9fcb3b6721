//! Generates the protobuf-to-JSON schema table (`src/schema/table.txt`) from the sources of
//! k8s-pb and k8s-openapi, and checks that the committed copy matches what they produce.

mod generator;
mod go_presence;
mod openapi_model;
mod protobuf_model;
mod sources;

use std::path::Path;

const TABLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema/table.txt");

#[test]
fn committed_schema_table_is_current() -> anyhow::Result<()> {
    let generated =
        generator::generate(&sources::locate()?).map_err(|error| anyhow::anyhow!("{error:#}"))?;
    let committed = std::fs::read_to_string(TABLE_PATH)?;
    assert!(
        generated == committed,
        "src/schema/table.txt is stale; regenerate it with\n  \
         cargo test -p ronghe-codec --test schema_table -- --ignored regenerate_schema_table"
    );
    Ok(())
}

#[test]
#[ignore = "rewrites src/schema/table.txt; run after changing k8s-pb, k8s-openapi or the generator"]
fn regenerate_schema_table() -> anyhow::Result<()> {
    let generated =
        generator::generate(&sources::locate()?).map_err(|error| anyhow::anyhow!("{error:#}"))?;
    std::fs::write(Path::new(TABLE_PATH), generated)?;
    Ok(())
}
