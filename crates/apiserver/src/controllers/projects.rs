//! The projects controller: keeps identity Projects and Namespaces one-to-one by name.
//! A namespace gets a project, a project gets a namespace, and when one of a pair goes the
//! other follows (deleting a namespace deletes everything in it through the namespace
//! finalizer, so deleting a project empties its namespace).
//!
//! A pair is linked both ways, so either half of the link identifies it after a crash half
//! way through: the namespace carries `identity.ronghe.io/project-uid` and the project
//! records `status.namespaceUid`. Uids, not names, decide whether the other half is gone:
//! a name reused by a new object is not the object that was paired.
//!
//! Each pass reads both lists, decides per name with [`plan`] (a pure function of what it
//! saw), and acts. A conflict or a not-found while acting means someone else changed the
//! state since the lists were read; the next pass sees the new state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ronghe_identity::model::API_VERSION as IDENTITY_API_VERSION;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use crate::engine::{DeleteOptions, Engine, PatchKind, Target, WriteOptions};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::KindSpec;

const RESYNC: Duration = Duration::from_secs(10);

/// The annotation on a namespace naming the uid of the project it is paired with.
pub(crate) const PROJECT_UID_ANNOTATION: &str = "identity.ronghe.io/project-uid";

/// Namespaces that belong to the platform rather than to a tenant: they never get a
/// project, and a project of one of these names is left alone.
const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(error) = pass(&engine).await {
            tracing::warn!(%error, "projects pass failed");
        }
        if super::wait_for_work(&wake, &mut stop, RESYNC).await {
            return;
        }
    }
}

/// The kinds a pass works on.
struct Kinds {
    projects: Arc<KindSpec>,
    namespaces: Arc<KindSpec>,
}

/// What a pass saw of a namespace.
#[derive(Clone, Debug)]
struct SeenNamespace {
    uid: String,
    resource_version: Option<String>,
    deleting: bool,
    /// The project uid in its annotation, if any.
    project_uid: Option<String>,
    /// False for namespaces the API refuses to delete (`default`): a stale link on one of
    /// those is repaired by pairing it with a new project instead.
    deletable: bool,
}

/// What a pass saw of a project.
#[derive(Clone, Debug)]
struct SeenProject {
    uid: String,
    resource_version: Option<String>,
    deleting: bool,
    /// `status.namespaceUid`, if recorded.
    namespace_uid: Option<String>,
}

/// What to do about one name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// Create a project for the namespace, then link both ways.
    CreateProject,
    /// Create a namespace for the project (annotated), then record it in the project.
    CreateNamespace,
    /// Fill in the missing halves of the link between a namespace and its project.
    Link { annotate: bool, record: bool },
    /// Delete the project: the namespace it was paired with is gone or going.
    DeleteProject { because: &'static str },
    /// Delete the namespace: the project it was paired with is gone or going. With
    /// `confirm_gone`, only once a live read confirms no project with that uid exists.
    DeleteNamespace {
        because: &'static str,
        confirm_gone: Option<String>,
    },
}

