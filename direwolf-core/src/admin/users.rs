//! `/api/v1/users`: list, create, delete (refused while the user streams, unless forced).

use hyper::StatusCode;
use serde::Deserialize;

use super::AdminApi;
use super::reply::{ApiError, Handled, json, no_content};
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
}

/// The most app ids a user's `apps` may list (as the Kubernetes User's `spec.apps`).
const MAX_APPS: usize = 1024;

/// Parses a user name from a path or a body: 404 from a path (no such user can exist), 400
/// from a body.
pub(super) fn user_in_path(text: &str) -> Result<UserName, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no user {text:?}")))
}

impl AdminApi {
    pub(super) async fn list_users(&self) -> Handled {
        Ok(json(StatusCode::OK, &self.users.list().await?))
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
            name,
            display_name,
            apps: new.apps,
        };
        self.users.put(user.clone()).await?;
        Ok(json(StatusCode::CREATED, &user))
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
