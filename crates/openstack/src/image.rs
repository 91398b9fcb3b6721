//! Glance v2 at `/image/v2`, over the `image.ronghe.io` Image kind and the server's blob
//! store: an image's id is its object's name, its project the namespace it lives in, its
//! data the blob named by `status.digest`. Uploads stream into the blob store while they
//! are hashed (sha256, sha512, md5) and are refused, leaving the image `queued` and
//! nothing stored, when they do not match what the image expects (`os_hash_algo` and
//! `os_hash_value` given at create, or the SDKs' `owner_specified.openstack.*` hashes).
//!
//! Who may do what follows Glance's default policy: project readers list and download
//! what their project may see (public images, their own, community ones, and shared ones
//! they are a member of), members create and change their project's images, and only
//! cloud admins make images public. Errors take Glance's shape.

mod data;
mod images;
mod members;
mod patch;
mod query;
mod schemas;
mod view;

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::routing::{any, get, post, put};
use http::StatusCode;
use http::request::Parts;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{
    DeleteOptions, ListOptions, Selectors, Target as EngineTarget, WriteOptions,
};
use ronghe_apiserver::error::ApiError;
use ronghe_apiserver::identity::{Principal, PrincipalScope};
use ronghe_apiserver::registry::KindSpec;
use ronghe_identity::policy::{Level, Rule, Subject, Target};
use ronghe_images::blob::BlobStore;
use ronghe_images::model;

use self::view::Image;
use crate::OpenStack;
use crate::fault::{Fault, FaultResult, Style};

/// Where Glance lives under the server's URL (the catalog's `image` endpoint).
pub const BASE: &str = "/image";

/// Uploads hold this shared from before their data is stored until the image names it;
/// sweeping unused blobs holds it alone, so it never deletes a blob an upload is about to
/// name. (One blob store per server process, so one gate.)
static BLOB_GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// How many times a read-modify-write of an image is tried against concurrent writers.
const WRITE_ATTEMPTS: usize = 8;

/// Glance's policy, as rules of the one policy model: who may do an operation on an image
/// of a project (the target).
const RULES: &[(&str, Rule)] = &[
    ("get_images", Rule::Project(Level::Reader)),
    ("get_image", Rule::Project(Level::Reader)),
    ("download_image", Rule::Project(Level::Reader)),
    ("add_image", Rule::Project(Level::Member)),
    ("modify_image", Rule::Project(Level::Member)),
    ("upload_image", Rule::Project(Level::Member)),
    ("delete_image", Rule::Project(Level::Member)),
    ("communitize_image", Rule::Project(Level::Member)),
    ("publicize_image", Rule::CloudAdmin),
    ("deactivate", Rule::CloudAdmin),
    ("reactivate", Rule::CloudAdmin),
    ("get_members", Rule::Project(Level::Reader)),
    ("get_member", Rule::Project(Level::Reader)),
    ("add_member", Rule::Project(Level::Member)),
    ("delete_member", Rule::Project(Level::Member)),
    ("modify_member", Rule::Project(Level::Member)),
];

fn rule(operation: &str) -> Rule {
    RULES
        .iter()
        .find(|(name, _)| *name == operation)
        .map_or(Rule::CloudAdmin, |(_, rule)| *rule)
}

pub fn router(state: Arc<OpenStack>) -> Router {
    let image = "/image/v2/images/{id}";
    let authenticated =
        Router::new()
            .route("/image/v2/images", get(images::list).post(images::create))
            .route(
                image,
                get(images::show)
                    .patch(images::update)
                    .delete(images::delete),
            )
            .route(
                &format!("{image}/file"),
                put(data::upload).get(data::download),
            )
            .route(
                &format!("{image}/tags/{{tag}}"),
                put(images::add_tag).delete(images::delete_tag),
            )
            .route(
                &format!("{image}/actions/deactivate"),
                post(images::deactivate),
            )
            .route(
                &format!("{image}/actions/reactivate"),
                post(images::reactivate),
            )
            .route(
                &format!("{image}/members"),
                get(members::list).post(members::create),
            )
            .route(
                &format!("{image}/members/{{member}}"),
                get(members::show)
                    .put(members::update)
                    .delete(members::delete),
            )
            .route("/image/v2/schemas/{name}", get(schemas::schema))
            .route("/image/v2/info/import", get(schemas::import_info))
            .route("/image/v2/{*rest}", any(not_found_route))
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                |axum::extract::State(state): axum::extract::State<Arc<OpenStack>>,
                 request,
                 next| async move {
                    crate::authenticate_as(&state, request, next, Style::Glance).await
                },
            ));
    Router::new()
        .route("/image", get(schemas::versions))
        .route("/image/", get(schemas::versions))
        .route("/image/versions", get(schemas::versions_ok))
        .route("/image/v2", get(schemas::versions))
        .route("/image/v2/", get(schemas::versions))
        .merge(authenticated)
        .with_state(state)
}