/// Decides what to do about the namespace and project of one name, from what a pass saw.
fn plan(namespace: Option<&SeenNamespace>, project: Option<&SeenProject>) -> Vec<Action> {
    match (namespace, project) {
        (None, None) => Vec::new(),
        (None, Some(project)) => {
            if project.deleting {
                Vec::new()
            } else if project.namespace_uid.is_none() {
                vec![Action::CreateNamespace]
            } else {
                vec![Action::DeleteProject {
                    because: "its namespace is gone",
                }]
            }
        }
        (Some(namespace), None) => {
            if namespace.deleting {
                return Vec::new();
            }
            match &namespace.project_uid {
                // Only a namespace that was never paired is paired: one whose project is
                // gone goes too, or deleting a project could never delete its namespace.
                Some(uid) if namespace.deletable => vec![Action::DeleteNamespace {
                    because: "its project is gone",
                    confirm_gone: Some(uid.clone()),
                }],
                _ => vec![Action::CreateProject],
            }
        }
        (Some(namespace), Some(project)) => {
            let annotated = namespace.project_uid.as_deref() == Some(project.uid.as_str());
            let recorded = project.namespace_uid.as_deref() == Some(namespace.uid.as_str());
            let paired = annotated || recorded;
            if namespace.deleting {
                if paired && !project.deleting {
                    return vec![Action::DeleteProject {
                        because: "its namespace is being deleted",
                    }];
                }
                // An unrelated project waits for the old namespace to go, then gets its own.
                return Vec::new();
            }
            if project.deleting {
                if paired && namespace.deletable {
                    return vec![Action::DeleteNamespace {
                        because: "its project is being deleted",
                        confirm_gone: None,
                    }];
                }
                return Vec::new();
            }
            if paired {
                return if annotated && recorded {
                    Vec::new()
                } else {
                    vec![Action::Link {
                        annotate: !annotated,
                        record: !recorded,
                    }]
                };
            }
            // Two objects of one name that are not each other's pair: each side linked
            // to something else has lost its partner.
            let namespace_orphaned = namespace.project_uid.is_some() && namespace.deletable;
            let project_orphaned = project.namespace_uid.is_some();
            let mut actions = Vec::new();
            if project_orphaned {
                actions.push(Action::DeleteProject {
                    because: "the namespace it was paired with is gone",
                });
            }
            if let Some(uid) = namespace
                .project_uid
                .as_ref()
                .filter(|_| namespace_orphaned)
            {
                actions.push(Action::DeleteNamespace {
                    because: "the project it was paired with is gone",
                    confirm_gone: Some(uid.clone()),
                });
            }
            if actions.is_empty() {
                // Neither is linked to anything else (made together by a client, or a
                // pass stopped before linking them): they are a pair.
                actions.push(Action::Link {
                    annotate: true,
                    record: true,
                });
            }
            actions
        }
    }
}

/// One pass over every project and namespace.
pub(super) async fn pass(engine: &Engine) -> ApiResult<()> {
    let kinds = Kinds {
        projects: engine.kind(IDENTITY_API_VERSION, "Project")?,
        namespaces: engine.kind("v1", "Namespace")?,
    };
    // Projects are listed first: a namespace uid recorded in a project was recorded after
    // that namespace was created, so the later namespace list shows it unless it is really
    // gone. (The other way round, a namespace created and recorded between the two lists
    // would look gone and its project would be deleted.)
    let projects = by_name(
        engine
            .list(&kinds.projects, None, &Default::default())
            .await?
            .items,
    );
    let namespaces = by_name(
        engine
            .list(&kinds.namespaces, None, &Default::default())
            .await?
            .items,
    );
    let names: BTreeSet<&str> = projects
        .keys()
        .chain(namespaces.keys())
        .map(String::as_str)
        .filter(|name| !SYSTEM_NAMESPACES.contains(name))
        .collect();
    for name in names {
        let namespace = namespaces
            .get(name)
            .map(|n| seen_namespace(&kinds.namespaces, name, n));
        let project = projects.get(name).map(seen_project);
        for action in plan(namespace.as_ref(), project.as_ref()) {
            let span = tracing::info_span!("reconcile_project", project = %name);
            let result = act(
                engine,
                &kinds,
                name,
                namespace.as_ref(),
                project.as_ref(),
                &action,
            )
            .instrument(span)
            .await;
            match result {
                Ok(()) => {}
                Err(error) if matches!(error.code(), 404 | 409) => {
                    tracing::debug!(project = %name, %error, "state changed during the pass; the next pass sees it");
                    break;
                }
                Err(error) => {
                    tracing::warn!(project = %name, %error, ?action, "projects controller action failed");
                    break;
                }
            }
        }
    }
    Ok(())
}

fn by_name(items: Vec<Value>) -> BTreeMap<String, Value> {
    items
        .into_iter()
        .filter_map(|item| Some((object::name(&item)?.to_owned(), item)))
        .collect()
}

