// Included by `sqlite.rs` and `postgres.rs` inside a module of their own, with `Db`, `DbRow` and
// `SqlStore` in scope (see `sql/mod.rs`): the same statements compile against each driver.
// Users, one-time login tokens, OAuth logins in flight and the server's signing keys.

use agentd_core::user::{Email, Role, StoredToken, TokenKind, User};
use agentd_core::UserId;

use crate::{OAuthState, SigningKeyRecord, TokenUse, UserStore};

const USER_COLUMNS: &str =
    "id, tenant_id, email, name, role, created_at, updated_at, last_login_at";
const TOKEN_COLUMNS: &str = "hash, kind, tenant_id, user_id, created_at, expires_at, used_at";

fn user_from_row(row: &DbRow) -> Result<User, StoreError> {
    const TABLE: &str = "users";
    let corrupt = |reason: String| StoreError::Corrupt {
        table: TABLE,
        reason,
    };
    let email: String = row.try_get("email")?;
    let role: String = row.try_get("role")?;
    Ok(User {
        id: parse_column(TABLE, "id", &row.try_get::<String, _>("id")?)?,
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        email: Email::parse(&email).map_err(|e| corrupt(format!("email: {e}")))?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("role `{role}`")))?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        updated_at: time_from_millis(TABLE, row.try_get("updated_at")?)?,
        last_login_at: row
            .try_get::<Option<i64>, _>("last_login_at")?
            .map(|millis| time_from_millis(TABLE, millis))
            .transpose()?,
    })
}

fn token_from_row(row: &DbRow) -> Result<StoredToken, StoreError> {
    const TABLE: &str = "auth_tokens";
    let kind: String = row.try_get("kind")?;
    Ok(StoredToken {
        hash: row.try_get("hash")?,
        kind: match kind.as_str() {
            "magic_link" => TokenKind::MagicLink,
            "refresh" => TokenKind::Refresh,
            other => {
                return Err(StoreError::Corrupt {
                    table: TABLE,
                    reason: format!("kind `{other}`"),
                })
            }
        },
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        user_id: parse_column(TABLE, "user_id", &row.try_get::<String, _>("user_id")?)?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        expires_at: time_from_millis(TABLE, row.try_get("expires_at")?)?,
        used_at: row
            .try_get::<Option<i64>, _>("used_at")?
            .map(|millis| time_from_millis(TABLE, millis))
            .transpose()?,
    })
}

fn oauth_state_from_row(row: &DbRow) -> Result<OAuthState, StoreError> {
    const TABLE: &str = "oauth_states";
    Ok(OAuthState {
        hash: row.try_get("hash")?,
        provider: row.try_get("provider")?,
        tenant_id: parse_column(TABLE, "tenant_id", &row.try_get::<String, _>("tenant_id")?)?,
        code_verifier: row.try_get("code_verifier")?,
        redirect_to: row.try_get("redirect_to")?,
        created_at: time_from_millis(TABLE, row.try_get("created_at")?)?,
        expires_at: time_from_millis(TABLE, row.try_get("expires_at")?)?,
    })
}

