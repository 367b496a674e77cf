//! Agent identities: an agent's own keys (`/agents/{agent_id}/keys`, and AitherOS's
//! `/api/agents/{agent_id}/rotate-key`), signing as an agent (`/agents/{agent_id}/sign`) and checking
//! signatures (`/identity/verify`). The private keys never appear here: the identity service signs.

use std::sync::Arc;

use agentd_core::{AgentId, KeyId, KeyName, Scope, ScopeSet};
use agentd_runtime::identity::ALGORITHM;
use agentd_runtime::{AccessService, IdentityService, NewAgentKey, PageRequest, VerifyRequest};
use axum::extract::State;
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{optional_json, Json, Path, Query};
use crate::problem::ApiError;
use crate::routes::agents::AgentPath;
use crate::routes::keys::{CreatedKeyView, KeyList, KeyView, ListQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agent_keys, create_agent_key))
        .routes(routes!(revoke_agent_key))
        .routes(routes!(rotate_key))
        .routes(routes!(sign))
        .routes(routes!(verify))
}

/// A new agent key. Every field is optional; an empty body makes a key with the default scopes.
#[derive(Deserialize, ToSchema, Default)]
pub struct CreateAgentKeyRequest {
    /// A name to tell the key apart (default `agent key`).
    #[schema(value_type = Option<String>, example = "research bot")]
    pub name: Option<KeyName>,
    /// Scopes naming this agent (`agents:<agent_id>:run`, `agents:<agent_id>:*`) or
    /// `identity:verify`; at most the creator's own. Default: `agents:<agent_id>:read`, `…:run`,
    /// `…:sign` and `…:keys`.
    #[schema(value_type = Option<Vec<String>>)]
    pub scopes: Option<Vec<Scope>>,
    /// When the key stops working (RFC 3339); never, if absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Which key to rotate. Leave the body out when rotating the calling agent key itself.
#[derive(Deserialize, ToSchema, Default)]
pub struct RotateKeyRequest {
    /// One of the agent's keys; absent: the caller's own key (which must be one of the agent's).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub key_id: Option<KeyId>,
}

/// A rotated key: the same key with a new secret, shown here once. The old secret no longer works.
#[derive(Serialize, ToSchema)]
pub struct RotatedKeyView {
    #[serde(flatten)]
    pub info: KeyView,
    /// The new secret to send as `Authorization: Bearer <key>`.
    pub key: String,
    /// The same secret, under AitherOS's name.
    pub new_api_key: String,
}

/// Path of one of an agent's keys.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentKeyPath {
    #[param(value_type = uuid::Uuid)]
    pub agent_id: AgentId,
    #[param(value_type = uuid::Uuid)]
    pub key_id: KeyId,
}

/// What to sign.
#[derive(Deserialize, ToSchema)]
pub struct SignRequest {
    /// A string is signed as its UTF-8 bytes, exactly as given; any other JSON value as its canonical
    /// serialization (object members sorted by key, no whitespace).
    #[schema(value_type = Object, example = "hello")]
    pub payload: Value,
}

/// An agent's signature.
#[derive(Serialize, ToSchema)]
pub struct SignatureView {
    pub agent_id: uuid::Uuid,
    /// Always `Ed25519`.
    #[schema(example = "Ed25519")]
    pub algorithm: &'static str,
    /// The agent's public key, base64 (32 bytes).
    pub public_key: String,
    /// The signature, base64 (64 bytes).
    pub signature: String,
}

/// A signature to check, against an agent of the caller's tenant or a public key.
#[derive(Deserialize, ToSchema)]
pub struct VerifyBody {
    /// The signing agent; give this or `public_key` (or both: the key must then be the agent's).
    #[schema(value_type = Option<uuid::Uuid>)]
    pub agent_id: Option<AgentId>,
    /// The signer's Ed25519 public key, base64 (32 bytes).
    pub public_key: Option<String>,
    /// The payload as it was signed: a string, or a JSON value (compared by its canonical form).
    #[schema(value_type = Object, example = "hello")]
    pub payload: Value,
    /// The signature, base64 (64 bytes).
    pub signature: String,
}

/// The outcome of a verification.
#[derive(Serialize, ToSchema)]
pub struct VerificationView {
    pub valid: bool,
    /// The agent named, or the caller's agent holding `public_key`; absent when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<uuid::Uuid>,
    /// The public key checked against, base64.
    pub public_key: String,
    #[schema(example = "Ed25519")]
    pub algorithm: &'static str,
}

