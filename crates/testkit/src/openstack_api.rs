//! Raw requests to one OpenStack service of a test server with one user's Keystone token:
//! for what the openstack CLI cannot say (bad input, bulk creates, timing).

use anyhow::{Context, ensure};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::ServerProcess;

/// A user's token and the path the service lives under (`/networking/v2.0`).
pub struct OpenstackApi {
    client: kube::Client,
    token: String,
    service: String,
}

impl OpenstackApi {
    /// Logs `user` (domain Default) in with `password`, scoped to `project`.
    pub async fn login(
        server: &ServerProcess,
        service: &str,
        user: &str,
        password: &str,
        project: &str,
    ) -> anyhow::Result<Self> {
        let client = server.bare_client().await?;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
        let request = http::Request::builder()
            .method("POST")
            .uri("/identity/v3/auth/tokens")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(body.to_string().into_bytes()))?;
        let response = client.send(request).await?;
        ensure!(
            response.status() == 201,
            "login as {user}: {}",
            response.status()
        );
        let token = response
            .headers()
            .get("x-subject-token")
            .context("no X-Subject-Token")?
            .to_str()?
            .to_owned();
        Ok(Self {
            client,
            token,
            service: service.to_owned(),
        })
    }

    /// The admin user in the admin project (its password from the server's data
    /// directory).
    pub async fn admin(server: &ServerProcess, service: &str) -> anyhow::Result<Self> {
        let password = std::fs::read_to_string(server.data_dir().join("admin-password"))?;
        Self::login(server, service, "admin", password.trim(), "admin").await
    }

    /// After a restart: the same token (Fernet keys persist) on the server's new port.
    pub async fn reconnect(&mut self, server: &ServerProcess) -> anyhow::Result<()> {
        self.client = server.bare_client().await?;
        Ok(())
    }

    /// `method` on `path` under the service, with a JSON body if any; returns the status
    /// and the body (JSON, or a string when it is not JSON).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.service))
            .header("x-auth-token", &self.token);
        let bytes = match body {
            Some(body) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                body.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let response = self
            .client
            .send(builder.body(kube::client::Body::from(bytes))?)
            .await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// A request that must answer `code`; returns the body.
    pub async fn expect(
        &self,
        code: u16,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.send(method, path, body.as_ref()).await?;
        ensure!(status == code, "{method} {path}: {status} {value}");
        Ok(value)
    }

    /// Creates one object (`POST /<collection>` with `{member: body}`); returns its id.
    pub async fn create(
        &self,
        collection: &str,
        member: &str,
        body: Value,
    ) -> anyhow::Result<String> {
        let made = self
            .expect(
                201,
                "POST",
                &format!("/{collection}"),
                Some(json!({member: body})),
            )
            .await?;
        Ok(made[member]["id"].as_str().context("id")?.to_owned())
    }

    /// How many objects a list under `key` shows.
    pub async fn count(&self, path: &str, key: &str) -> anyhow::Result<usize> {
        let listed = self.expect(200, "GET", path, None).await?;
        listed[key].as_array().map(Vec::len).context("a list")
    }
}
