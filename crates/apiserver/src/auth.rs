//! The authentication and authorization seam every API request passes through, on both
//! faces. The identity service provides the implementations (`crate::identity`).

use std::sync::Arc;

use http::HeaderMap;

use crate::identity::Principal;

/// Who made a request.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// What identity knows of the caller (roles, scope, token), when identity
    /// authenticated the request.
    pub principal: Option<Arc<Principal>>,
}

/// Finds the user a request's credentials name. Implementations must not log credentials.
pub trait Authenticator: Send + Sync + 'static {
    /// `None` when the request carries no valid credential (the server answers 401).
    fn authenticate(&self, headers: &HeaderMap) -> Option<User>;
}

/// What a request wants to do, for authorization.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub namespaced: bool,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// An authorization decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// A list or watch across namespaces (or of namespaces) may go ahead, returning only
    /// the objects of these projects.
    AllowWithin(Arc<[String]>),
}

/// Decides whether a user may do something.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, user: &User, attributes: &Attributes<'_>) -> Decision;
}

/// The token of `Authorization: Bearer …` or, as OpenStack clients send it, `X-Auth-Token`.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some((scheme, token)) = value.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(token.trim());
    }
    headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
        headers
    }

    #[test]
    fn finds_bearer_and_keystone_tokens() {
        assert_eq!(
            bearer_token(&headers("authorization", "Bearer s3cret")),
            Some("s3cret")
        );
        assert_eq!(
            bearer_token(&headers("authorization", "bearer  s3cret ")),
            Some("s3cret")
        );
        assert_eq!(
            bearer_token(&headers("x-auth-token", "s3cret")),
            Some("s3cret")
        );
        assert_eq!(
            bearer_token(&headers("authorization", "Basic s3cret")),
            None
        );
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
