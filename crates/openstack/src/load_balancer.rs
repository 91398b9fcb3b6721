//! Octavia v2 at `/load-balancer/v2/lbaas` (and `/v2.0/`): load balancers, listeners,
//! pools with their members, health monitors, L7 policies with their rules, statistics,
//! the status tree, failover, providers (flavors and availability zones are empty lists),
//! over the `loadbalancing.ronghe.io` kinds. Quotas live in `quota.rs`.
//!
//! One generic set of handlers serves every resource from a table ([`Resource`]: its
//! kind, JSON names, policy noun and attributes, see `attributes.rs`); `views.rs` renders
//! each resource from its object and its load balancer's tree. Ids are object uids, found
//! through the kinds' `ids/<uid>` claims; the project is the object's namespace. The
//! kinds' admission resolves references and checks what spans objects; the controller
//! keeps the statuses shown here.
//!
//! A load balancer request carrying `listeners` or `pools` is Octavia's fully populated
//! create (`graph.rs`).
//!
//! Ronghe is more lenient than Octavia in one way: a change under a load balancer that is
//! PENDING_UPDATE is accepted (the proxy reconfigures atomically, so there is nothing to
//! lock); a load balancer being deleted refuses changes with Octavia's 409.

mod attributes;
mod fault;
mod graph;
mod views;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::loadbalancing::{
    API_VERSION, LoadBalancerStatus, PROVIDER, PROVIDER_DESCRIPTION, TREE_KINDS, Tree, status_of,
    uid,
};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{
    DeleteOptions, ListOptions, PatchKind, Target as WriteTarget, WriteOptions,
};
use ronghe_apiserver::kinds::loadbalancing::tree_of;
use ronghe_apiserver::object;
use serde_json::{Map, Value, json};

use self::attributes::Attribute;
use self::fault::{OctaviaResult, bad, conflict, forbidden, from_api, from_neutron, not_found};
use crate::OpenStack;
use crate::fault::Style;
use crate::network::Ctx;
use crate::network::query::{self, Query};

/// One Octavia resource over one kind.
#[derive(Debug)]
pub(crate) struct Resource {
    /// The kind in `loadbalancing.ronghe.io/v1`.
    kind: &'static str,
    /// The JSON member of one (`loadbalancer`).
    singular: &'static str,
    /// The JSON key of a list (`loadbalancers`).
    plural: &'static str,
    /// The noun of its policy rules (`os_load-balancer_api:<policy>:get`).
    policy: &'static str,
    /// Octavia's name of it in messages (`Load Balancer`).
    what: &'static str,
    attributes: &'static [Attribute],
    /// The prefix of generated object names.
    prefix: &'static str,
    /// For nested collections: the spec field naming the parent given in the path, and
    /// the parent's resource.
    parent: Option<(&'static str, &'static Resource)>,
}

const LOAD_BALANCER: Resource = Resource {
    kind: "LoadBalancer",
    singular: "loadbalancer",
    plural: "loadbalancers",
    policy: "loadbalancer",
    what: "Load Balancer",
    attributes: attributes::LOAD_BALANCER,
    prefix: "lb-",
    parent: None,
};
const LISTENER: Resource = Resource {
    kind: "Listener",
    singular: "listener",
    plural: "listeners",
    policy: "listener",
    what: "Listener",
    attributes: attributes::LISTENER,
    prefix: "listener-",
    parent: None,
};
const POOL: Resource = Resource {
    kind: "Pool",
    singular: "pool",
    plural: "pools",
    policy: "pool",
    what: "Pool",
    attributes: attributes::POOL,
    prefix: "pool-",
    parent: None,
};
const MEMBER: Resource = Resource {
    kind: "Member",
    singular: "member",
    plural: "members",
    policy: "member",
    what: "Member",
    attributes: attributes::MEMBER,
    prefix: "member-",
    parent: Some(("poolId", &POOL)),
};
const HEALTH_MONITOR: Resource = Resource {
    kind: "HealthMonitor",
    singular: "healthmonitor",
    plural: "healthmonitors",
    policy: "healthmonitor",
    what: "Health Monitor",
    attributes: attributes::HEALTH_MONITOR,
    prefix: "hm-",
    parent: None,
};
const L7_POLICY: Resource = Resource {
    kind: "L7Policy",
    singular: "l7policy",
    plural: "l7policies",
    policy: "l7policy",
    what: "L7 Policy",
    attributes: attributes::L7_POLICY,
    prefix: "l7policy-",
    parent: None,
};
const L7_RULE: Resource = Resource {
    kind: "L7Rule",
    singular: "rule",
    plural: "rules",
    policy: "l7rule",
    what: "L7 Rule",
    attributes: attributes::L7_RULE,
    prefix: "l7rule-",
    parent: Some(("l7PolicyId", &L7_POLICY)),
};

