//! `/users`, `/tenant` and `/tenants`: the people of the caller's tenant with their roles, the
//! tenant itself, and (for the platform admin) the making of tenants.

use std::sync::Arc;

use agentd_core::{Email, Role, Tenant, TenantSlug, User, UserId};
use agentd_runtime::users::{NewUser, UserPatch, UserService};
use agentd_runtime::PageRequest;
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
use crate::routes::agent_history::PageQuery;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(get_tenant))
        .routes(routes!(create_tenant))
}

/// A user of the tenant.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: uuid::Uuid,
    pub email: String,
    pub name: Option<String>,
    /// `owner`, `admin`, `member` or `viewer`.
    pub role: String,
    /// The scopes the role grants.
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            name: user.name,
            role: user.role.as_str().to_owned(),
            scopes: user
                .role
                .scopes()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_login_at: user.last_login_at,
        }
    }
}

/// A page of users.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub data: Vec<UserView>,
    pub next_cursor: Option<String>,
}

/// A user to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(value_type = String, example = "ann@example.com")]
    pub email: EmailField,
    pub name: Option<String>,
    /// `owner`, `admin`, `member` (default) or `viewer`.
    #[schema(value_type = Option<String>, example = "member")]
    pub role: Option<Role>,
}

/// A change to a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// A new name; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[schema(value_type = Option<String>, example = "admin")]
    pub role: Option<Role>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An email address, parsed.
pub struct EmailField(pub Email);

impl<'de> Deserialize<'de> for EmailField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Email::parse(&raw)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// Path of one user.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The user's id.
    #[param(value_type = uuid::Uuid)]
    pub user_id: UserId,
}

/// Lists the tenant's users, oldest first.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(PageQuery),
    security(("bearer" = ["users:read"])),
    responses((status = 200, body = UserList))
)]
async fn list_users(
    auth: Auth<scopes::UsersRead>,
    State(users): State<Arc<UserService>>,
    Query(query): Query<PageQuery>,
) -> Result<axum::Json<UserList>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let page = users.list(auth.principal.tenant_id, page).await?;
    Ok(axum::Json(UserList {
        data: page.items.into_iter().map(UserView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Adds a user to the tenant. They log in by magic link or OAuth with this email.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = CreateUserRequest,
    security(("bearer" = ["users:write"])),
    responses((status = 201, body = UserView))
)]
async fn create_user(
    auth: Auth<scopes::UsersWrite>,
    State(users): State<Arc<UserService>>,
    Json(request): Json<CreateUserRequest>,
) -> Result<(StatusCode, Extension<AuditEvent>, axum::Json<UserView>), ApiError> {
    let new = NewUser {
        email: request.email.0,
        name: request.name,
        role: request.role.unwrap_or(Role::Member),
    };
    let user = users.create(&auth.principal, new).await?;
    let audit = AuditEvent::created(format!("/users/{}", user.id), None);
    Ok((
        StatusCode::CREATED,
        Extension(audit),
        axum::Json(user.into()),
    ))
}

/// One user of the tenant.
#[utoipa::path(
    get,
    path = "/users/{user_id}",
    tag = "users",
    params(UserPath),
    security(("bearer" = ["users:read"])),
    responses((status = 200, body = UserView))
)]
async fn get_user(
    auth: Auth<scopes::UsersRead>,
    State(users): State<Arc<UserService>>,
    Path(path): Path<UserPath>,
) -> Result<axum::Json<UserView>, ApiError> {
    let user = users.get(auth.principal.tenant_id, path.user_id).await?;
    Ok(axum::Json(user.into()))
}

