//! User accounts and login sessions. Password hashing happens in the caller
//! (signaling); this module stores the hash and never sees a password.

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::{map_unique, Result, Unique};
use crate::types::{AuthSessionId, FacilityId, FacilityKind, Role, Timestamp, UserId};
use crate::validate::{self, Errors, FieldError};
use crate::{RecordsError, Store};

#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub facility_id: Option<FacilityId>,
    pub active: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.active != 0
    }
}

/// A user together with the stored password hash (login only).
#[derive(Clone, FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: User,
    pub password_hash: String,
}

/// A new account.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: Role,
    pub facility_id: Option<FacilityId>,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub facility_id: Option<Option<FacilityId>>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
}

/// A login session, identified by the hash of its refresh token.
#[derive(Clone, Debug, FromRow)]
pub struct AuthSession {
    pub id: AuthSessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// How far ahead of the clock a login session's last refresh may be (two
/// nodes' clocks differ a little) before it counts as made before the clock
/// went back.
const CLOCK_SLACK_SECS: i64 = 60;

/// Audits a refresh refused for the session of `user`. Who presented the
/// token is not known (it may be a thief): the account is the target.
async fn refused_refresh(w: &mut crate::store::WriteTx, action: &str, user: UserId) -> Result<()> {
    let nobody = Actor {
        user_id: None,
        role: None,
        client_addr: None,
    };
    record(
        w,
        &nobody,
        action,
        "user",
        Some(user.to_string()),
        None,
        Outcome::Denied,
    )
    .await
}

const COLUMNS: &str = "id, username, display_name, role, facility_id, active, created_at, updated_at";

impl Store {
    /// Checks that a role fits its facility: health workers belong to a
    /// commune station, doctors to a hospital, admins anywhere or nowhere.
    async fn check_role_facility(&self, role: Role, facility: Option<FacilityId>) -> Result<(), FieldError> {
        let kind = match facility {
            None => None,
            Some(f) => match self.facility(f).await {
                Ok(f) => Some(f.kind),
                Err(_) => {
                    return Err(FieldError::new(
                        "facility_id",
                        "unknown_facility",
                        "Không tìm thấy cơ sở y tế này.",
                        "No such facility.",
                    ))
                }
            },
        };
        match (role, kind) {
            (Role::Admin, None) => Ok(()),
            (Role::Admin, Some(_)) => Err(FieldError::new(
                "facility_id",
                "admin_has_no_facility",
                "Quản trị viên làm việc cho cả tỉnh, không thuộc cơ sở nào: để trống mục cơ sở.",
                "An admin works for the whole province and belongs to no facility: leave the facility empty.",
            )),
            (Role::HealthWorker, Some(FacilityKind::CommuneStation)) => Ok(()),
            (Role::Doctor, Some(k)) if k.is_hospital() => Ok(()),
            (Role::HealthWorker, _) => Err(FieldError::new(
                "facility_id",
                "wrong_facility_kind",
                "Nhân viên y tế phải thuộc một trạm y tế xã.",
                "A health worker must belong to a commune station.",
            )),
            (Role::Doctor, _) => Err(FieldError::new(
                "facility_id",
                "wrong_facility_kind",
                "Bác sĩ phải thuộc một bệnh viện.",
                "A doctor must belong to a hospital.",
            )),
        }
    }

