//! `/api/v1/apps`: list, create, delete, and the app's image (PNG).

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminApi;
use super::reply::{ApiError, Handled, json, no_content, with_type};
use super::ui::Scope;
use crate::ids::AppId;
use crate::model::{App, AppAsset};

/// The body of `POST /api/v1/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// The title (1 to 255 characters, not blank, unique).
    pub title: String,
    /// The Moonlight id; default: one more than the largest.
    #[serde(default)]
    pub id: Option<u32>,
    /// Whether clients may offer HDR.
    #[serde(default)]
    pub hdr_supported: bool,
}

/// An app as the API shows it.
#[derive(Debug, Serialize)]
pub struct AppView {
    /// The Moonlight id.
    pub id: AppId,
    /// The title.
    pub title: String,
    /// Whether clients may offer HDR.
    pub hdr_supported: bool,
    /// Whether the app has an image.
    pub has_image: bool,
}

fn app_in_path(text: &str) -> Result<AppId, ApiError> {
    text.parse::<u32>()
        .ok()
        .and_then(|id| AppId::new(id).ok())
        .ok_or_else(|| ApiError::not_found(format!("no app {text:?}")))
}

impl AdminApi {
    async fn view(&self, app: App) -> Result<AppView, ApiError> {
        let has_image = self.apps.asset(app.id).await?.is_some();
        Ok(AppView {
            id: app.id,
            title: app.title,
            hdr_supported: app.hdr_supported,
            has_image,
        })
    }

    /// Every app, or for a person only the apps allowed to them.
    pub(super) async fn list_apps(&self, scope: &Scope) -> Handled {
        let allowed = match scope {
            Scope::All => None,
            Scope::Own(name) => self.users.get(name).await?.and_then(|u| u.apps),
        };
        let mut views = Vec::new();
        for app in self.apps.list().await? {
            if allowed.as_ref().is_some_and(|ids| !ids.contains(&app.id)) {
                continue;
            }
            views.push(self.view(app).await?);
        }
        Ok(json(StatusCode::OK, &views))
    }

    pub(super) async fn create_app(&self, new: NewApp) -> Handled {
        let _change = self.change().await;
        let existing = self.apps.list().await?;
        let id = match new.id {
            Some(id) => AppId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => {
                let next = existing.iter().map(|a| a.id.get()).max().unwrap_or(0) + 1;
                AppId::new(next).map_err(|_| ApiError::conflict("no app id is left"))?
            }
        };
        let app = App::new(id, new.title)
            .map_err(|e| ApiError::bad_request(e.to_string()))?
            .with_hdr(new.hdr_supported);
        if existing.iter().any(|a| a.id == id) {
            return Err(ApiError::conflict(format!("app id {id} is taken")));
        }
        if existing.iter().any(|a| a.title == app.title) {
            return Err(ApiError::conflict(format!(
                "an app is already titled {:?}",
                app.title
            )));
        }
        self.apps.put(app.clone(), None).await?;
        Ok(json(StatusCode::CREATED, &self.view(app).await?))
    }

    pub(super) async fn delete_app(&self, id: &str) -> Handled {
        let _change = self.change().await;
        let id = app_in_path(id)?;
        if !self.apps.delete(id).await? {
            return Err(ApiError::not_found(format!("no app {id}")));
        }
        Ok(no_content())
    }

    pub(super) async fn get_image(&self, id: &str) -> Handled {
        let id = app_in_path(id)?;
        match self.apps.asset(id).await? {
            Some(asset) => Ok(with_type(StatusCode::OK, asset.bytes, "image/png")),
            None => Err(ApiError::not_found(format!(
                "app {id} has no image (or does not exist)"
            ))),
        }
    }

    /// Replaces the app's image with `bytes`, already checked to be a PNG within the limit.
    pub(super) async fn put_image(&self, id: &str, bytes: Vec<u8>) -> Handled {
        let _change = self.change().await;
        let id = app_in_path(id)?;
        let Some(app) = self.apps.get(id).await? else {
            return Err(ApiError::not_found(format!("no app {id}")));
        };
        let asset = AppAsset::png(bytes)
            .map_err(|e| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()))?;
        self.apps.put(app, Some(asset)).await?;
        Ok(no_content())
    }

    /// Checks the app exists before its image is read, so a missing app is a 404 whatever the
    /// body.
    pub(super) async fn require_app(&self, id: &str) -> Result<(), ApiError> {
        let id = app_in_path(id)?;
        match self.apps.get(id).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!("no app {id}"))),
        }
    }
}