impl Resource {
    fn rule(&self, action: &str) -> String {
        format!("os_load-balancer_api:{}:{action}", self.policy)
    }

    fn missing(&self, id: &str) -> crate::fault::Fault {
        not_found(self.what, id)
    }
}

/// The routes under one version prefix (`/load-balancer/v2` or `/v2.0`).
fn routes_at(routes: Router<Arc<OpenStack>>, base: &str) -> Router<Arc<OpenStack>> {
    let mut routes = routes
        .route(
            &format!("{base}/lbaas/loadbalancers/{{id}}/stats"),
            get(load_balancer_stats),
        )
        .route(
            &format!("{base}/lbaas/loadbalancers/{{id}}/status"),
            get(load_balancer_status),
        )
        .route(
            &format!("{base}/lbaas/loadbalancers/{{id}}/failover"),
            put(failover),
        )
        .route(
            &format!("{base}/lbaas/listeners/{{id}}/stats"),
            get(listener_stats),
        )
        .route(&format!("{base}/lbaas/providers"), get(providers))
        .route(
            &format!("{base}/lbaas/flavors"),
            get(|| async { Json(json!({"flavors": []})) }),
        )
        .route(
            &format!("{base}/lbaas/availabilityzones"),
            get(|| async { Json(json!({"availability_zones": []})) }),
        );
    for resource in [
        &LOAD_BALANCER,
        &LISTENER,
        &POOL,
        &HEALTH_MONITOR,
        &L7_POLICY,
    ] {
        let collection = format!("{base}/lbaas/{}", resource.plural);
        routes = routes
            .route(
                &collection,
                get(move |state, user, raw| list(resource, state, user, None, raw))
                    .post(move |state, user, body| create(resource, state, user, None, body)),
            )
            .route(
                &format!("{collection}/{{id}}"),
                get(move |state, user, Path(id): Path<String>, raw| {
                    show(resource, state, user, None, id, raw)
                })
                .put(move |state, user, Path(id): Path<String>, body| {
                    update(resource, state, user, None, id, body)
                })
                .delete(move |state, user, Path(id): Path<String>, raw| {
                    delete(resource, state, user, None, id, raw)
                }),
            );
    }
    for (resource, parent_path) in [(&MEMBER, "pools"), (&L7_RULE, "l7policies")] {
        let collection = format!("{base}/lbaas/{parent_path}/{{parent}}/{}", resource.plural);
        let mut methods = get(move |state, user, Path(parent): Path<String>, raw| {
            list(resource, state, user, Some(parent), raw)
        })
        .post(move |state, user, Path(parent): Path<String>, body| {
            create(resource, state, user, Some(parent), body)
        });
        if resource.kind == MEMBER.kind {
            methods = methods.put(replace_members);
        }
        routes = routes.route(&collection, methods).route(
            &format!("{collection}/{{id}}"),
            get(
                move |state, user, Path((parent, id)): Path<(String, String)>, raw| {
                    show(resource, state, user, Some(parent), id, raw)
                },
            )
            .put(
                move |state, user, Path((parent, id)): Path<(String, String)>, body| {
                    update(resource, state, user, Some(parent), id, body)
                },
            )
            .delete(
                move |state, user, Path((parent, id)): Path<(String, String)>, raw| {
                    delete(resource, state, user, Some(parent), id, raw)
                },
            ),
        );
    }
    routes
}

