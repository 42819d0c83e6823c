//! The admin API's bearer token in Kubernetes mode: one Secret that every `direwolf proxy`
//! replica reads (`direwolf proxy --admin-token-secret`), created with a fresh token by the
//! first replica that finds none. The cluster owner reads it with `kubectl get secret`; who may
//! read Secrets of the namespace may administer direwolf.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), direwolf_k8s::admin_token::AdminTokenError> {
//! let secrets = kube::Api::namespaced(client, "games");
//! let token = direwolf_k8s::admin_token::load_or_create(&secrets, "direwolf-admin-token", || {
//!     "a random token of at least 32 characters, 0123456789".to_owned()
//! })
//! .await?;
//! # let _ = token; Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tracing::info;

use crate::crd::labels;
use crate::retry::{RetryPolicy, has_status};

/// The Secret `direwolf install` names.
pub const DEFAULT_SECRET: &str = "direwolf-admin-token";
/// The Secret's key holding the token.
pub const TOKEN_KEY: &str = "token";

/// Why the token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The API server refused or did not answer.
    #[error("cannot {verb} the admin token Secret {name:?}: {source}")]
    Api {
        /// `get` or `create`.
        verb: &'static str,
        /// The Secret.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// The Secret exists without a usable token (edited by hand).
    #[error(
        "the admin token Secret {name:?} has no UTF-8 key {TOKEN_KEY:?}: set one, or delete the Secret to have a new token made"
    )]
    NoToken {
        /// The Secret.
        name: String,
    },
    /// The Secret was deleted each time after a concurrent create.
    #[error("the admin token Secret {0:?} keeps appearing and disappearing")]
    Unstable(String),
}

/// The token in Secret `name` of `secrets`' namespace; when there is none, a Secret holding
/// `generate()` is created. When another replica creates it first (409), its token is read, so
/// every replica ends with the same one.
///
/// # Errors
/// [`AdminTokenError`].
pub async fn load_or_create(
    secrets: &Api<Secret>,
    name: &str,
    generate: impl FnOnce() -> String,
) -> Result<String, AdminTokenError> {
    let retry = RetryPolicy::default();
    let api_error = |verb, source| AdminTokenError::Api {
        verb,
        name: name.to_owned(),
        source,
    };
    let post = PostParams::default();
    let mut fresh = Some(generate());
    // A few rounds: the Secret may be deleted between a 409 and the read after it.
    for _ in 0..3 {
        let found = retry
            .run("get admin token", || secrets.get_opt(name))
            .await
            .map_err(|e| api_error("get", e))?;
        if let Some(secret) = found {
            return token_of(&secret, name);
        }
        let token = fresh.take().unwrap_or_default();
        let secret = token_secret(name, &token);
        match retry
            .run("create admin token", || secrets.create(&post, &secret))
            .await
        {
            Ok(_) => {
                info!(secret = name, "admin token Secret created");
                return Ok(token);
            }
            Err(e) if has_status(&e, 409) => fresh = Some(token),
            Err(e) => return Err(api_error("create", e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(AdminTokenError::Unstable(name.to_owned()))
}

fn token_of(secret: &Secret, name: &str) -> Result<String, AdminTokenError> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AdminTokenError::NoToken {
            name: name.to_owned(),
        })
}

/// The Secret holding `token`.
fn token_secret(name: &str, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                labels::MANAGED_BY.to_owned(),
                labels::DIREWOLF.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}
