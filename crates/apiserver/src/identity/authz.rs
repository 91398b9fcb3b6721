//! The identity service as the Kubernetes face's authenticator, and the policy table
//! (`ronghe_identity::policy`) as its authorizer.

use std::sync::Arc;

use http::HeaderMap;
use ronghe_identity::policy::{Access, Rule, Target, kubernetes_rule};

use super::{IdentityService, PrincipalScope};
use crate::auth::{Attributes, Authenticator, Authorizer, Decision, User, bearer_token};

impl Authenticator for IdentityService {
    fn authenticate(&self, headers: &HeaderMap) -> Option<User> {
        let token = bearer_token(headers)?;
        match self.validate(token) {
            Ok(principal) => {
                let mut groups = vec!["system:authenticated".to_owned()];
                if principal.subject.is_cloud_admin() {
                    groups.push("system:masters".to_owned());
                }
                if let PrincipalScope::Project { name, .. } = &principal.scope {
                    groups.push(format!("project:{name}"));
                }
                Some(User {
                    name: principal.user_name.clone(),
                    groups,
                    principal: Some(Arc::new(principal)),
                })
            }
            Err(refusal) => {
                // The reason, never the token.
                tracing::debug!(%refusal, "refused a credential");
                None
            }
        }
    }
}

/// Authorizes Kubernetes requests by the policy table.
pub struct PolicyAuthorizer;

impl Authorizer for PolicyAuthorizer {
    fn authorize(&self, user: &User, attributes: &Attributes<'_>) -> Decision {
        let Some(principal) = &user.principal else {
            return Decision::Deny;
        };
        let subject = &principal.subject;
        let row = kubernetes_rule(attributes.group, attributes.resource, attributes.namespaced);
        let access = Access::of_verb(attributes.verb);
        let rule = match access {
            Access::Read => row.read,
            Access::Write => row.write,
        };
        let project = if attributes.namespaced {
            attributes.namespace
        } else if row.names_project {
            attributes.name
        } else {
            None
        };
        let across_projects = project.is_none()
            && (attributes.namespaced || row.names_project)
            && matches!(rule, Rule::Project(_));
        if !across_projects {
            let target = Target {
                project,
                user: None,
            };
            return if rule.allows(subject, &target) {
                Decision::Allow
            } else {
                Decision::Deny
            };
        }
        // A collection spanning projects: everything for those who may act anywhere,
        // otherwise only what the caller's own project holds.
        let Rule::Project(needed) = rule else {
            return Decision::Deny;
        };
        let cloud_passes = match access {
            Access::Read => subject.cloud.is_some(),
            Access::Write => subject.is_cloud_admin(),
        };
        if cloud_passes {
            return Decision::Allow;
        }
        let visible: Vec<String> = subject
            .project
            .iter()
            .filter(|(_, level)| *level >= needed)
            .map(|(name, _)| name.clone())
            .collect();
        Decision::AllowWithin(visible.into())
    }
}