/// Inserts a user, on the pool or in a transaction (a new tenant's owner).
pub(super) async fn insert_user_with<'e, E>(executor: E, user: &User) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, name, role, created_at, updated_at, \
         last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(user.id.to_string())
    .bind(user.tenant_id.to_string())
    .bind(user.email.as_str())
    .bind(user.name.as_deref())
    .bind(user.role.as_str())
    .bind(user.created_at.timestamp_millis())
    .bind(user.updated_at.timestamp_millis())
    .bind(user.last_login_at.map(|t| t.timestamp_millis()))
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl UserStore for SqlStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let _lane = write_lane(self).await;
        insert_user_with(&self.pool, user).await
    }

    async fn get_user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_email(
        &self,
        tenant: TenantId,
        email: &Email,
    ) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND email = $2");
        let row = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(
        &self,
        tenant: TenantId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after.map(|id| id.to_string()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let updated = sqlx::query(
            "UPDATE users SET name = $3, role = $4, updated_at = $5, last_login_at = $6 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(user.tenant_id.to_string())
        .bind(user.id.to_string())
        .bind(user.name.as_deref())
        .bind(user.role.as_str())
        .bind(user.updated_at.timestamp_millis())
        .bind(user.last_login_at.map(|t| t.timestamp_millis()))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn delete_user(&self, tenant: TenantId, id: UserId) -> Result<bool, StoreError> {
        let _lane = write_lane(self).await;
        let deleted = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }

    async fn count_users_with_role(&self, tenant: TenantId, role: Role) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND role = $2")
                .bind(tenant.to_string())
                .bind(role.as_str())
                .fetch_one(&self.pool)
                .await?;
        integer_column("users", "count", count)
    }

    async fn insert_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        let _lane = write_lane(self).await;
        sqlx::query(
            "INSERT INTO auth_tokens (hash, kind, tenant_id, user_id, created_at, expires_at, \
             used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.hash)
        .bind(token.kind.as_str())
        .bind(token.tenant_id.to_string())
        .bind(token.user_id.to_string())
        .bind(token.created_at.timestamp_millis())
        .bind(token.expires_at.timestamp_millis())
        .bind(token.used_at.map(|t| t.timestamp_millis()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_token(
        &self,
        kind: TokenKind,
        hash: &str,
        now: Timestamp,
    ) -> Result<TokenUse, StoreError> {
        // One statement both checks and spends the token, so two racing requests cannot both win.
        let sql = format!(
            "UPDATE auth_tokens SET used_at = $3 \
             WHERE hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3 \
             RETURNING {TOKEN_COLUMNS}"
        );
        let row = {
            let _lane = write_lane(self).await;
            sqlx::query(&sql)
                .bind(hash)
                .bind(kind.as_str())
                .bind(now.timestamp_millis())
                .fetch_optional(&self.pool)
                .await?
        };
        if let Some(row) = row {
            return Ok(TokenUse::Used(token_from_row(&row)?));
        }
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM auth_tokens WHERE hash = $1 AND kind = $2");
        let row = sqlx::query(&sql)
            .bind(hash)
            .bind(kind.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(TokenUse::Unknown);
        };
        let stored = token_from_row(&row)?;
        Ok(if stored.used_at.is_some() {
            TokenUse::AlreadyUsed
        } else {
            TokenUse::Expired
        })
    }

    async fn revoke_user_tokens(
        &self,
        tenant: TenantId,
        user: UserId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _lane = write_lane(self).await;
        sqlx::query(
            "UPDATE auth_tokens SET used_at = $3 \
             WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL",
        )
        .bind(tenant.to_string())
        .bind(user.to_string())
        .bind(now.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_oauth_state(&self, state: &OAuthState) -> Result<(), StoreError> {
        let _lane = write_lane(self).await;
        sqlx::query(
            "INSERT INTO oauth_states (hash, provider, tenant_id, code_verifier, redirect_to, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&state.hash)
        .bind(&state.provider)
        .bind(state.tenant_id.to_string())
        .bind(&state.code_verifier)
        .bind(state.redirect_to.as_deref())
        .bind(state.created_at.timestamp_millis())
        .bind(state.expires_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_oauth_state(&self, hash: &str) -> Result<Option<OAuthState>, StoreError> {
        let _lane = write_lane(self).await;
        let row = sqlx::query(
            "DELETE FROM oauth_states WHERE hash = $1 RETURNING hash, provider, tenant_id, \
             code_verifier, redirect_to, created_at, expires_at",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(oauth_state_from_row).transpose()
    }

    async fn signing_key(
        &self,
        candidate: &SigningKeyRecord,
    ) -> Result<SigningKeyRecord, StoreError> {
        let _lane = write_lane(self).await;
        sqlx::query(
            "INSERT INTO signing_keys (purpose, kid, public_key, private_sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (purpose) DO NOTHING",
        )
        .bind(&candidate.purpose)
        .bind(&candidate.kid)
        .bind(&candidate.public_key)
        .bind(&candidate.private_sealed)
        .bind(candidate.created_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT purpose, kid, public_key, private_sealed, created_at FROM signing_keys \
             WHERE purpose = $1",
        )
        .bind(&candidate.purpose)
        .fetch_one(&self.pool)
        .await?;
        Ok(SigningKeyRecord {
            purpose: row.try_get("purpose")?,
            kid: row.try_get("kid")?,
            public_key: row.try_get("public_key")?,
            private_sealed: row.try_get("private_sealed")?,
            created_at: time_from_millis("signing_keys", row.try_get("created_at")?)?,
        })
    }
}
