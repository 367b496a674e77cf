//! `/keys`: the API keys of the caller's tenant. The secret is in the creation response only.

use std::sync::Arc;

use agentd_core::{ApiKey, KeyId, KeyName, NewApiKey, Scope, ScopeSet};
use agentd_runtime::{AccessService, PageRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditEvent;
use crate::auth::{scopes, Auth};
use crate::extract::{Json, Path, Query};
use crate::problem::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key, delete_key))
}

/// A request to create a key.
#[derive(Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    /// A name to tell the key apart (1 to 100 characters).
    #[schema(value_type = String, example = "ci")]
    pub name: KeyName,
    /// Scopes in AgentOS form: `agents:read`, `agents:<id>:run`, `agents:*`, `agent_os:admin`. A key can
    /// only grant scopes its creator holds.
    #[schema(value_type = Vec<String>, example = json!(["agents:read", "agents:*:run"]))]
    pub scopes: Vec<Scope>,
    /// When the key stops working (RFC 3339); never, if absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key, without its secret.
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: uuid::Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it: `agentd_Ab12Cd`.
    pub prefix: String,
    pub scopes: Vec<String>,
    /// For an agent key: the agent it is bound to; `null` for a tenant key.
    pub agent_id: Option<uuid::Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Last successful authentication (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id.as_uuid(),
            name: key.name.as_str().to_owned(),
            prefix: key.prefix,
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            agent_id: key.agent_id.map(|id| id.as_uuid()),
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// A newly created key. `key` is the secret: it is shown here once and never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub info: KeyView,
    /// The secret to send as `Authorization: Bearer <key>`.
    #[schema(example = "agentd_3kP9…")]
    pub key: String,
}

/// One page of keys.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Pagination of a list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Path of one key.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The key's id.
    #[param(value_type = uuid::Uuid)]
    pub key_id: KeyId,
}

/// Lists the tenant's keys, oldest first.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    params(ListQuery),
    security(("bearer" = ["keys:read"])),
    responses((status = 200, body = KeyList))
)]
async fn list_keys(
    auth: Auth<scopes::KeysRead>,
    State(access): State<Arc<AccessService>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<KeyList>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let page = access.list_keys(auth.principal.tenant_id, page).await?;
    Ok(axum::Json(KeyList {
        data: page.items.into_iter().map(KeyView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Creates a key in the caller's tenant and shows its secret once.
#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    request_body = CreateKeyRequest,
    security(("bearer" = ["keys:write"])),
    responses((status = 201, body = CreatedKeyView))
)]
async fn create_key(
    auth: Auth<scopes::KeysWrite>,
    State(access): State<Arc<AccessService>>,
    Json(request): Json<CreateKeyRequest>,
) -> Result<
    (
        StatusCode,
        Extension<AuditEvent>,
        axum::Json<CreatedKeyView>,
    ),
    ApiError,
> {
    let new = NewApiKey {
        name: request.name,
        scopes: ScopeSet::new(request.scopes),
        expires_at: request.expires_at,
    };
    let (key, plain) = access.create_key(&auth.principal, new).await?;
    let audit = AuditEvent::created(format!("/keys/{}", key.id), None);
    let view = CreatedKeyView {
        info: KeyView::from(key),
        key: plain.reveal().to_owned(),
    };
    Ok((StatusCode::CREATED, Extension(audit), axum::Json(view)))
}

/// One key of the tenant.
#[utoipa::path(
    get,
    path = "/keys/{key_id}",
    tag = "keys",
    params(KeyPath),
    security(("bearer" = ["keys:read"])),
    responses((status = 200, body = KeyView))
)]
async fn get_key(
    auth: Auth<scopes::KeysRead>,
    State(access): State<Arc<AccessService>>,
    Path(path): Path<KeyPath>,
) -> Result<axum::Json<KeyView>, ApiError> {
    let key = access
        .get_key(auth.principal.tenant_id, path.key_id)
        .await?;
    Ok(axum::Json(KeyView::from(key)))
}

/// Deletes a key; requests made with it fail from then on.
#[utoipa::path(
    delete,
    path = "/keys/{key_id}",
    tag = "keys",
    params(KeyPath),
    security(("bearer" = ["keys:delete"])),
    responses((status = 204, description = "Deleted"))
)]
async fn delete_key(
    auth: Auth<scopes::KeysDelete>,
    State(access): State<Arc<AccessService>>,
    Path(path): Path<KeyPath>,
) -> Result<StatusCode, ApiError> {
    access
        .delete_key(auth.principal.tenant_id, path.key_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