fn seen_namespace(kind: &KindSpec, name: &str, namespace: &Value) -> SeenNamespace {
    SeenNamespace {
        uid: object::uid(namespace).unwrap_or_default().to_owned(),
        resource_version: object::resource_version(namespace).map(str::to_owned),
        deleting: object::deletion_timestamp(namespace).is_some(),
        project_uid: object::str_at(
            namespace,
            &["metadata", "annotations", PROJECT_UID_ANNOTATION],
        )
        .filter(|uid| !uid.is_empty()),
        deletable: !kind.undeletable.contains(&name),
    }
}

fn seen_project(project: &Value) -> SeenProject {
    SeenProject {
        uid: object::uid(project).unwrap_or_default().to_owned(),
        resource_version: object::resource_version(project).map(str::to_owned),
        deleting: object::deletion_timestamp(project).is_some(),
        namespace_uid: object::str_at(project, &["status", "namespaceUid"])
            .filter(|uid| !uid.is_empty()),
    }
}

/// Carries out one action. The plan only asks for what the objects it saw allow, so a
/// missing object here means it changed since: reported as a 404.
async fn act(
    engine: &Engine,
    kinds: &Kinds,
    name: &str,
    namespace: Option<&SeenNamespace>,
    project: Option<&SeenProject>,
    action: &Action,
) -> ApiResult<()> {
    let missing = |kind: &KindSpec| ApiError::not_found(kind, name);
    match action {
        Action::CreateProject => {
            let namespace = namespace.ok_or_else(|| missing(&kinds.namespaces))?;
            let body = json!({
                "apiVersion": IDENTITY_API_VERSION,
                "kind": "Project",
                "metadata": {"name": name},
                "spec": {"enabled": true},
            });
            let created = engine
                .create(&kinds.projects, None, body, &WriteOptions::default())
                .await?;
            let project_uid = object::uid(&created.object).unwrap_or_default();
            tracing::info!(project = %name, namespace_uid = %namespace.uid, "created a project for the namespace");
            record_namespace(engine, kinds, name, project_uid, &namespace.uid).await?;
            annotate_namespace(engine, kinds, name, &namespace.uid, project_uid).await
        }
        Action::CreateNamespace => {
            let project = project.ok_or_else(|| missing(&kinds.projects))?;
            let body = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "annotations": {PROJECT_UID_ANNOTATION: project.uid},
                },
            });
            let created = engine
                .create(&kinds.namespaces, None, body, &WriteOptions::default())
                .await?;
            let namespace_uid = object::uid(&created.object).unwrap_or_default();
            tracing::info!(project = %name, %namespace_uid, "created the project's namespace");
            record_namespace(engine, kinds, name, &project.uid, namespace_uid).await
        }
        Action::Link { annotate, record } => {
            let namespace = namespace.ok_or_else(|| missing(&kinds.namespaces))?;
            let project = project.ok_or_else(|| missing(&kinds.projects))?;
            tracing::info!(project = %name, annotate, record, "linking a project and its namespace");
            if *record {
                record_namespace(engine, kinds, name, &project.uid, &namespace.uid).await?;
            }
            if *annotate {
                annotate_namespace(engine, kinds, name, &namespace.uid, &project.uid).await?;
            }
            Ok(())
        }
        Action::DeleteProject { because } => {
            let project = project.ok_or_else(|| missing(&kinds.projects))?;
            tracing::info!(project = %name, because, "deleting the project");
            engine
                .delete(
                    &kinds.projects,
                    None,
                    name,
                    &exactly(&project.uid, project.resource_version.as_deref()),
                )
                .await
                .map(drop)
        }
        Action::DeleteNamespace {
            because,
            confirm_gone,
        } => {
            let namespace = namespace.ok_or_else(|| missing(&kinds.namespaces))?;
            if let Some(project_uid) = confirm_gone
                && !project_gone(engine, kinds, name, project_uid).await
            {
                // Another writer paired them since the lists were read.
                return Ok(());
            }
            tracing::info!(project = %name, because, "deleting the project's namespace");
            engine
                .delete(
                    &kinds.namespaces,
                    None,
                    name,
                    &exactly(&namespace.uid, namespace.resource_version.as_deref()),
                )
                .await
                .map(drop)
        }
    }
}