pub fn router(state: Arc<OpenStack>) -> Router {
    let mut routes = Router::new();
    for base in ["/load-balancer/v2", "/load-balancer/v2.0"] {
        routes = routes_at(routes, base);
    }
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            |State(state): State<Arc<OpenStack>>, request, next| async move {
                crate::authenticate_as(&state, request, next, Style::Octavia).await
            },
        ))
        .with_state(state)
}

fn context(state: Arc<OpenStack>, user: &User) -> OctaviaResult<Ctx> {
    Ctx::new(state, user).map_err(from_neutron)
}

fn check(ctx: &Ctx, rule: &str, namespace: Option<&str>) -> OctaviaResult<()> {
    ctx.check(rule, namespace).map_err(|_| forbidden())
}

/// Every tree the caller sees: all for those who see everything, else its project's.
async fn forest(ctx: &Ctx) -> OctaviaResult<Vec<Tree>> {
    let namespace = if ctx.sees_all() {
        None
    } else {
        match ctx.own_namespace() {
            Some(namespace) => Some(namespace.to_owned()),
            None => return Ok(Vec::new()),
        }
    };
    let engine = ctx.engine();
    let mut trees: Vec<Tree> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for kind_name in TREE_KINDS {
        let kind = engine.kind(API_VERSION, kind_name).map_err(from_api)?;
        let items = engine
            .list(&kind, namespace.as_deref(), &ListOptions::default())
            .await
            .map_err(from_api)?
            .items;
        for item in items {
            if kind_name == "LoadBalancer" {
                index.insert(uid(&item).to_owned(), trees.len());
                trees.push(Tree {
                    load_balancer: item,
                    ..Tree::default()
                });
                continue;
            }
            let owner = item
                .pointer("/spec/loadBalancerId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(&i) = index.get(owner)
                && let Some(list) = trees[i].of_kind_mut(kind_name)
            {
                list.push(item);
            }
        }
    }
    Ok(trees)
}

/// The view of one object of `resource`.
fn view(ctx: &Ctx, resource: &Resource, object: &Value, tree: &Tree) -> Value {
    match resource.kind {
        "LoadBalancer" => views::load_balancer(ctx, tree),
        "Listener" => views::listener(ctx, object, tree),
        "Pool" => views::pool(ctx, object, tree),
        "Member" => views::member(ctx, object),
        "HealthMonitor" => views::health_monitor(ctx, object),
        "L7Policy" => views::l7_policy(ctx, object, tree),
        _ => views::l7_rule(ctx, object),
    }
}

/// The caller's object of `resource` with this id (after the `get` rule), or a 404.
async fn fetch(ctx: &Ctx, resource: &Resource, id: &str) -> OctaviaResult<Value> {
    let missing = || resource.missing(id);
    let Ok(parsed) = uuid::Uuid::try_parse(id) else {
        return Err(missing());
    };
    let kind = ctx
        .engine()
        .kind(API_VERSION, resource.kind)
        .map_err(from_api)?;
    let found = ctx
        .engine()
        .find_claimed(&kind, &format!("ids/{}", parsed.hyphenated()))
        .await
        .map_err(from_api)?
        .filter(|found| ctx.owns(found))
        .ok_or_else(missing)?;
    check(ctx, &resource.rule("get"), object::namespace(&found))?;
    Ok(found)
}

/// The tree an object belongs to.
async fn tree_around(ctx: &Ctx, object: &Value) -> OctaviaResult<Tree> {
    let lb = if object.get("kind").and_then(Value::as_str) == Some("LoadBalancer") {
        object.clone()
    } else {
        let id = object
            .pointer("/spec/loadBalancerId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        fetch(ctx, &LOAD_BALANCER, id).await?
    };
    tree_of(ctx.engine(), &lb).await.map_err(from_api)
}

/// A nested resource's parent from the path, checked visible; the object must be its.
async fn parent_of(
    ctx: &Ctx,
    resource: &Resource,
    parent: Option<&str>,
) -> OctaviaResult<Option<(&'static str, Value)>> {
    match (resource.parent, parent) {
        (Some((field, parent_resource)), Some(id)) => {
            Ok(Some((field, fetch(ctx, parent_resource, id).await?)))
        }
        _ => Ok(None),
    }
}

fn belongs(object: &Value, parent: &Option<(&'static str, Value)>) -> bool {
    parent.as_ref().is_none_or(|(field, parent)| {
        object
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_str)
            == Some(uid(parent))
    })
}

async fn list(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    parent: Option<String>,
    RawQuery(raw): RawQuery,
) -> OctaviaResult<Json<Value>> {
    let ctx = context(state, &user)?;
    check(&ctx, &resource.rule("get"), None)?;
    let parent = parent_of(&ctx, resource, parent.as_deref()).await?;
    let trees = forest(&ctx).await?;
    let mut views = Vec::new();
    for tree in &trees {
        if resource.kind == "LoadBalancer" {
            views.push(view(&ctx, resource, &tree.load_balancer, tree));
            continue;
        }
        for object in tree
            .children()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some(resource.kind))
            .filter(|o| belongs(o, &parent))
        {
            views.push(view(&ctx, resource, object, tree));
        }
    }
    let query = Query::parse(raw.as_deref());
    let collection = query::Collection {
        key: resource.plural,
        url: format!(
            "{}/load-balancer/v2/lbaas/{}",
            ctx.state.public_url, resource.plural
        ),
    };
    query::respond(collection, views, &query)
        .map(Json)
        .map_err(from_neutron)
}

async fn show(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    parent: Option<String>,
    id: String,
    RawQuery(raw): RawQuery,
) -> OctaviaResult<Json<Value>> {
    let ctx = context(state, &user)?;
    let parent = parent_of(&ctx, resource, parent.as_deref()).await?;
    let object = fetch(&ctx, resource, &id).await?;
    if !belongs(&object, &parent) {
        return Err(resource.missing(&id));
    }
    let tree = tree_around(&ctx, &object).await?;
    let shown = query::select_fields(
        view(&ctx, resource, &object, &tree),
        &Query::parse(raw.as_deref()),
    );
    Ok(Json(json!({ resource.singular: shown })))
}

/// The namespace a new object goes to: the caller's project, or (admins) the one named.
fn create_namespace(ctx: &Ctx, request: &Map<String, Value>) -> OctaviaResult<String> {
    let asked = request
        .get("project_id")
        .or_else(|| request.get("tenant_id"))
        .and_then(Value::as_str);
    match (asked, &ctx.project) {
        (Some(id), Some((namespace, own))) if crate::network::uuid_eq(id, own) => {
            Ok(namespace.clone())
        }
        (Some(id), _) => {
            if !ctx.is_admin() {
                return Err(forbidden());
            }
            ctx.namespace_of_project(id)
                .ok_or_else(|| bad(format!("Project {id} not found.")))
        }
        (None, Some((namespace, _))) => Ok(namespace.clone()),
        (None, None) => Err(bad(
            "A project is needed: use a project-scoped token or pass project_id.",
        )),
    }
}

/// What Octavia fills in that the kinds leave to the face: HTTP monitors' method, path
/// and codes, redirects' code.
fn defaults(resource: &Resource, spec: &mut Map<String, Value>) {
    let text = |spec: &Map<String, Value>, key: &str| {
        spec.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match resource.kind {
        "HealthMonitor" if matches!(text(spec, "type").as_str(), "HTTP" | "HTTPS") => {
            spec.entry("httpMethod").or_insert_with(|| json!("GET"));
            spec.entry("urlPath").or_insert_with(|| json!("/"));
            spec.entry("expectedCodes").or_insert_with(|| json!("200"));
        }
        "L7Policy"
            if matches!(
                text(spec, "action").as_str(),
                "REDIRECT_TO_URL" | "REDIRECT_PREFIX"
            ) =>
        {
            spec.entry("redirectHttpCode").or_insert_with(|| json!(302));
        }
        _ => {}
    }
}

/// An object name from an Octavia name when it is a DNS-1123 subdomain.
fn object_name(name: &str) -> Option<String> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label)).then(|| name.to_owned())
}

