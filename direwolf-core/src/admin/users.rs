//! `/api/v1/users`: list, create, delete (refused while the user streams, unless forced), set a
//! password (local accounts), issue one-time pairing links.

use std::time::Duration;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminApi;
use super::reply::{ApiError, Handled, json, no_content};
use crate::accounts::{DEFAULT_LINK_TTL, MAX_LINK_TTL, PasswordHash};
use crate::ids::{AppId, UserName};
use crate::model::{SessionPhase, User};
use crate::store::SessionStoreExt;

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The name (a DNS-1123 label).
    pub name: String,
    /// A name to show people.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The apps the user may see and launch; absent or null: every app.
    #[serde(default)]
    pub apps: Option<Vec<AppId>>,
    /// Whether the user administers this direwolf (default false): how a user who logs in only
    /// through single sign-on becomes an administrator.
    #[serde(default)]
    pub admin: bool,
}

/// The most app ids a user's `apps` may list (as the Kubernetes User's `spec.apps`).
const MAX_APPS: usize = 1024;

/// The host part of a `Host` header (`[::1]:47990` → `[::1]`), if it is a plain name or address.
fn host_of(header: &str) -> Option<&str> {
    let host = if header.starts_with('[') {
        &header[..=header.find(']')?]
    } else {
        header.split(':').next()?
    };
    let plain = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    (!host.is_empty() && plain).then_some(host)
}

fn no_local_accounts() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "local accounts (passwords, pairing links) exist only in single-machine mode (direwolf serve)",
    )
}

/// Parses a user name from a path or a body: 404 from a path (no such user can exist), 400
/// from a body.
pub(super) fn user_in_path(text: &str) -> Result<UserName, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no user {text:?}")))
}

impl AdminApi {
    pub(super) async fn list_users(&self) -> Handled {
        let users: Vec<UserView> = self.users.list().await?.into_iter().map(UserView::from).collect();
        Ok(json(StatusCode::OK, &users))
    }

    pub(super) async fn create_user(&self, new: NewUser) -> Handled {
        let _change = self.change().await;
        let name: UserName = new
            .name
            .parse()
            .map_err(|e: crate::Error| ApiError::bad_request(e.to_string()))?;
        let display_name = match new.display_name.map(|d| d.trim().to_owned()) {
            Some(d) if d.chars().count() > 255 || d.chars().any(char::is_control) => {
                return Err(ApiError::bad_request(
                    "display_name is at most 255 characters, without control characters",
                ));
            }
            Some(d) if d.is_empty() => None,
            other => other,
        };
        if new.apps.as_ref().is_some_and(|apps| apps.len() > MAX_APPS) {
            return Err(ApiError::bad_request(format!(
                "apps lists at most {MAX_APPS} app ids"
            )));
        }
        if self.users.get(&name).await?.is_some() {
            return Err(ApiError::conflict(format!("user {name} already exists")));
        }
        let user = User {
            display_name,
            apps: new.apps,
            admin: new.admin,
            ..User::new(name)
        };
        self.users.put(user.clone()).await?;
        // As stored: a backend without the admin flag (Kubernetes) shows it was not kept.
        let stored = self.users.get(&user.name).await?.unwrap_or(user);
        Ok(json(StatusCode::CREATED, &UserView::from(stored)))
    }

    /// Deletes a user and the user's pairings (their clients are refused from the next
    /// request). With live sessions: 409, unless `force`, which ends them first.
    pub(super) async fn delete_user(&self, name: &str, force: bool) -> Handled {
        let _change = self.change().await;
        let name = user_in_path(name)?;
        if self.users.get(&name).await?.is_none() {
            return Err(ApiError::not_found(format!("no user {name}")));
        }
        let live = self
            .sessions
            .for_user(&name)
            .await?
            .into_iter()
            .filter(|s| s.phase != SessionPhase::Ended)
            .count();
        if live > 0 {
            if !force {
                return Err(ApiError::conflict(format!(
                    "user {name} has {live} live session(s): stop them first, or delete with \
                     force=true to end them"
                )));
            }
            self.launcher.cancel(&name).await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot end the sessions of {name}: {e}"),
                )
            })?;
        }
        self.users.delete(&name).await?;
        for pairing in self.pairings.list().await? {
            if pairing.user == name {
                self.pairings.delete(&pairing.fingerprint).await?;
            }
        }
        Ok(no_content())
    }
}

