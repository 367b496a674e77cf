//! Bodies that come as a form or as JSON. AgentOS clients post runs as `multipart/form-data` or
//! `application/x-www-form-urlencoded` (every value a string); other clients send JSON. Both become one
//! JSON object, and [`Fields`] reads typed values from it, accepting a form's `"true"` for `true` and a
//! form's JSON-encoded text for an array.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use agentd_core::ErrorCode;

use crate::extract::parse_json;
use crate::problem::ApiError;

/// The request's media type, lowercased and without parameters (`multipart/form-data`); empty when
/// there is no `Content-Type`.
pub fn media_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// An `application/x-www-form-urlencoded` body as fields, every value a string.
pub fn urlencoded_fields(bytes: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// A form or JSON body as one object of fields.
pub struct Fields(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match media_type(request.headers()).as_str() {
            "multipart/form-data" => {
                let mut multipart = Multipart::from_request(request, state)
                    .await
                    .map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.body_text()))?;
                let mut fields = Map::new();
                while let Some(field) = multipart
                    .next_field()
                    .await
                    .map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.body_text()))?
                {
                    let name = field.name().unwrap_or_default().to_owned();
                    if field.file_name().is_some() {
                        return Err(ApiError::field(
                            ErrorCode::InvalidField,
                            name,
                            "file uploads are not supported on runs yet",
                        ));
                    }
                    let text = field
                        .text()
                        .await
                        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.body_text()))?;
                    fields.insert(name, Value::String(text));
                }
                Ok(Self(fields))
            }
            "application/x-www-form-urlencoded" => {
                let bytes = body_bytes(request, state).await?;
                Ok(Self(urlencoded_fields(&bytes)))
            }
            "application/json" | "" => {
                let bytes = body_bytes(request, state).await?;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Self(Map::new()));
                }
                parse_json::<Map<String, Value>>(&bytes).map(Self)
            }
            other => Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("`{other}` bodies are not accepted here: send a form (multipart/form-data or application/x-www-form-urlencoded) or JSON"),
            )),
        }
    }
}

async fn body_bytes<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body exceeds the size limit",
                )
            } else {
                ApiError::new(ErrorCode::InvalidJson, rejection.body_text())
            }
        })
}

impl Fields {
    /// A string field; empty strings count as absent.
    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(ApiError::field(
                ErrorCode::InvalidField,
                name,
                "must be a string",
            )),
        }
    }

    /// A required string field.
    pub fn required_string(&self, name: &str) -> Result<String, ApiError> {
        self.string(name)?.ok_or_else(|| {
            ApiError::field(
                ErrorCode::InvalidField,
                name,
                format!("missing field `{name}`"),
            )
        })
    }

    /// A boolean field (`true`/`false`, or the strings a form sends).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(Value::String(text)) => match text.to_ascii_lowercase().as_str() {
                "" | "null" => Ok(None),
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(ApiError::field(
                    ErrorCode::InvalidField,
                    name,
                    "must be true or false",
                )),
            },
            Some(_) => Err(ApiError::field(
                ErrorCode::InvalidField,
                name,
                "must be true or false",
            )),
        }
    }

    /// A non-negative integer field.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidField,
                    name,
                    "must be a non-negative integer",
                )
            }),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => text.parse().map(Some).map_err(|_| {
                ApiError::field(
                    ErrorCode::InvalidField,
                    name,
                    "must be a non-negative integer",
                )
            }),
            Some(_) => Err(ApiError::field(
                ErrorCode::InvalidField,
                name,
                "must be a non-negative integer",
            )),
        }
    }

    /// A structured field: JSON in a JSON body, JSON text in a form.
    pub fn structured<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ApiError> {
        let value = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(text)) if text.is_empty() => return Ok(None),
            Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|e| {
                ApiError::field(ErrorCode::InvalidField, name, format!("must be JSON: {e}"))
            })?,
            Some(value) => value.clone(),
        };
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        parse_json::<T>(&bytes)
            .map(Some)
            .map_err(|error| error.nested_in(name))
    }
}