/// Makes an object of `resource` with `spec` in `namespace`, named after its Octavia
/// name when that is a free object name, else generated.
async fn make(
    ctx: &Ctx,
    resource: &Resource,
    namespace: &str,
    spec: Map<String, Value>,
    options: &WriteOptions,
) -> OctaviaResult<Value> {
    let kind = ctx
        .engine()
        .kind(API_VERSION, resource.kind)
        .map_err(from_api)?;
    let display = spec
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut name = object_name(&display);
    let spec = Value::Object(spec);
    loop {
        let mut metadata = Map::new();
        match &name {
            Some(name) => metadata.insert("name".into(), json!(name)),
            None => metadata.insert("generateName".into(), json!(resource.prefix)),
        };
        let body = json!({"apiVersion": API_VERSION, "kind": resource.kind,
                          "metadata": metadata, "spec": spec});
        match ctx
            .engine()
            .create(&kind, Some(namespace), body, options)
            .await
        {
            Ok(written) => return Ok(written.object),
            Err(error)
                if name.is_some()
                    && error.code() == 409
                    && error.status.reason == "AlreadyExists" =>
            {
                name = None;
            }
            Err(error) => return Err(from_api(error)),
        }
    }
}

async fn create(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    parent: Option<String>,
    body: Bytes,
) -> OctaviaResult<Response> {
    let ctx = context(state, &user)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| bad("Invalid input: the body is not JSON."))?;
    let request = attributes::member(&body, resource.singular)?;
    let namespace = create_namespace(&ctx, request)?;
    check(&ctx, &resource.rule("post"), Some(&namespace))?;
    if resource.kind == "LoadBalancer" && graph::is_graph(request) {
        let plan = graph::plan(request)?;
        let created = graph::create(&ctx, &namespace, plan).await?;
        let tree = tree_around(&ctx, &created).await?;
        let shown = graph::view(&ctx, &tree);
        return Ok((StatusCode::CREATED, Json(json!({ "loadbalancer": shown }))).into_response());
    }
    let parent = parent_of(&ctx, resource, parent.as_deref()).await?;
    let mut spec = Map::new();
    attributes::apply(
        &mut spec,
        request,
        resource.attributes,
        true,
        resource.singular,
    )?;
    if let Some((field, parent)) = &parent {
        spec.insert((*field).into(), json!(uid(parent)));
    }
    defaults(resource, &mut spec);
    let created = make(&ctx, resource, &namespace, spec, &WriteOptions::default()).await?;
    let tree = tree_around(&ctx, &created).await?;
    let shown = view(&ctx, resource, &created, &tree);
    Ok((
        StatusCode::CREATED,
        Json(json!({ resource.singular: shown })),
    )
        .into_response())
}

