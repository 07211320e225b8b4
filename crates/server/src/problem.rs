//! API errors as RFC 7807 problem documents (`application/problem+json`).
//!
//! Client mistakes pass through with a message that names the field; internal failures are
//! logged in full and answered with a generic message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certfleet_core::StoreError;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigErrors};

/// Prefix of our problem type URIs.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:certfleet:problem:";

/// The problem document (RFC 7807 §3.1) plus `field`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:certfleet:problem:<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The offending input field, when there is one (`domains[1]`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
    /// Every invalid field when there are several (the first is also in `field`/`detail`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
    /// For `retry-after`: when the CA allows the next request (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after: Option<String>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`domains[1]`).
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

/// An error answered by the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    field: Option<String>,
    /// Rare, so boxed: keeps `Result<_, ApiError>` small.
    errors: Box<[FieldError]>,
    retry_at: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            kind,
            title,
            detail,
            field: None,
            errors: Box::default(),
            retry_at: None,
        }
    }

    /// Invalid input in `field`.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-input",
            "Invalid input",
            detail.into(),
        );
        e.field = Some(field.into());
        e
    }

    /// Something already exists.
    pub fn conflict(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "conflict",
            "Already exists",
            detail.into(),
        );
        e.field = Some(field.into());
        e
    }

    /// Something does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            detail.into(),
        )
    }

    /// The issuer cannot be used (CA unreachable, not ACME, account refused).
    pub fn issuer_unusable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "issuer-unusable",
            "The issuer cannot be used",
            detail.into(),
        );
        e.field = Some("issuer".into());
        e
    }

    /// The CA refused a request certfleet made on a person's behalf (a revocation, an
    /// account update); `detail` carries the CA's own words.
    pub fn ca_refused(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ca-refused",
            "The CA refused the request",
            detail.into(),
        );
        e.field = Some(field.into());
        e
    }

    /// The CA's Retry-After for the certificate has not passed (`at`, Unix seconds).
    pub fn not_before(at: i64, detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "retry-after",
            "The CA asked to wait",
            detail.into(),
        );
        e.field = Some("name".into());
        e.retry_at = Some(at);
        e
    }

    /// Missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)".into(),
        )
    }

    /// The token is valid but its role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            detail.into(),
        )
    }

    /// An internal failure: logged, answered generically.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error while answering an API request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "internal error; the server log has the details".into(),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(name) => {
                ApiError::conflict("name", format!("certificate {name:?} already exists"))
            }
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            other => ApiError::internal(other),
        }
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError::invalid(e.field, e.message)
    }
}

impl From<ConfigErrors> for ApiError {
    fn from(e: ConfigErrors) -> Self {
        let all: Vec<FieldError> =
            e.0.iter()
                .map(|e| FieldError {
                    field: e.field.clone(),
                    detail: e.message.clone(),
                })
                .collect();
        let first = e.0.into_iter().next().expect("at least one error");
        let mut api = ApiError::invalid(first.field, first.message);
        if all.len() > 1 {
            api.errors = all.into_boxed_slice();
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{}", self.kind),
            title: self.title.into(),
            status: self.status.as_u16(),
            detail: self.detail,
            field: self.field,
            errors: self.errors.into_vec(),
            retry_after: self.retry_at.map(crate::views::rfc3339),
        };
        let mut rsp = (self.status, Json(body)).into_response();
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            rsp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        rsp
    }
}
