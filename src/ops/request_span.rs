//! The root tracing span of each request. tracing-actix-web's default builder
//! computes its fields (route lookup, connection info, user agent) on every
//! request even when nothing records them; here they are evaluated only when
//! the span is enabled, and the route comes from the route table's radix tree.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage, web};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

use crate::startup::AppState;

pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(req: &ServiceRequest) -> Span {
        tracing::info_span!(
            "HTTP request",
            http.method = %req.method(),
            http.route = route(req),
            http.target = req.path(),
            client.address = ?req.peer_addr(),
            request_id = ?req.extensions().get::<RequestId>().copied(),
            http.status_code = Empty,
            otel.status_code = Empty,
            exception.message = Empty,
            exception.details = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

fn route(req: &ServiceRequest) -> String {
    req.app_data::<web::Data<AppState>>()
        .and_then(|s| s.routes.pattern_of_request(req))
        .unwrap_or_else(|| "unmatched".into())
}