async fn update(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    parent: Option<String>,
    id: String,
    body: Bytes,
) -> OctaviaResult<Json<Value>> {
    let ctx = context(state, &user)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| bad("Invalid input: the body is not JSON."))?;
    let request = attributes::member(&body, resource.singular)?;
    let parent = parent_of(&ctx, resource, parent.as_deref()).await?;
    let mut current = fetch(&ctx, resource, &id).await?;
    if !belongs(&current, &parent) {
        return Err(resource.missing(&id));
    }
    check(&ctx, &resource.rule("put"), object::namespace(&current))?;
    if object::deletion_timestamp(&current).is_some() {
        return Err(conflict(format!(
            "Invalid state PENDING_DELETE of {} resource {id}",
            resource.singular
        )));
    }
    let kind = ctx
        .engine()
        .kind(API_VERSION, resource.kind)
        .map_err(from_api)?;
    let namespace = object::namespace(&current).unwrap_or_default().to_owned();
    let name = object::name(&current).unwrap_or_default().to_owned();
    let updated = 'write: {
        for _ in 0..8 {
            let mut spec = current
                .get("spec")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            attributes::apply(
                &mut spec,
                request,
                resource.attributes,
                false,
                resource.singular,
            )?;
            let mut desired = current.clone();
            desired["spec"] = Value::Object(spec);
            match ctx
                .engine()
                .replace(
                    &kind,
                    Some(&namespace),
                    &name,
                    desired,
                    WriteTarget::Main,
                    &WriteOptions::default(),
                )
                .await
            {
                Ok(written) => break 'write written.object,
                Err(error)
                    if error.code() == 409
                        && error
                            .status
                            .message
                            .contains("the object has been modified") =>
                {
                    current = fetch(&ctx, resource, &id).await?;
                }
                Err(error) => return Err(from_api(error)),
            }
        }
        return Err(conflict(format!(
            "The {} is being changed by someone else; try again.",
            resource.singular
        )));
    };
    let tree = tree_around(&ctx, &updated).await?;
    Ok(Json(
        json!({ resource.singular: view(&ctx, resource, &updated, &tree) }),
    ))
}