    pub async fn create_user(&self, actor: &Actor, u: &NewUser) -> Result<User> {
        let mut errs = Errors::default();
        let username = u.username.trim().to_lowercase();
        if username.len() < 3
            || username.len() > 64
            || !username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            errs.push(FieldError::new(
                "username",
                "invalid_username",
                "Tên đăng nhập dài 3–64 ký tự, chỉ gồm chữ không dấu, số và . _ -",
                "A username has 3-64 characters: unaccented letters, digits, . _ -",
            ));
        }
        let display = validate::text("display_name", &u.display_name, 200);
        errs.check(display.as_ref().map(|_| ()).map_err(Clone::clone));
        errs.check(self.check_role_facility(u.role, u.facility_id).await);
        errs.finish()?;
        let now = Timestamp::now();
        let id = UserId::new();
        let mut w = self.begin_write().await?;
        let user = sqlx::query_as::<_, User>(&format!(
            "INSERT INTO users (id, username, display_name, password_hash, role, facility_id, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(&username)
        .bind(display.unwrap_or_default())
        .bind(&u.password_hash)
        .bind(u.role)
        .bind(u.facility_id)
        .bind(now)
        .fetch_one(&mut **w)
        .await
        .map_err(|e| map_unique(e, &[("username", Unique::Username)]))?;
        record(
            &mut w,
            actor,
            "user.create",
            "user",
            Some(id.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(user)
    }

    pub async fn update_user(&self, actor: &Actor, id: UserId, c: &UserChanges) -> Result<User> {
        let current = self.user(id).await?;
        let role = c.role.unwrap_or(current.role);
        let facility = match (role, c.facility_id) {
            (_, Some(f)) => f,
            // An admin works for the province, not a facility: an account
            // made admin leaves its facility (and one given a facility by
            // an older version loses it at its next change).
            (Role::Admin, None) => None,
            (_, None) => current.facility_id,
        };
        let mut errs = Errors::default();
        let display = match &c.display_name {
            Some(d) => validate::text("display_name", d, 200),
            None => Ok(current.display_name.clone()),
        };
        errs.check(display.as_ref().map(|_| ()).map_err(Clone::clone));
        errs.check(self.check_role_facility(role, facility).await);
        errs.finish()?;
        let active = c.active.map(i64::from).unwrap_or(current.active);
        let mut w = self.begin_write().await?;
        let user = sqlx::query_as::<_, User>(&format!(
            "UPDATE users SET display_name = $2, role = $3, facility_id = $4, active = $5,
                 password_hash = COALESCE($6, password_hash), updated_at = $7
             WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(display.unwrap_or_default())
        .bind(role)
        .bind(facility)
        .bind(active)
        .bind(c.password_hash.clone())
        .bind(Timestamp::now())
        .fetch_optional(&mut **w)
        .await?
        .ok_or(RecordsError::NotFound("user"))?;
        if active == 0 || c.password_hash.is_some() {
            // A deactivated account or a reset password ends every login.
            sqlx::query("UPDATE auth_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(Timestamp::now())
                .execute(&mut **w)
                .await?;
        }
        record(
            &mut w,
            actor,
            "user.update",
            "user",
            Some(id.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(user)
    }

    pub async fn user(&self, id: UserId) -> Result<User> {
        sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RecordsError::NotFound("user"))
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        Ok(
            sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn user_credentials(&self, username: &str) -> Result<Option<UserCredentials>> {
        Ok(sqlx::query_as::<_, UserCredentials>(&format!(
            "SELECT {COLUMNS}, password_hash FROM users WHERE username = $1"
        ))
        .bind(username.trim().to_lowercase())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn count_admins(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Starts a login session whose refresh token hashes to `token_hash`.
    pub async fn create_auth_session(
        &self,
        actor: &Actor,
        user_id: UserId,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<AuthSessionId> {
        let id = AuthSessionId::new();
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO auth_sessions (id, user_id, refresh_token_hash, created_at, expires_at, client_addr)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(user_id)
        .bind(token_hash)
        .bind(Timestamp::now())
        .bind(expires_at)
        .bind(actor.client_addr.clone())
        .execute(&mut **w)
        .await?;
        record(
            &mut w,
            actor,
            "auth.login",
            "user",
            Some(user_id.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(id)
    }

    /// Swaps a session's refresh token for a new one (refresh-token rotation),
    /// the session now to expire at `expires_at` (now + its lifetime).
    /// Returns the session if the old token was current, unexpired and not
    /// revoked; a reused old token revokes the whole session (it was stolen
    /// or replayed).
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: Timestamp,
    ) -> Result<Option<AuthSession>> {
        let mut w = self.begin_write().await?;
        let now = Timestamp::now();
        // A session refreshed "in the future" (its expiry is later than a
        // refresh now would set) was refreshed before the wall clock went
        // back: it would outlive its lifetime by the whole jump. It ends, as
        // an access token issued ahead of the clock is refused; its user
        // logs in again.
        let latest = Timestamp(expires_at.0 + chrono::Duration::seconds(CLOCK_SLACK_SECS));
        let ahead: Option<(UserId,)> = sqlx::query_as(
            "UPDATE auth_sessions SET revoked_at = $2
             WHERE refresh_token_hash = $1 AND revoked_at IS NULL AND expires_at > $3
             RETURNING user_id",
        )
        .bind(old_hash)
        .bind(now)
        .bind(latest)
        .fetch_optional(&mut **w)
        .await?;
        if let Some((user,)) = ahead {
            refused_refresh(&mut w, "auth.refresh_ahead_of_clock", user).await?;
            w.commit().await?;
            tracing::warn!(%user, "a login session refreshed ahead of the clock (the clock went back) was ended");
            return Ok(None);
        }
        // Tokens whose session is over by now can no longer be told apart from
        // unknown ones; they go.
        sqlx::query("DELETE FROM used_refresh_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut **w)
            .await?;
        let session = sqlx::query_as::<_, AuthSession>(
            "UPDATE auth_sessions SET refresh_token_hash = $2, expires_at = $3
             WHERE refresh_token_hash = $1 AND revoked_at IS NULL AND expires_at > $4
             RETURNING id, user_id, created_at, expires_at, revoked_at",
        )
        .bind(old_hash)
        .bind(new_hash)
        .bind(expires_at)
        .bind(now)
        .fetch_optional(&mut **w)
        .await?;
        match &session {
            Some(s) => {
                sqlx::query("INSERT INTO used_refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)")
                    .bind(old_hash)
                    .bind(s.id)
                    .bind(expires_at)
                    .execute(&mut **w)
                    .await?;
            }
            None => {
                // A token already rotated away, presented again: whoever holds
                // the newer one got it from the same session, so the session
                // ends for both (RFC 6819 5.2.2.3, OAuth 2.0 Security BCP 4.14).
                let reused: Option<(AuthSessionId, UserId)> = sqlx::query_as(
                    "SELECT s.id, s.user_id FROM used_refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
                     WHERE t.token_hash = $1 AND s.revoked_at IS NULL",
                )
                .bind(old_hash)
                .fetch_optional(&mut **w)
                .await?;
                if let Some((id, user)) = reused {
                    sqlx::query("UPDATE auth_sessions SET revoked_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(now)
                        .execute(&mut **w)
                        .await?;
                    refused_refresh(&mut w, "auth.refresh_reused", user).await?;
                }
            }
        }
        w.commit().await?;
        Ok(session)
    }

    pub async fn revoke_auth_session(&self, actor: &Actor, id: AuthSessionId) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("UPDATE auth_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(Timestamp::now())
            .execute(&mut **w)
            .await?;
        if let Some(u) = actor.user_id {
            record(
                &mut w,
                actor,
                "auth.logout",
                "user",
                Some(u.to_string()),
                None,
                Outcome::Ok,
            )
            .await?;
        }
        w.commit().await
    }

    /// The user behind a live (unrevoked, unexpired) session of an active
    /// account, or `None`. Checked on every request so that logout and
    /// deactivation take effect at once, not when the access token expires.
    pub async fn session_user(&self, session: AuthSessionId) -> Result<Option<User>> {
        Ok(sqlx::query_as::<_, User>(
            "SELECT u.id, u.username, u.display_name, u.role, u.facility_id, u.active, u.created_at, u.updated_at
             FROM auth_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND u.active = 1",
        )
        .bind(session)
        .bind(Timestamp::now())
        .fetch_optional(&self.pool)
        .await?)
    }
}