/// Delete options that delete only the object as the pass saw it: one changed since is
/// judged again by the next pass.
fn exactly(uid: &str, resource_version: Option<&str>) -> DeleteOptions {
    DeleteOptions {
        precondition_uid: Some(uid.to_owned()),
        precondition_resource_version: resource_version.map(str::to_owned),
        ..DeleteOptions::default()
    }
}

/// Whether a live read confirms that no project of this name has `project_uid`.
async fn project_gone(engine: &Engine, kinds: &Kinds, name: &str, project_uid: &str) -> bool {
    match engine.get(&kinds.projects, None, name).await {
        Ok(found) => object::uid(&found) != Some(project_uid),
        Err(error) => error.code() == 404,
    }
}

/// Records the paired namespace in the project's status. The uid in the patch makes the
/// write fail (409) if the project was replaced by another of the same name.
async fn record_namespace(
    engine: &Engine,
    kinds: &Kinds,
    name: &str,
    project_uid: &str,
    namespace_uid: &str,
) -> ApiResult<()> {
    // The main endpoint ignores status on kinds with a status subresource.
    engine
        .patch(
            &kinds.projects,
            None,
            name,
            PatchKind::Merge,
            json!({
                "metadata": {"uid": project_uid},
                "status": {"namespaceUid": namespace_uid},
            }),
            Target::Status,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// Annotates the namespace with its project's uid, failing (409) if the namespace was
/// replaced by another of the same name.
async fn annotate_namespace(
    engine: &Engine,
    kinds: &Kinds,
    name: &str,
    namespace_uid: &str,
    project_uid: &str,
) -> ApiResult<()> {
    engine
        .patch(
            &kinds.namespaces,
            None,
            name,
            PatchKind::Merge,
            json!({"metadata": {
                "uid": namespace_uid,
                "annotations": {PROJECT_UID_ANNOTATION: project_uid},
            }}),
            Target::Main,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ronghe_store::MemoryStore;
    use serde_json::{Value, json};

    use super::*;

    fn engine() -> Engine {
        let registry = crate::kinds::builtin_registry().expect("registry");
        Engine::new(Arc::new(MemoryStore::new()), Arc::new(registry))
    }

    fn kinds(engine: &Engine) -> Kinds {
        Kinds {
            projects: engine
                .kind(IDENTITY_API_VERSION, "Project")
                .expect("projects"),
            namespaces: engine.kind("v1", "Namespace").expect("namespaces"),
        }
    }

    async fn create_namespace(engine: &Engine, name: &str, annotations: Value) -> Value {
        let body = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "annotations": annotations}});
        engine
            .create(
                &kinds(engine).namespaces,
                None,
                body,
                &WriteOptions::default(),
            )
            .await
            .expect("create namespace")
            .object
    }

    async fn create_project(engine: &Engine, name: &str) -> Value {
        let body = json!({"apiVersion": IDENTITY_API_VERSION, "kind": "Project",
            "metadata": {"name": name}, "spec": {"description": "made by a test"}});
        engine
            .create(
                &kinds(engine).projects,
                None,
                body,
                &WriteOptions::default(),
            )
            .await
            .expect("create project")
            .object
    }

    async fn namespace(engine: &Engine, name: &str) -> Option<Value> {
        get(engine, &kinds(engine).namespaces, name).await
    }

    async fn project(engine: &Engine, name: &str) -> Option<Value> {
        get(engine, &kinds(engine).projects, name).await
    }

    async fn get(engine: &Engine, kind: &KindSpec, name: &str) -> Option<Value> {
        match engine.get(kind, None, name).await {
            Ok(found) => Some(found),
            Err(error) if error.code() == 404 => None,
            Err(error) => panic!("get {name}: {error}"),
        }
    }

    fn uid(object: &Value) -> String {
        object::uid(object).expect("uid").to_owned()
    }

    fn annotation(namespace: &Value) -> Option<String> {
        object::str_at(
            namespace,
            &["metadata", "annotations", PROJECT_UID_ANNOTATION],
        )
    }

    fn recorded(project: &Value) -> Option<String> {
        object::str_at(project, &["status", "namespaceUid"])
    }

    /// Asserts that the namespace and project of `name` exist and are linked both ways.
    async fn assert_paired(engine: &Engine, name: &str) -> (Value, Value) {
        let namespace = namespace(engine, name).await.expect("namespace exists");
        let project = project(engine, name).await.expect("project exists");
        assert_eq!(
            annotation(&namespace),
            Some(uid(&project)),
            "{name}: annotation"
        );
        assert_eq!(recorded(&project), Some(uid(&namespace)), "{name}: status");
        (namespace, project)
    }

    async fn delete(engine: &Engine, kind: &KindSpec, name: &str) {
        engine
            .delete(kind, None, name, &DeleteOptions::default())
            .await
            .expect("delete");
    }

    /// Runs a pass, then checks that another pass writes nothing.
    async fn settle(engine: &Engine) {
        pass(engine).await.expect("pass");
        let before = engine.store().current_revision().await.expect("revision");
        pass(engine).await.expect("second pass");
        let after = engine.store().current_revision().await.expect("revision");
        assert_eq!(before, after, "a second pass changed something");
    }

    #[tokio::test]
    async fn a_namespace_gets_a_project() {
        let engine = engine();
        create_namespace(&engine, "team-a", json!({})).await;
        create_namespace(&engine, "default", json!({})).await;
        settle(&engine).await;
        for name in ["team-a", "default"] {
            let (_, project) = assert_paired(&engine, name).await;
            assert_eq!(project["spec"]["enabled"], true);
        }
    }

    #[tokio::test]
    async fn a_project_gets_a_namespace() {
        let engine = engine();
        create_project(&engine, "team-b").await;
        settle(&engine).await;
        let (namespace, project) = assert_paired(&engine, "team-b").await;
        assert!(object::deletion_timestamp(&namespace).is_none());
        assert_eq!(project["spec"]["description"], "made by a test");
    }

    #[tokio::test]
    async fn system_namespaces_get_no_project() {
        let engine = engine();
        for name in SYSTEM_NAMESPACES {
            create_namespace(&engine, name, json!({})).await;
        }
        settle(&engine).await;
        for name in SYSTEM_NAMESPACES {
            assert!(project(&engine, name).await.is_none(), "{name}");
            let namespace = namespace(&engine, name).await.expect("namespace");
            assert_eq!(annotation(&namespace), None, "{name}");
        }
    }

    #[tokio::test]
    async fn a_namespace_being_deleted_deletes_its_project() {
        let engine = engine();
        create_namespace(&engine, "team-c", json!({})).await;
        settle(&engine).await;
        assert_paired(&engine, "team-c").await;
        // The namespace finalizer holds it: marked, not gone.
        delete(&engine, &kinds(&engine).namespaces, "team-c").await;
        settle(&engine).await;
        assert!(project(&engine, "team-c").await.is_none());
        let namespace = namespace(&engine, "team-c")
            .await
            .expect("still finalizing");
        assert!(object::deletion_timestamp(&namespace).is_some());
    }

    #[tokio::test]
    async fn a_project_whose_namespace_is_gone_is_deleted_not_given_a_new_one() {
        let engine = engine();
        create_project(&engine, "team-d").await;
        settle(&engine).await;
        let key = kinds(&engine).namespaces.key(None, "team-d");
        // Gone entirely between two passes (finalized while the controller was away).
        engine.store().delete(&key, None).await.expect("remove");
        settle(&engine).await;
        assert!(project(&engine, "team-d").await.is_none());
        assert!(namespace(&engine, "team-d").await.is_none());
    }

    #[tokio::test]
    async fn a_deleted_project_marks_its_namespace_for_deletion() {
        let engine = engine();
        create_namespace(&engine, "team-e", json!({})).await;
        settle(&engine).await;
        delete(&engine, &kinds(&engine).projects, "team-e").await;
        settle(&engine).await;
        let namespace = namespace(&engine, "team-e").await.expect("finalizing");
        assert!(object::deletion_timestamp(&namespace).is_some());
        assert!(
            project(&engine, "team-e").await.is_none(),
            "never re-paired"
        );
    }

    #[tokio::test]
    async fn a_namespace_naming_a_gone_project_is_deleted_not_paired() {
        let engine = engine();
        create_namespace(
            &engine,
            "team-f",
            json!({PROJECT_UID_ANNOTATION: "no-such-project"}),
        )
        .await;
        settle(&engine).await;
        let namespace = namespace(&engine, "team-f").await.expect("finalizing");
        assert!(object::deletion_timestamp(&namespace).is_some());
        assert!(project(&engine, "team-f").await.is_none());
    }

    #[tokio::test]
    async fn a_recreated_project_replaces_the_old_namespace() {
        let engine = engine();
        create_project(&engine, "team-g").await;
        settle(&engine).await;
        let (old_namespace, _) = assert_paired(&engine, "team-g").await;
        // Deleted and made again before the controller looked.
        delete(&engine, &kinds(&engine).projects, "team-g").await;
        create_project(&engine, "team-g").await;
        settle(&engine).await;
        let marked = namespace(&engine, "team-g").await.expect("finalizing");
        assert_eq!(uid(&marked), uid(&old_namespace));
        assert!(object::deletion_timestamp(&marked).is_some());
        assert!(
            project(&engine, "team-g").await.is_some(),
            "the new project waits"
        );
        // Once the old namespace is finalized, the new project gets a new one.
        let key = kinds(&engine).namespaces.key(None, "team-g");
        engine.store().delete(&key, None).await.expect("remove");
        settle(&engine).await;
        let (namespace, _) = assert_paired(&engine, "team-g").await;
        assert_ne!(uid(&namespace), uid(&old_namespace));
    }

    #[tokio::test]
    async fn the_default_namespace_is_paired_again_rather_than_deleted() {
        let engine = engine();
        create_namespace(&engine, "default", json!({})).await;
        settle(&engine).await;
        let (_, old_project) = assert_paired(&engine, "default").await;
        delete(&engine, &kinds(&engine).projects, "default").await;
        settle(&engine).await;
        let (namespace, project) = assert_paired(&engine, "default").await;
        assert!(object::deletion_timestamp(&namespace).is_none());
        assert_ne!(uid(&project), uid(&old_project));
    }

    #[tokio::test]
    async fn missing_links_are_filled_in() {
        let engine = engine();
        // Made together by a client: neither knows the other.
        create_namespace(&engine, "team-h", json!({})).await;
        let project_before = create_project(&engine, "team-h").await;
        // A pass that stopped after creating the namespace, before recording it.
        let lonely = create_project(&engine, "team-i").await;
        create_namespace(
            &engine,
            "team-i",
            json!({PROJECT_UID_ANNOTATION: uid(&lonely)}),
        )
        .await;
        settle(&engine).await;
        let (_, project) = assert_paired(&engine, "team-h").await;
        assert_eq!(uid(&project), uid(&project_before), "adopted, not replaced");
        assert_paired(&engine, "team-i").await;
    }

    #[test]
    fn a_namespace_without_a_link_is_paired_and_one_with_a_stale_link_is_not() {
        let namespace = |project_uid: Option<&str>| SeenNamespace {
            uid: "ns".into(),
            resource_version: None,
            deleting: false,
            project_uid: project_uid.map(str::to_owned),
            deletable: true,
        };
        assert_eq!(
            plan(Some(&namespace(None)), None),
            vec![Action::CreateProject]
        );
        assert!(matches!(
            plan(Some(&namespace(Some("gone"))), None).as_slice(),
            [Action::DeleteNamespace { confirm_gone: Some(uid), .. }] if uid == "gone"
        ));
    }
}