async fn delete(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    parent: Option<String>,
    id: String,
    RawQuery(raw): RawQuery,
) -> OctaviaResult<Response> {
    let ctx = context(state, &user)?;
    let parent = parent_of(&ctx, resource, parent.as_deref()).await?;
    let object = fetch(&ctx, resource, &id).await?;
    if !belongs(&object, &parent) {
        return Err(resource.missing(&id));
    }
    check(&ctx, &resource.rule("delete"), object::namespace(&object))?;
    if resource.kind == "LoadBalancer" {
        let cascade = Query::parse(raw.as_deref())
            .first("cascade")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let tree = tree_of(ctx.engine(), &object).await.map_err(from_api)?;
        let has_children = tree.listeners.iter().chain(&tree.pools).next().is_some();
        if has_children && !cascade {
            return Err(bad(format!(
                "Cannot delete Load Balancer {id} - it has children"
            )));
        }
    }
    let kind = ctx
        .engine()
        .kind(API_VERSION, resource.kind)
        .map_err(from_api)?;
    // Dependents (a pool's members, a load balancer's tree and VIP port) go with it.
    match ctx
        .engine()
        .delete(
            &kind,
            object::namespace(&object),
            object::name(&object).unwrap_or_default(),
            &DeleteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(error) if error.code() == 404 => Err(resource.missing(&id)),
        Err(error) => Err(from_api(error)),
    }
}

/// The attributes a member's entry in a batch update may change, as a member update may
/// (its address, port and subnet are what matched it).
const MATCHED_BY: [&str; 3] = ["address", "protocol_port", "subnet_id"];

/// A member's address and port, the key a batch update matches members by.
fn address_and_port(address: &str, port: Option<u64>) -> (String, u64) {
    let address = address
        .parse::<std::net::IpAddr>()
        .map_or_else(|_| address.to_owned(), |ip| ip.to_string());
    (address, port.unwrap_or_default())
}

