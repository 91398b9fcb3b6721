//! The authentication and authorization seam every API request passes through.
//!
//! Until the identity service lands, the one credential accepted is the bootstrap token
//! written into the admin kubeconfig, and every authenticated user may do everything.
//! Identity plugs in by providing other `Authenticator` and `Authorizer` implementations.

use http::HeaderMap;

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
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
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Decides whether a user may do something.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, user: &User, attributes: &Attributes<'_>) -> bool;
}

/// Accepts one static bearer token (the bootstrap credential in the admin kubeconfig).
pub struct StaticTokenAuthenticator {
    token: String,
    user: User,
}

impl StaticTokenAuthenticator {
    pub fn new(token: String, user: User) -> Self {
        Self { token, user }
    }
}

impl Authenticator for StaticTokenAuthenticator {
    fn authenticate(&self, headers: &HeaderMap) -> Option<User> {
        let presented = bearer_token(headers)?;
        constant_time_eq(presented.as_bytes(), self.token.as_bytes()).then(|| self.user.clone())
    }
}

/// Lets every authenticated user do everything (until identity brings roles).
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, _user: &User, _attributes: &Attributes<'_>) -> bool {
        true
    }
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

/// Compares secrets without leaking through timing how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn accepts_only_the_token() {
        let user = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        let auth = StaticTokenAuthenticator::new("s3cret".into(), user.clone());
        assert_eq!(
            auth.authenticate(&headers("authorization", "Bearer s3cret")),
            Some(user.clone())
        );
        assert_eq!(
            auth.authenticate(&headers("x-auth-token", "s3cret")),
            Some(user)
        );
        assert_eq!(
            auth.authenticate(&headers("authorization", "Bearer s3cre")),
            None
        );
        assert_eq!(
            auth.authenticate(&headers("authorization", "Basic s3cret")),
            None
        );
        assert_eq!(auth.authenticate(&HeaderMap::new()), None);
    }
}