/// A user as the API shows it: never the password hash, only whether there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    /// The name.
    pub name: UserName,
    /// A name to show people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The apps the user may use (absent: every app).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<AppId>>,
    /// Whether the user administers this direwolf.
    pub admin: bool,
    /// Whether the user has a password (a local account).
    pub has_password: bool,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView {
            has_password: user.password.is_some(),
            name: user.name,
            display_name: user.display_name,
            apps: user.apps,
            admin: user.admin,
        }
    }
}

/// The body of `PUT /api/v1/users/{name}/password`. Its `Debug` hides the password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The password (8 to 1024 characters, no control characters).
    pub password: String,
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPassword").finish_non_exhaustive()
    }
}

/// The body of `POST /api/v1/users/{name}/pairing-links`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    /// How long the link lasts, in seconds (default 900, at most 86400).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A pairing link just issued.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    /// The PIN page address carrying the link's token.
    pub url: String,
    /// The user the link pairs for.
    pub user: UserName,
    /// When it expires (Unix seconds).
    pub expires_at: u64,
}

impl AdminApi {
    /// Sets (or replaces) a user's password. The first user given a password while nobody has
    /// one becomes an administrator.
    pub(super) async fn set_password(&self, name: &str, new: NewPassword) -> Handled {
        let name = user_in_path(name)?;
        if self.links.is_none() {
            return Err(no_local_accounts());
        }
        // Hash before taking the change lock: hashing is slow on purpose.
        let hash = PasswordHash::new_blocking(new.password)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let _change = self.change().await;
        let Some(mut user) = self.users.get(&name).await? else {
            return Err(ApiError::not_found(format!("no user {name}")));
        };
        let first = !self.users.list().await?.iter().any(|u| u.password.is_some());
        user.password = Some(hash);
        if first && !user.admin {
            user.admin = true;
            tracing::info!(target: super::audit::TARGET, user = %name, "first local account: made administrator");
        }
        self.users.put(user.clone()).await?;
        Ok(json(StatusCode::OK, &UserView::from(user)))
    }

    /// Issues a one-time pairing link for a user.
    pub(super) async fn issue_link(&self, name: &str, host: Option<&str>, new: NewLink) -> Handled {
        let name = user_in_path(name)?;
        let Some(links) = &self.links else {
            return Err(no_local_accounts());
        };
        let ttl = match new.ttl_seconds {
            None => DEFAULT_LINK_TTL,
            Some(s) if s == 0 || s > MAX_LINK_TTL.as_secs() => {
                return Err(ApiError::bad_request(format!(
                    "ttl_seconds must be between 1 and {}",
                    MAX_LINK_TTL.as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        if self.users.get(&name).await?.is_none() {
            return Err(ApiError::not_found(format!("no user {name}")));
        }
        let Some(host) = host.and_then(host_of) else {
            return Err(ApiError::bad_request(
                "the request has no usable Host header to build the link's address from",
            ));
        };
        let issued = links.links.issue(name.clone(), ttl);
        let url = format!("http://{host}:{}/pin/?link={}", links.http_port, issued.token);
        Ok(json(
            StatusCode::CREATED,
            &LinkView {
                url,
                user: name,
                expires_at: issued.expires_at,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn link_hosts_come_from_the_host_header() {
        assert_eq!(host_of("192.0.2.10:47990"), Some("192.0.2.10"));
        assert_eq!(host_of("gamebox.lan"), Some("gamebox.lan"));
        assert_eq!(host_of("[2001:db8::1]:47990"), Some("[2001:db8::1]"));
        for bad in ["", ":47990", "evil/path:1", "a b", "[::1"] {
            assert_eq!(host_of(bad), None, "{bad}");
        }
    }
}