/// Makes a key bound to the agent and shows its secret once. The key reaches only this agent.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/keys",
    tag = "identity",
    params(AgentPath),
    request_body(content = Option<CreateAgentKeyRequest>, description = "Optional name, scopes and expiry"),
    security(("bearer" = ["agents:keys"])),
    responses(
        (status = 201, body = CreatedKeyView),
        (status = 409, description = "The agent is terminated", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn create_agent_key(
    auth: Auth<scopes::AgentsKeys>,
    State(access): State<Arc<AccessService>>,
    Path(path): Path<AgentPath>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<CreatedKeyView>), ApiError> {
    let request: CreateAgentKeyRequest = optional_json(&body)?;
    let new = NewAgentKey {
        name: request.name,
        scopes: request.scopes.map(ScopeSet::new),
        expires_at: request.expires_at,
    };
    let (key, plain) = access
        .create_agent_key(&auth.principal, path.agent_id, new)
        .await?;
    let view = CreatedKeyView {
        info: KeyView::from(key),
        key: plain.reveal().to_owned(),
    };
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// Lists the keys bound to the agent, oldest first, without their secrets.
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/keys",
    tag = "identity",
    params(AgentPath, ListQuery),
    security(("bearer" = ["agents:keys"])),
    responses((status = 200, body = KeyList))
)]
async fn list_agent_keys(
    auth: Auth<scopes::AgentsKeys>,
    State(access): State<Arc<AccessService>>,
    Path(path): Path<AgentPath>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<KeyList>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let page = access
        .list_agent_keys(auth.principal.tenant_id, path.agent_id, page)
        .await?;
    Ok(axum::Json(KeyList {
        data: page.items.into_iter().map(KeyView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revokes one of the agent's keys; requests made with it fail from then on.
#[utoipa::path(
    delete,
    path = "/agents/{agent_id}/keys/{key_id}",
    tag = "identity",
    params(AgentKeyPath),
    security(("bearer" = ["agents:keys"])),
    responses((status = 204, description = "Revoked"))
)]
async fn revoke_agent_key(
    auth: Auth<scopes::AgentsKeys>,
    State(access): State<Arc<AccessService>>,
    Path(path): Path<AgentKeyPath>,
) -> Result<StatusCode, ApiError> {
    access
        .revoke_agent_key(auth.principal.tenant_id, path.agent_id, path.key_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotates an agent key (AitherOS): called with an agent key and no body, it rotates that key;
/// otherwise `key_id` names which of the agent's keys. The old secret fails on the very next request;
/// the new one is shown here once. Name, scopes and expiry are kept.
#[utoipa::path(
    post,
    path = "/api/agents/{agent_id}/rotate-key",
    tag = "identity",
    params(AgentPath),
    request_body(content = Option<RotateKeyRequest>, description = "The key to rotate, unless it is the caller's own"),
    security(("bearer" = ["agents:keys"])),
    responses(
        (status = 200, body = RotatedKeyView),
        (status = 409, description = "The agent is terminated, or the key was rotated meanwhile", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn rotate_key(
    auth: Auth<scopes::AgentsKeys>,
    State(access): State<Arc<AccessService>>,
    Path(path): Path<AgentPath>,
    body: axum::body::Bytes,
) -> Result<axum::Json<RotatedKeyView>, ApiError> {
    let request: RotateKeyRequest = optional_json(&body)?;
    let (key, plain) = access
        .rotate_agent_key(&auth.principal, path.agent_id, request.key_id)
        .await?;
    Ok(axum::Json(RotatedKeyView {
        info: KeyView::from(key),
        key: plain.reveal().to_owned(),
        new_api_key: plain.reveal().to_owned(),
    }))
}

/// Signs a payload with the agent's Ed25519 identity. Anyone can check the signature against the
/// agent's `public_key`, here with `POST /identity/verify` or with any Ed25519 library.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/sign",
    tag = "identity",
    params(AgentPath),
    request_body = SignRequest,
    security(("bearer" = ["agents:sign"])),
    responses(
        (status = 200, body = SignatureView),
        (status = 409, description = "The agent is terminated", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
async fn sign(
    auth: Auth<scopes::AgentsSign>,
    State(identity): State<Arc<IdentityService>>,
    Path(path): Path<AgentPath>,
    Json(request): Json<SignRequest>,
) -> Result<axum::Json<SignatureView>, ApiError> {
    let signed = identity
        .sign(auth.principal.tenant_id, path.agent_id, &request.payload)
        .await?;
    Ok(axum::Json(SignatureView {
        agent_id: signed.agent_id.as_uuid(),
        algorithm: ALGORITHM,
        public_key: signed.public_key,
        signature: STANDARD.encode(&signed.signature),
    }))
}

/// Checks a signature made by `POST /agents/{agent_id}/sign`, against an agent of the caller's tenant
/// or a public key. A signature that does not match is `valid: false`; a malformed one is 422.
#[utoipa::path(
    post,
    path = "/identity/verify",
    tag = "identity",
    request_body = VerifyBody,
    security(("bearer" = ["identity:verify"])),
    responses((status = 200, body = VerificationView))
)]
async fn verify(
    auth: Auth<scopes::IdentityVerify>,
    State(identity): State<Arc<IdentityService>>,
    Json(body): Json<VerifyBody>,
) -> Result<axum::Json<VerificationView>, ApiError> {
    let request = VerifyRequest {
        agent_id: body.agent_id,
        public_key: body.public_key,
        payload: body.payload,
        signature: body.signature,
    };
    let verification = identity.verify(auth.principal.tenant_id, request).await?;
    Ok(axum::Json(VerificationView {
        valid: verification.valid,
        agent_id: verification.agent_id.map(|id| id.as_uuid()),
        public_key: verification.public_key,
        algorithm: ALGORITHM,
    }))
}