/// Changes a user's name or role. Only owners make or change owners; a tenant keeps one owner.
#[utoipa::path(
    patch,
    path = "/users/{user_id}",
    tag = "users",
    params(UserPath),
    request_body = UpdateUserRequest,
    security(("bearer" = ["users:write"])),
    responses((status = 200, body = UserView))
)]
async fn update_user(
    auth: Auth<scopes::UsersWrite>,
    State(users): State<Arc<UserService>>,
    Path(path): Path<UserPath>,
    Json(request): Json<UpdateUserRequest>,
) -> Result<axum::Json<UserView>, ApiError> {
    let patch = UserPatch {
        name: request.name,
        role: request.role,
    };
    let user = users.update(&auth.principal, path.user_id, patch).await?;
    Ok(axum::Json(user.into()))
}

/// Removes a user; their tokens stop working at once.
#[utoipa::path(
    delete,
    path = "/users/{user_id}",
    tag = "users",
    params(UserPath),
    security(("bearer" = ["users:delete"])),
    responses((status = 204, description = "Removed"))
)]
async fn delete_user(
    auth: Auth<scopes::UsersDelete>,
    State(users): State<Arc<UserService>>,
    Path(path): Path<UserPath>,
) -> Result<StatusCode, ApiError> {
    users.delete(&auth.principal, path.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A tenant.
#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: uuid::Uuid,
    pub slug: String,
    pub name: String,
    /// The plan whose limits apply; `null` is the server's default plan.
    pub plan: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        Self {
            id: tenant.id.as_uuid(),
            slug: tenant.slug.as_str().to_owned(),
            name: tenant.name,
            plan: tenant.plan,
            created_at: tenant.created_at,
        }
    }
}

/// The caller's tenant.
#[utoipa::path(
    get,
    path = "/tenant",
    tag = "users",
    security(("bearer" = ["tenant:read"])),
    responses((status = 200, body = TenantView))
)]
async fn get_tenant(
    auth: Auth<scopes::TenantRead>,
    State(users): State<Arc<UserService>>,
) -> Result<axum::Json<TenantView>, ApiError> {
    Ok(axum::Json(
        users.tenant(auth.principal.tenant_id).await?.into(),
    ))
}

/// A tenant to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// 1 to 63 lowercase letters, digits or `-`.
    #[schema(value_type = String, example = "acme")]
    pub slug: SlugField,
    pub name: Option<String>,
    /// The email of the tenant's first owner, who can then log in by magic link or OAuth.
    #[schema(value_type = Option<String>, example = "owner@acme.example")]
    pub owner_email: Option<EmailField>,
}

/// A tenant slug, parsed.
pub struct SlugField(pub TenantSlug);

impl<'de> Deserialize<'de> for SlugField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        TenantSlug::parse(&raw)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// A new tenant, with its admin key (shown once) and first owner.
#[derive(Serialize, ToSchema)]
pub struct CreatedTenantView {
    #[serde(flatten)]
    pub tenant: TenantView,
    /// An API key holding `*` in the new tenant: shown here once.
    pub admin_key: String,
    pub owner: Option<UserView>,
}

/// Makes a tenant (platform admin only: the admin scope in the tenant made on first start).
#[utoipa::path(
    post,
    path = "/tenants",
    tag = "users",
    request_body = CreateTenantRequest,
    security(("bearer" = ["agent_os:admin"])),
    responses((status = 201, body = CreatedTenantView))
)]
async fn create_tenant(
    auth: Auth<scopes::PlatformAdmin>,
    State(users): State<Arc<UserService>>,
    Json(request): Json<CreateTenantRequest>,
) -> Result<
    (
        StatusCode,
        Extension<AuditEvent>,
        axum::Json<CreatedTenantView>,
    ),
    ApiError,
> {
    let (tenant, key, owner) = users
        .create_tenant(
            &auth.principal,
            request.slug.0,
            request.name,
            request.owner_email.map(|e| e.0),
        )
        .await?;
    let audit = AuditEvent::created(format!("/tenants/{}", tenant.id), None);
    let view = CreatedTenantView {
        tenant: tenant.into(),
        admin_key: key.reveal().to_owned(),
        owner: owner.map(UserView::from),
    };
    Ok((StatusCode::CREATED, Extension(audit), axum::Json(view)))
}
