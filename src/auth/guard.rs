//! The route guard: an app-wide middleware that looks up the matched route
//! in the `RouteTable`, authenticates the caller and checks the declared
//! permission before any handler runs. A path declared under other methods
//! only answers 405 with `Allow` (HEAD included: only declared methods are
//! served); a matched route with no entry at all is refused (deny by
//! default).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};

use super::credential::authenticate;
use crate::error::ApiError;
use crate::rbac::route_table::Access;
use crate::startup::AppState;

pub fn bearer(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::Internal(anyhow::anyhow!("no app state"))));
    };
    // An undeclared route is still found (and refused below); no pattern at
    // all means nothing matched, and the router answers 404.
    let Some(pattern) = state.routes.pattern_of_request(&req) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // Debug builds (the test suite) prove on every request that both
    // lookups agree, so the permission checked is the handler's.
    #[cfg(debug_assertions)]
    if req.match_pattern().as_deref() != Some(pattern.as_str()) {
        tracing::error!(%pattern, actix = ?req.match_pattern(), "route lookups disagree");
        return Ok(req.error_response(ApiError::Internal(anyhow::anyhow!("route lookups disagree on {pattern}"))));
    }
    let access = match state.routes.access(req.method().as_str(), &pattern) {
        Some(a) => a,
        None => {
            // The path exists under other methods: the client's mistake, and
            // the router would not run anything for this method anyway.
            if let Some(allow) = state.routes.allowed(&pattern) {
                return Ok(req.error_response(ApiError::MethodNotAllowed { allow: allow.to_string() }));
            }
            tracing::error!(method = %req.method(), %pattern, "route without declared access refused");
            return Ok(req.error_response(ApiError::Forbidden {
                detail: "this route declares no permission and is refused".into(),
                missing_permission: None,
            }));
        }
    };
    if access == Access::Public {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let Some(token) = bearer(&req).map(str::to_string) else {
        return Ok(req.error_response(ApiError::unauthenticated()));
    };
    let principal = match authenticate(&state, &token).await {
        Ok(p) => p,
        Err(e) => return Ok(req.error_response(e)),
    };
    if let Access::Requires(p) = access
        && let Err(e) = principal.require(p, None)
    {
        return Ok(req.error_response(e));
    }
    req.extensions_mut().insert(principal);
    Ok(next.call(req).await?.map_into_boxed_body())
}
