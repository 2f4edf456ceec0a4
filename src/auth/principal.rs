//! The authenticated caller. Built by the route guard from a session JWT or
//! an API key; handlers take it as an extractor.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::{AuditEntry, ClientInfo};
use crate::error::{ApiError, ApiResult};
use crate::rbac::effective::Effective;
use crate::rbac::permission::Permission;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Session(Uuid),
    ApiKey(Uuid),
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    /// Already cut down to the key's scopes for an API key.
    pub perms: Arc<Effective>,
    pub credential: Credential,
}

impl Principal {
    /// 403 naming the permission unless it is held (in `team` for
    /// team-scoped resources).
    pub fn require(&self, p: Permission, team: Option<Uuid>) -> ApiResult<()> {
        if self.perms.allows(p, team) { Ok(()) } else { Err(ApiError::forbidden(p.to_string())) }
    }

    pub fn can(&self, p: Permission, team: Option<Uuid>) -> bool {
        self.perms.allows(p, team)
    }

    /// An audit entry for an action this principal took.
    pub fn audit(
        &self,
        client: &ClientInfo,
        at: DateTime<Utc>,
        action: &'static str,
        resource_type: &'static str,
        resource_id: impl ToString,
        metadata: serde_json::Value,
    ) -> AuditEntry {
        let mut metadata = metadata;
        if let (Credential::ApiKey(id), serde_json::Value::Object(m)) = (self.credential, &mut metadata) {
            m.insert("api_key_id".into(), serde_json::Value::String(id.to_string()));
        }
        AuditEntry {
            org_id: self.org_id,
            user_id: Some(self.user_id),
            user_email: Some(self.email.clone()),
            action,
            resource_type,
            resource_id: Some(resource_id.to_string()),
            ip_address: client.ip_string(),
            user_agent: client.user_agent.clone(),
            metadata,
            at,
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Principal>().cloned().ok_or_else(ApiError::unauthenticated))
    }
}
