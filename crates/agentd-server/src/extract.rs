//! The project's own body, query and path extractors. They wrap axum's so that every rejection is a
//! problem+json naming the offending field, with the same codes everywhere.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use agentd_core::ErrorCode;

use crate::problem::ApiError;

/// A JSON request body. Malformed JSON is 400 `invalid_json`; a value of the wrong type, a missing
/// field or an unknown enum value is 422 `invalid_field` with the field's path; too large is 413.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mime = crate::form::media_type(request.headers());
        let is_json = mime == "application/json"
            || (mime.starts_with("application/") && mime.ends_with("+json"));
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON: send `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        "the request body exceeds the size limit",
                    )
                } else {
                    ApiError::new(ErrorCode::InvalidJson, rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(Json)
    }
}

/// Deserializes a JSON document, naming the failing field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                data_error(&path, strip_position(&message))
            }
            _ => ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {inner}"),
            ),
        }
    })?;
    deserializer.end().map_err(|inner| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {inner}"),
        )
    })?;
    Ok(value)
}

/// serde_json appends ` at line 1 column 12` to data errors; the field path says more.
fn strip_position(message: &str) -> &str {
    message
        .rsplit_once(" at line ")
        .map_or(message, |(head, _)| head)
}

/// A data error at `path`. A missing field is reported at the field itself, not at its parent.
fn data_error(path: &str, message: &str) -> ApiError {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    let field = match (missing, path) {
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, ".") => "body".to_owned(),
        (None, path) => path.to_owned(),
    };
    ApiError::field(ErrorCode::InvalidField, field, message)
}

/// A query string. A bad value is 422 `invalid_field` naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                data_error(&path, &message)
            })
    }
}

/// Path parameters. A value that does not parse (say, an id that is not a UUID) is 422
/// `invalid_field` naming the parameter.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;

        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                let params = raw_params(parts, state).await;
                let message = error.body_text();
                let field = match error.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    ErrorKind::ParseErrorAtIndex { index, .. } => params
                        .get(*index)
                        .map(|(name, _)| name.clone())
                        .unwrap_or_else(|| "path".to_owned()),
                    _ => guess_param(&params, &message),
                };
                Err(ApiError::field(
                    ErrorCode::InvalidField,
                    field.clone(),
                    format!("path parameter `{field}` is invalid: {message}"),
                ))
            }
            Err(other) => Err(ApiError::new(ErrorCode::Internal, other.body_text())),
        }
    }
}

async fn raw_params<S: Send + Sync>(parts: &mut Parts, state: &S) -> Vec<(String, String)> {
    match axum::extract::RawPathParams::from_request_parts(parts, state).await {
        Ok(params) => params
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Which parameter a deserializer's message is about, when axum does not say: the one whose value
/// the message quotes, else the id that is not a UUID, else the only one.
fn guess_param(params: &[(String, String)], message: &str) -> String {
    let quoted = params
        .iter()
        .find(|(_, value)| !value.is_empty() && message.contains(&format!("`{value}`")));
    let bad_uuid = || {
        params.iter().find(|(name, value)| {
            message.contains("UUID")
                && name.ends_with("id")
                && uuid::Uuid::parse_str(value).is_err()
        })
    };
    match (quoted.or_else(bad_uuid), params) {
        (Some((name, _)), _) => name.clone(),
        (None, [(name, _)]) => name.clone(),
        (None, _) => "path".to_owned(),
    }
}

/// For optional bodies: an empty (or blank) body is `T::default()`, anything else must be JSON of `T`.
pub fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// `deserialize_with` for patch fields: absent → `None` (keep, with `#[serde(default)]`), `null` →
/// `Some(None)` (clear), a value → `Some(Some(value))`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