async fn not_found_route() -> Fault {
    not_found("The resource could not be found.")
}

/// A fault in Glance's shape.
pub(crate) fn glance(fault: Fault) -> Fault {
    fault.styled(Style::Glance)
}

pub(crate) fn bad_request(message: impl Into<String>) -> Fault {
    glance(Fault::bad_request(message))
}

pub(crate) fn forbidden(message: impl Into<String>) -> Fault {
    glance(Fault::new(StatusCode::FORBIDDEN, message))
}

pub(crate) fn conflict(message: impl Into<String>) -> Fault {
    glance(Fault::conflict(message))
}

pub(crate) fn not_found(message: impl Into<String>) -> Fault {
    glance(Fault::new(StatusCode::NOT_FOUND, message))
}

/// Glance's answer to setting what it computes.
pub(crate) fn forbidden_attribute(key: &str) -> Fault {
    forbidden(format!("Attribute '{key}' is read-only."))
}

pub(crate) fn no_image(id: &str) -> Fault {
    not_found(format!("No image found with ID {id}"))
}

/// An engine error in Glance's shape; internal ones are logged and hidden.
pub(crate) fn engine_fault(error: ApiError) -> Fault {
    match error.code() {
        422 => bad_request(error.status.message.clone()),
        code if code >= 500 => {
            tracing::error!(message = %error.status.message, "image write failed");
            glance(Fault::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server failed to handle the request.",
            ))
        }
        _ => glance(Fault::from_api(error)),
    }
}

fn internal(what: &str, error: impl std::fmt::Display) -> Fault {
    tracing::error!(%error, "{what}");
    glance(Fault::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The server failed to handle the request.",
    ))
}

/// Who calls, in which project, through which server.
pub(crate) struct Caller {
    state: Arc<OpenStack>,
    principal: Arc<Principal>,
    /// The token's project: (namespace, project id).
    project: Option<(String, String)>,
}

impl FromRequestParts<Arc<OpenStack>> for Caller {
    type Rejection = Fault;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<OpenStack>,
    ) -> Result<Self, Self::Rejection> {
        let user = parts
            .extensions
            .get::<User>()
            .ok_or_else(|| glance(Fault::unauthorized()))?;
        let principal = crate::identity::principal_of(user).map_err(glance)?;
        let project = match &principal.scope {
            PrincipalScope::Project { uid, name } => Some((name.clone(), uid.simple().to_string())),
            _ => None,
        };
        Ok(Caller {
            state: state.clone(),
            principal,
            project,
        })
    }
}

impl Caller {
    fn subject(&self) -> &Subject {
        &self.principal.subject
    }

    /// The namespace of the token's project.
    fn namespace(&self) -> Option<&str> {
        self.project
            .as_ref()
            .map(|(namespace, _)| namespace.as_str())
    }

    fn is_admin(&self) -> bool {
        self.subject().is_cloud_admin()
    }

    /// Cloud readers (and admins) see every image.
    fn reads_everything(&self) -> bool {
        self.subject().cloud.is_some()
    }

