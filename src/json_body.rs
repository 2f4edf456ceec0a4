//! `Json<T>`: the request-body extractor of the API. It is actix's (same
//! `JsonConfig`: size limit, content type, 400 on malformed JSON) followed by
//! a typed read that knows where it failed, so a value of the wrong type or
//! shape is a 422 naming its place (`quantity`, `events[2]`), not "body".

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, field_in_serde_message};

pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            serde_path_to_error::deserialize(value).map(Json).map_err(|e| located(&e).into())
        })
    }
}

/// The error, with the field named by its path in the body; for a missing
/// or unknown field serde names it in the message, under the path's object.
fn located(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let msg = e.inner().to_string();
    let field = match (field_in_serde_message(&msg), path.as_str()) {
        (Some(f), ".") => f.to_string(),
        (Some(f), p) => format!("{p}.{f}"),
        (None, ".") => "body".to_string(),
        (None, p) => p.to_string(),
    };
    ApiError::invalid(field, msg)
}