/// `PUT /pools/{id}/members` (Octavia's batch member update): the pool's members become
/// the ones listed, matched by address and port. A listed member the pool has is updated
/// with the entry's other attributes, one it lacks is created, and one it has that is not
/// listed is deleted (kept with `?additive_only=true`). Everything is checked before
/// anything is written (the list as a whole, each entry's attributes, and each create and
/// update as a dry run through the kinds' admission), so a bad entry changes nothing.
/// Answered 202 with no body, as Octavia does.
async fn replace_members(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(pool_id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> OctaviaResult<Response> {
    let ctx = context(state, &user)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| bad("Invalid input: the body is not JSON."))?;
    let entries = body
        .get("members")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad("Invalid input for field/attribute members. Value: 'None'. Mandatory field missing.")
        })?;
    let pool = fetch(&ctx, &POOL, &pool_id).await?;
    let namespace = object::namespace(&pool).unwrap_or_default().to_owned();
    check(&ctx, &MEMBER.rule("put"), Some(&namespace))?;
    if object::deletion_timestamp(&pool).is_some() {
        return Err(conflict(format!(
            "Invalid state PENDING_DELETE of pool resource {pool_id}"
        )));
    }
    let additive = Query::parse(raw.as_deref())
        .first("additive_only")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let tree = tree_around(&ctx, &pool).await?;
    let this_pool = Some(("poolId", pool.clone()));
    let existing: std::collections::HashMap<(String, u64), &Value> = tree
        .members
        .iter()
        .filter(|member| belongs(member, &this_pool))
        .filter(|member| object::deletion_timestamp(member).is_none())
        .map(|member| {
            let spec = &member["spec"];
            let key = address_and_port(
                spec["address"].as_str().unwrap_or_default(),
                spec["protocolPort"].as_u64(),
            );
            (key, member)
        })
        .collect();

    // The plan, checked as a whole.
    let mut listed = std::collections::HashSet::new();
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for entry in entries {
        let request = entry.as_object().ok_or_else(|| {
            bad("Invalid input for field/attribute members: each must be an object.")
        })?;
        let address = request.get("address").and_then(Value::as_str);
        let port = request.get("protocol_port").and_then(|port| {
            port.as_u64()
                .or_else(|| port.as_str().and_then(|text| text.trim().parse().ok()))
        });
        let (Some(address), Some(port)) = (address, port) else {
            return Err(bad(
                "Invalid input for field/attribute members: each needs address and protocol_port.",
            ));
        };
        let key = address_and_port(address, Some(port));
        if !listed.insert(key.clone()) {
            return Err(conflict(format!(
                "Another member on this pool is already using ip {} on protocol_port {}",
                key.0, key.1
            )));
        }
        match existing.get(&key) {
            Some(current) => {
                let changes: Map<String, Value> = request
                    .iter()
                    .filter(|(name, _)| !MATCHED_BY.contains(&name.as_str()))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                let mut desired = (*current).clone();
                let spec = object::ensure_object(
                    object::ensure_object(&mut desired)
                        .entry("spec")
                        .or_insert_with(|| json!({})),
                );
                attributes::apply(spec, &changes, MEMBER.attributes, false, "member")?;
                if desired != **current {
                    updates.push(desired);
                }
            }
            None => {
                let mut spec = Map::new();
                attributes::apply(&mut spec, request, MEMBER.attributes, true, "member")?;
                spec.insert("poolId".into(), json!(uid(&pool)));
                creates.push(spec);
            }
        }
    }
    let deletes: Vec<&Value> = if additive {
        Vec::new()
    } else {
        existing
            .iter()
            .filter(|(key, _)| !listed.contains(*key))
            .map(|(_, member)| *member)
            .collect()
    };

    // Each write as a dry run first, then for real.
    let kind = ctx
        .engine()
        .kind(API_VERSION, MEMBER.kind)
        .map_err(from_api)?;
    for dry_run in [true, false] {
        let options = WriteOptions {
            dry_run,
            ..WriteOptions::default()
        };
        for spec in &creates {
            make(&ctx, &MEMBER, &namespace, spec.clone(), &options).await?;
        }
        for desired in &updates {
            ctx.engine()
                .replace(
                    &kind,
                    Some(&namespace),
                    object::name(desired).unwrap_or_default(),
                    desired.clone(),
                    WriteTarget::Main,
                    &options,
                )
                .await
                .map_err(from_api)?;
        }
        let options = DeleteOptions {
            dry_run,
            ..DeleteOptions::default()
        };
        for member in &deletes {
            match ctx
                .engine()
                .delete(
                    &kind,
                    Some(&namespace),
                    object::name(member).unwrap_or_default(),
                    &options,
                )
                .await
            {
                Ok(_) => {}
                Err(error) if error.code() == 404 => {}
                Err(error) => return Err(from_api(error)),
            }
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

fn stats_view(stats: &ronghe_api_types::loadbalancing::Stats) -> Value {
    json!({"stats": {
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "active_connections": stats.active_connections,
        "total_connections": stats.total_connections,
        "request_errors": stats.request_errors,
    }})
}

async fn load_balancer_stats(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> OctaviaResult<Json<Value>> {
    let ctx = context(state, &user)?;
    let lb = fetch(&ctx, &LOAD_BALANCER, &id).await?;
    check(
        &ctx,
        &LOAD_BALANCER.rule("get_stats"),
        object::namespace(&lb),
    )?;
    let status: LoadBalancerStatus = status_of(&lb);
    Ok(Json(stats_view(&status.stats)))
}

async fn listener_stats(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> OctaviaResult<Json<Value>> {
    let ctx = context(state, &user)?;
    let listener = fetch(&ctx, &LISTENER, &id).await?;
    check(
        &ctx,
        &LISTENER.rule("get_stats"),
        object::namespace(&listener),
    )?;
    let tree = tree_around(&ctx, &listener).await?;
    let status: LoadBalancerStatus = status_of(&tree.load_balancer);
    let stats = status
        .listener_stats
        .get(uid(&listener))
        .copied()
        .unwrap_or_default();
    Ok(Json(stats_view(&stats)))
}

async fn load_balancer_status(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> OctaviaResult<Json<Value>> {
    let ctx = context(state, &user)?;
    let lb = fetch(&ctx, &LOAD_BALANCER, &id).await?;
    check(
        &ctx,
        &LOAD_BALANCER.rule("get_status"),
        object::namespace(&lb),
    )?;
    let tree = tree_of(ctx.engine(), &lb).await.map_err(from_api)?;
    Ok(Json(views::status_tree(&tree)))
}

/// `PUT /loadbalancers/{id}/failover`: the controller moves it to another host.
async fn failover(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> OctaviaResult<Response> {
    let ctx = context(state, &user)?;
    let lb = fetch(&ctx, &LOAD_BALANCER, &id).await?;
    check(
        &ctx,
        &LOAD_BALANCER.rule("put_failover"),
        object::namespace(&lb),
    )?;
    if object::deletion_timestamp(&lb).is_some() {
        return Err(conflict(format!(
            "Invalid state PENDING_DELETE of loadbalancer resource {id}"
        )));
    }
    let status: LoadBalancerStatus = status_of(&lb);
    let kind = ctx
        .engine()
        .kind(API_VERSION, "LoadBalancer")
        .map_err(from_api)?;
    ctx.engine()
        .patch(
            &kind,
            object::namespace(&lb),
            object::name(&lb).unwrap_or_default(),
            PatchKind::Merge,
            json!({"status": {
                "failoverRequested": object::now_rfc3339(),
                "failoverFrom": status.host,
            }}),
            WriteTarget::Status,
            &WriteOptions::default(),
        )
        .await
        .map_err(from_api)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn providers(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> OctaviaResult<Json<Value>> {
    let ctx = context(state, &user)?;
    check(&ctx, "os_load-balancer_api:provider:get_all", None)?;
    Ok(Json(json!({"providers": [
        {"name": PROVIDER, "description": PROVIDER_DESCRIPTION},
    ]})))
}