    /// Checks an operation on a project's images (the caller's own when `None`; for a
    /// token without a project, no project at all, which only cloud-wide roles pass).
    fn allow(&self, operation: &str, project: Option<&str>) -> FaultResult<()> {
        let project = project.or(self.namespace()).unwrap_or("");
        let target = Target {
            project: Some(project),
            user: None,
        };
        if rule(operation).allows(self.subject(), &target) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "You are not authorized to complete {operation} action."
            )))
        }
    }

    /// Whether the caller may see an image at all.
    fn sees(&self, image: &Image) -> bool {
        self.reads_everything() || model::can_see(&image.namespace, &image.spec, self.namespace())
    }

    fn blobs(&self) -> FaultResult<&BlobStore> {
        self.state
            .images
            .as_deref()
            .ok_or_else(|| internal("serving image data", "this server has no blob store"))
    }

    fn kind(&self) -> FaultResult<Arc<KindSpec>> {
        self.state
            .engine
            .kind(model::API_VERSION, model::KIND)
            .map_err(engine_fault)
    }

    /// Every image, in every project.
    async fn all_images(&self) -> FaultResult<Vec<Image>> {
        let kind = self.kind()?;
        let list = self
            .state
            .engine
            .list(&kind, None, &ListOptions::default())
            .await
            .map_err(engine_fault)?;
        Ok(list.items.into_iter().map(Image::from_object).collect())
    }

    /// The image of an id, if it exists (seen or not).
    async fn lookup(&self, id: &str) -> FaultResult<Option<Image>> {
        // Only a valid object name can name one; anything else would reach the selector.
        let valid = !id.is_empty()
            && id.len() <= 253
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Ok(None);
        }
        let kind = self.kind()?;
        let selectors = Selectors::parse(&kind, None, Some(&format!("metadata.name={id}")))
            .map_err(engine_fault)?;
        let list = self
            .state
            .engine
            .list(
                &kind,
                None,
                &ListOptions {
                    selectors,
                    ..ListOptions::default()
                },
            )
            .await
            .map_err(engine_fault)?;
        Ok(list.items.into_iter().next().map(Image::from_object))
    }

    /// The image of an id, when the caller may see it; Glance's 404 otherwise.
    async fn find(&self, id: &str) -> FaultResult<Image> {
        match self.lookup(id).await? {
            Some(image) if self.sees(&image) => Ok(image),
            _ => Err(no_image(id)),
        }
    }

    /// Writes an image back (spec through the object, or status through `/status`) if it
    /// is still at the version read; `Ok(None)` when another writer got there first.
    async fn write(&self, image: &Image, target: EngineTarget) -> FaultResult<Option<Image>> {
        let kind = self.kind()?;
        let written = self
            .state
            .engine
            .replace(
                &kind,
                Some(&image.namespace),
                &image.id,
                image.to_object(),
                target,
                &WriteOptions::default(),
            )
            .await;
        match written {
            Ok(written) => Ok(Some(Image::from_object(written.object))),
            Err(error) if error.code() == 409 => Ok(None),
            Err(error) if error.code() == 404 => Err(no_image(&image.id)),
            Err(error) => Err(engine_fault(error)),
        }
    }

    /// Changes an image: `change` gets the image as stored and edits it (or says there is
    /// nothing to do with `false`); the edit is written with compare-and-swap, and tried
    /// again against the new version when another writer got there first. The status
    /// gets `updatedAt` too.
    async fn update<F>(&self, id: &str, target: EngineTarget, change: F) -> FaultResult<Image>
    where
        F: Fn(&Caller, &mut Image) -> FaultResult<bool>,
    {
        for _ in 0..WRITE_ATTEMPTS {
            let mut image = self.find(id).await?;
            if !change(self, &mut image)? {
                return Ok(image);
            }
            let Some(written) = self.write(&image, target).await? else {
                continue;
            };
            if target == EngineTarget::Main {
                // Best effort: the change is made; its time is for display.
                return Ok(self.touch(written).await);
            }
            return Ok(written);
        }
        Err(conflict(format!(
            "Image {id} is being changed by someone else; try again."
        )))
    }

    /// Records that an image changed now (in `status.updatedAt`).
    async fn touch(&self, mut image: Image) -> Image {
        image.status.updated_at = Some(now());
        match self.write(&image, EngineTarget::Status).await {
            Ok(Some(written)) => written,
            _ => image,
        }
    }

    /// The id of the project a namespace pairs with (the namespace itself when none).
    fn project_id(&self, namespace: &str) -> String {
        let directory = self.state.identity.directory();
        directory
            .project(namespace)
            .map_or_else(|| namespace.to_owned(), |p| p.uid.simple().to_string())
    }

    /// The namespace and id of a project named by id or name.
    async fn project_of(&self, reference: &str) -> FaultResult<Option<(String, String)>> {
        crate::identity::sync(&self.state).await.map_err(glance)?;
        let directory = self.state.identity.directory();
        let entry = uuid::Uuid::try_parse(reference)
            .ok()
            .and_then(|uid| directory.project_by_uid(&uid))
            .or_else(|| directory.project(reference));
        Ok(entry.map(|e| (e.name.clone(), e.uid.simple().to_string())))
    }

    /// Deletes the blobs no image names any more (the one an image just let go, and any
    /// left by images deleted through the Kubernetes face). Skipped while an upload is in
    /// flight (it may be about to name a blob no image names yet); a later delete collects
    /// what is left.
    async fn release_blobs(&self) {
        let Ok(_sweeping) = BLOB_GATE.try_write() else {
            tracing::debug!("an upload is in flight; unused blobs are kept for now");
            return;
        };
        let Ok(images) = self.all_images().await else {
            return;
        };
        let used: HashSet<String> = images
            .into_iter()
            .filter_map(|image| image.status.digest)
            .collect();
        let Ok(blobs) = self.blobs().cloned() else {
            return;
        };
        let sweep = move || {
            for digest in blobs.list().unwrap_or_default() {
                if !used.contains(&digest.to_string())
                    && let Err(error) = blobs.delete(&digest)
                {
                    tracing::warn!(%digest, %error, "deleting an unused image blob failed");
                }
            }
        };
        if let Err(error) = tokio::task::spawn_blocking(sweep).await {
            tracing::warn!(%error, "sweeping unused image blobs failed");
        }
    }

    async fn delete_object(&self, image: &Image) -> FaultResult<()> {
        let kind = self.kind()?;
        match self
            .state
            .engine
            .delete(
                &kind,
                Some(&image.namespace),
                &image.id,
                &DeleteOptions::default(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code() == 404 => Err(no_image(&image.id)),
            Err(error) => Err(engine_fault(error)),
        }
    }
}

/// Glance's timestamps: seconds and a `Z`.
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
