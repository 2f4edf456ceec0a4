//! `ApiError`: every failure a handler can return, rendered as RFC 7807
//! `application/problem+json`. A client's mistake never becomes a 500.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (bad JSON, bad query string): 400.
    #[error("{detail}")]
    BadRequest { detail: String, field: Option<String> },
    /// Well-formed but invalid value: 422, naming the field.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{detail}")]
    Forbidden { detail: String, missing_permission: Option<String> },
    #[error("{0}")]
    PaymentRequired(String),
    #[error("{0}")]
    NotFound(String),
    /// 405; `allow` lists the path's methods ("GET, POST").
    #[error("this path accepts only {allow}")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Conflict(String),
    /// 409 with the quantity still free, so a client can retry with less.
    #[error("{detail}")]
    NoCapacity { detail: String, available: i64 },
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), detail: detail.into() }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest { detail: detail.into(), field: None }
    }

    pub fn bad_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::BadRequest { detail: detail.into(), field: Some(field.into()) }
    }

    pub fn forbidden(missing: impl Into<String>) -> Self {
        let missing = missing.into();
        ApiError::Forbidden { detail: format!("missing permission {missing}"), missing_permission: Some(missing) }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// The one answer for every credential that does not work, so that the
    /// body tells an attacker nothing about why.
    pub fn unauthenticated() -> Self {
        ApiError::Unauthorized("missing, invalid, expired or revoked credentials".into())
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "Bad Request",
            ApiError::Invalid { .. } => "Unprocessable Entity",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::PaymentRequired(_) => "Payment Required",
            ApiError::NotFound(_) => "Not Found",
            ApiError::MethodNotAllowed { .. } => "Method Not Allowed",
            ApiError::Conflict(_) | ApiError::NoCapacity { .. } => "Conflict",
            ApiError::TooManyRequests { .. } => "Too Many Requests",
            ApiError::Unavailable(_) => "Service Unavailable",
            ApiError::Internal(_) => "Internal Server Error",
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_permission: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<i64>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::NoCapacity { .. } => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "an internal error occurred; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let (field, missing_permission) = match self {
            ApiError::BadRequest { field, .. } => (field.as_deref(), None),
            ApiError::Invalid { field, .. } => (Some(field.as_str()), None),
            ApiError::Forbidden { missing_permission, .. } => (None, missing_permission.as_deref()),
            _ => (None, None),
        };
        let body = Problem {
            kind: "about:blank",
            title: self.title(),
            status: status.as_u16(),
            detail,
            field,
            missing_permission,
            available: match self {
                ApiError::NoCapacity { available, .. } => Some(*available),
                _ => None,
            },
        };
        let mut res = HttpResponse::build(status);
        res.content_type("application/problem+json");
        match self {
            ApiError::Unauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"dumont\""));
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        res.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => ApiError::NotFound("not found".into()),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                ApiError::Conflict(match info.constraint_name() {
                    Some(c) => format!("already exists ({c})"),
                    None => "already exists".into(),
                })
            }
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                ApiError::Conflict(format!("still referenced: {}", info.message()))
            }
            Error::DatabaseError(_, info) if info.message().starts_with("last_org_admin") => {
                ApiError::Conflict("the organization must keep at least one org-wide admin".into())
            }
            // A NUL that got past the handlers' checks (crate::validate):
            // PostgreSQL refuses it in text and jsonb. The client's mistake;
            // the transaction it happened in rolls back.
            Error::DatabaseError(_, info)
                if info.message().starts_with("invalid byte sequence for encoding")
                    || info.message().starts_with("unsupported Unicode escape sequence") =>
            {
                tracing::warn!(error = %info.message(), "text with NUL reached PostgreSQL");
                ApiError::bad_request("text must not contain NUL characters")
            }
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                ApiError::Conflict("concurrent update; retry the request".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::error!(error = %e, "database pool");
        ApiError::Unavailable("database unavailable".into())
    }
}

/// JSON body errors: syntax -> 400, wrong shape or type -> 422 naming the field.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let api = match &err {
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            let msg = e.to_string();
            ApiError::invalid(field_in_serde_message(&msg).unwrap_or("body"), msg.clone())
        }
        JsonPayloadError::Deserialize(e) => ApiError::bad_request(format!("malformed JSON: {e}")),
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::bad_request("request body too large")
        }
        other => ApiError::bad_request(format!("invalid request body: {other}")),
    };
    api.into()
}

/// Query-string errors: 400 naming the parameter when serde says which.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    let msg = err.to_string();
    match field_in_serde_message(&msg) {
        Some(f) => ApiError::bad_field(f, msg.clone()),
        None => ApiError::bad_request(msg),
    }
    .into()
}

/// Path errors (an id that is not a UUID) are an unknown resource.
pub fn path_error(_err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::NotFound("not found".into()).into()
}

/// serde names the field between backticks in "missing field `name`" and
/// "unknown field `name`"; other messages quote a value, not a field.
pub fn field_in_serde_message(msg: &str) -> Option<&str> {
    if !(msg.starts_with("missing field") || msg.starts_with("unknown field")) {
        return None;
    }
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_field_names_in_serde_messages() {
        assert_eq!(field_in_serde_message("missing field `name` at line 1"), Some("name"));
        assert_eq!(field_in_serde_message("expected a string"), None);
        assert_eq!(field_in_serde_message("invalid type: integer `5`"), None);
    }
}
