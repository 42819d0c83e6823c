//! The subset of Wolf's HTTP API that Wolf's managers use for apps and clients, answered from
//! direwolf's own stores, with Wolf V6's paths and JSON shapes (`docs/protocol/wolf-api.md`).
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /api/v1/apps` | the [`AppCatalog`]'s apps in Wolf's `App` shape ([`apps`] says which fields direwolf keeps) |
//! | `POST /api/v1/apps/add` | adds an app; refuses what direwolf cannot honour, and an id that exists |
//! | `POST /api/v1/apps/delete` | removes an app; an unknown id is `404 Invalid app_id` (Wolf answers 200) |
//! | `GET /api/v1/clients` | the [`PairingStore`]'s pairings as Wolf's paired clients |
//! | `POST /api/v1/unpair/client` | removes the pairing whose Wolf `client_id` is given; unknown: `404 Client not found` |
//! | `GET /api/v1/pair/pending` | the [`PinBroker`]'s pairings waiting for a PIN |
//! | `POST /api/v1/pair/client` | delivers a PIN to a waiting pairing, as the PIN page does |
//! | `GET /api/v1/profiles` | `[]`: direwolf has no profile besides the Moonlight one, which Wolf leaves out of this list |
//! | `GET /api/v1/openapi-schema` | the routes above ([`openapi`]); clients detect Wolf V6 from it |
//!
//! Everything else is answered as Wolf answers an unknown route: `404` with an empty body. Errors
//! have Wolf's shape, `{"success":false,"error":"…"}`; a body that is not the expected JSON gets
//! `Invalid request format: …` (status 500 as in Wolf, 400 on `unpair/client` as in Wolf), and
//! nothing is written.
//!
//! A paired client's `client_id` is the one Wolf would give it: libstdc++'s string hash of the
//! certificate PEM exactly as received in pairing ([`client_id_for_cert`]). Its
//! `app_state_folder` is the name of the direwolf user the pairing belongs to (direwolf has no
//! per-client folder) and its `settings` are Wolf's defaults (direwolf keeps no per-client
//! settings).
//!
//! `pair/client` checks the PIN's form (four digits) and the secret, then delivers the PIN; the
//! pairing belongs to the Moonlight server's default user. Like Wolf, it cannot know whether a
//! well-formed PIN is the one the client shows: with a wrong one the client's pairing fails at
//! its last phase and no pairing is stored.
//!
//! There is no authentication: as with Wolf, whoever may open the Unix socket may use the API, so
//! access to the socket file *is* the authentication ([`WolfApiSocket`] creates it with mode
//! 0660). Every change is logged in one line, with app ids, fingerprints and users, never PINs,
//! pair secrets beyond their first characters, or certificates.
//!
//! ```no_run
//! use std::sync::Arc;
//! use direwolf_core::wolf_api::{WolfApi, WolfApiSocket};
//! use direwolf_core::{InMemoryPinBroker, Stores};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let stores = Stores::in_memory();
//! let api = WolfApi::new(stores.apps, stores.pairings, Arc::new(InMemoryPinBroker::default()));
//! let socket = WolfApiSocket::bind("/run/direwolf/wolf.sock".as_ref())?;
//! socket.serve(Arc::new(api), std::future::pending()).await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use direwolf_wolf_client::client_id_for_cert;
use direwolf_wolf_client::ids::parse_wolf_u64;
use direwolf_wolf_client::types::{
    App as WolfApp, ClientSettings, PairClientRequest, PairRequest, PairedClient,
};
use direwolf_wolf_client::version::paths;
use hyper::Method;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::error::Error;
use crate::ids::{AppId, PairSecret, Pin};
use crate::pin_broker::{PinBroker, PinError, PinSubmission};
use crate::store::{AppCatalog, PairingStore};

pub mod apps;
pub mod openapi;
mod socket;

pub use socket::WolfApiSocket;

/// The routes served, `(method, path)`; anything else is `404`.
pub const ROUTES: [(Method, &str); 9] = [
    (Method::GET, paths::APPS),
    (Method::POST, paths::APPS_ADD),
    (Method::POST, paths::APPS_DELETE),
    (Method::GET, paths::CLIENTS),
    (Method::POST, paths::UNPAIR_CLIENT),
    (Method::GET, paths::PAIR_PENDING),
    (Method::POST, paths::PAIR_CLIENT),
    (Method::GET, paths::PROFILES),
    (Method::GET, paths::OPENAPI_SCHEMA),
];

/// An answer: HTTP status and body (JSON, or empty for an unknown route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Reply { status, body },
            Err(e) => Reply::error(500, format!("cannot write the answer: {e}")),
        }
    }

    /// `{"success":true}`.
    fn ok() -> Self {
        Reply {
            status: 200,
            body: br#"{"success":true}"#.to_vec(),
        }
    }

    /// Wolf's error shape, `{"success":false,"error":"…"}`.
    fn error(status: u16, message: impl Into<String>) -> Self {
        #[derive(Serialize)]
        struct ErrorBody {
            success: bool,
            error: String,
        }
        let body = ErrorBody {
            success: false,
            error: message.into(),
        };
        Reply {
            status,
            body: serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"success":false,"error":""}"#.to_vec()),
        }
    }

    /// Wolf's answer to an unknown route: `404`, empty body.
    fn not_found() -> Self {
        Reply {
            status: 404,
            body: Vec::new(),
        }
    }

    /// A store failure.
    fn store(error: &Error) -> Self {
        Reply::error(500, error.to_string())
    }
}

#[derive(Serialize)]
struct Apps {
    success: bool,
    apps: Vec<WolfApp>,
}

#[derive(Serialize)]
struct Clients {
    success: bool,
    clients: Vec<PairedClient>,
}

#[derive(Serialize)]
struct Pending {
    success: bool,
    requests: Vec<PairRequest>,
}

#[derive(Serialize)]
struct Profiles {
    success: bool,
    profiles: [(); 0],
}

#[derive(Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Deserialize)]
struct ClientIdBody {
    client_id: String,
}

/// Wolf's API over direwolf's stores. Its changes (adds, deletes, unpairs, PINs) run one at a
/// time, so a check and the write it guards do not interleave with another change made through
/// this API; other writers of the same stores are not held off.
pub struct WolfApi {
    apps: Arc<dyn AppCatalog>,
    pairings: Arc<dyn PairingStore>,
    pins: Arc<dyn PinBroker>,
    writes: tokio::sync::Mutex<()>,
}

impl fmt::Debug for WolfApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WolfApi")
            .field("apps", &self.apps)
            .field("pairings", &self.pairings)
            .field("pins", &self.pins)
            .finish_non_exhaustive()
    }
}

impl WolfApi {
    /// The API over these stores; `pins` must be the broker the Moonlight server's pairing uses.
    pub fn new(apps: Arc<dyn AppCatalog>, pairings: Arc<dyn PairingStore>, pins: Arc<dyn PinBroker>) -> Self {
        WolfApi {
            apps,
            pairings,
            pins,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Answers one request. Wolf reads any method but `POST`, `PUT` and `DELETE` as `GET`, and
    /// matches the path exactly (the query is not part of it); so does this.
    pub async fn handle(&self, method: &Method, path: &str, body: &[u8]) -> Reply {
        let method = match *method {
            Method::POST | Method::PUT | Method::DELETE => method.clone(),
            _ => Method::GET,
        };
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        debug!(%method, path, "wolf api request");
        match (method, path) {
            (Method::GET, paths::APPS) => self.list_apps().await,
            (Method::POST, paths::APPS_ADD) => self.add_app(body).await,
            (Method::POST, paths::APPS_DELETE) => self.delete_app(body).await,
            (Method::GET, paths::CLIENTS) => self.list_clients().await,
            (Method::POST, paths::UNPAIR_CLIENT) => self.unpair(body).await,
            (Method::GET, paths::PAIR_PENDING) => self.pending().await,
            (Method::POST, paths::PAIR_CLIENT) => self.pair(body).await,
            (Method::GET, paths::PROFILES) => Reply::json(
                200,
                &Profiles {
                    success: true,
                    profiles: [],
                },
            ),
            (Method::GET, paths::OPENAPI_SCHEMA) => Reply::json(200, &openapi::document()),
            _ => Reply::not_found(),
        }
    }

    async fn list_apps(&self) -> Reply {
        match self.apps.list().await {
            Ok(list) => Reply::json(
                200,
                &Apps {
                    success: true,
                    apps: list.iter().map(apps::to_wolf).collect(),
                },
            ),
            Err(e) => Reply::store(&e),
        }
    }

    async fn add_app(&self, body: &[u8]) -> Reply {
        let wolf: WolfApp = match serde_json::from_slice(body) {
            Ok(app) => app,
            Err(e) => return refused(paths::APPS_ADD, 500, format!("Invalid request format: {e}")),
        };
        let app = match apps::from_wolf(&wolf) {
            Ok(app) => app,
            Err(e) => return refused(paths::APPS_ADD, 400, e.to_string()),
        };
        let _write = self.writes.lock().await;
        match self.apps.get(app.id).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return refused(
                    paths::APPS_ADD,
                    400,
                    format!(
                        "App id {} already exists (direwolf keeps one app per id); delete it first",
                        app.id
                    ),
                );
            }
            Err(e) => return Reply::store(&e),
        }
        match self.apps.put(app.clone(), None).await {
            Ok(()) => {
                info!(app = %app.id, title = %app.title, "wolf api: app added");
                Reply::ok()
            }
            Err(e) => Reply::store(&e),
        }
    }

    async fn delete_app(&self, body: &[u8]) -> Reply {
        let request: IdBody = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => return refused(paths::APPS_DELETE, 500, format!("Invalid request format: {e}")),
        };
        // An id that is not a Moonlight app id names no app of direwolf's.
        let Ok(id) = request.id.parse::<AppId>() else {
            return refused(paths::APPS_DELETE, 404, "Invalid app_id");
        };
        let _write = self.writes.lock().await;
        match self.apps.delete(id).await {
            Ok(true) => {
                info!(app = %id, "wolf api: app deleted");
                Reply::ok()
            }
            Ok(false) => refused(paths::APPS_DELETE, 404, "Invalid app_id"),
            Err(e) => Reply::store(&e),
        }
    }

    async fn list_clients(&self) -> Reply {
        match self.pairings.list().await {
            Ok(list) => Reply::json(
                200,
                &Clients {
                    success: true,
                    clients: list
                        .iter()
                        .map(|p| PairedClient {
                            client_id: client_id_for_cert(&p.cert_pem).into(),
                            app_state_folder: p.user.to_string(),
                            settings: Some(ClientSettings::default()),
                        })
                        .collect(),
                },
            ),
            Err(e) => Reply::store(&e),
        }
    }

    async fn unpair(&self, body: &[u8]) -> Reply {
        let request: ClientIdBody = match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(_) => return refused(paths::UNPAIR_CLIENT, 400, "Invalid request format"),
        };
        let Some(client_id) = parse_wolf_u64(&request.client_id) else {
            return refused(paths::UNPAIR_CLIENT, 500, "Invalid client_id");
        };
        let _write = self.writes.lock().await;
        let list = match self.pairings.list().await {
            Ok(list) => list,
            Err(e) => return Reply::store(&e),
        };
        let mut matching = list
            .into_iter()
            .filter(|p| client_id_for_cert(&p.cert_pem) == client_id);
        let (Some(pairing), None) = (matching.next(), matching.next()) else {
            // None, or (astronomically unlikely) two certificates with one hash: removing
            // either would be a guess.
            return refused(paths::UNPAIR_CLIENT, 404, "Client not found");
        };
        match self.pairings.delete(&pairing.fingerprint).await {
            Ok(_) => {
                info!(
                    pairing.fingerprint = %pairing.fingerprint,
                    user = %pairing.user,
                    client_id,
                    "wolf api: client unpaired"
                );
                Reply::ok()
            }
            Err(e) => Reply::store(&e),
        }
    }

    async fn pending(&self) -> Reply {
        match self.pins.pending().await {
            Ok(list) => Reply::json(
                200,
                &Pending {
                    success: true,
                    requests: list
                        .into_iter()
                        .map(|p| PairRequest {
                            pair_secret: p.secret.as_str().into(),
                            client_ip: p.client_ip.to_string(),
                        })
                        .collect(),
                },
            ),
            Err(e) => Reply::store(&e),
        }
    }

    async fn pair(&self, body: &[u8]) -> Reply {
        // The body holds a PIN: serde's message could quote it, so it is not passed on.
        let Ok(request) = serde_json::from_slice::<PairClientRequest>(body) else {
            return refused(
                paths::PAIR_CLIENT,
                500,
                r#"Invalid request format: expected {"pair_secret":string,"pin":string}"#,
            );
        };
        let Ok(secret) = request.pair_secret.expose().parse::<PairSecret>() else {
            return refused(paths::PAIR_CLIENT, 500, "Invalid pair secret");
        };
        let Ok(pin) = request.pin.expose().parse::<Pin>() else {
            return refused(paths::PAIR_CLIENT, 500, "Invalid PIN");
        };
        let _write = self.writes.lock().await;
        match self.pins.submit(&secret, PinSubmission { pin, user: None }).await {
            Ok(()) => {
                info!(pairing.secret = ?secret, "wolf api: PIN submitted");
                Reply::ok()
            }
            Err(PinError::UnknownSecret | PinError::Closed | PinError::TimedOut) => {
                refused(paths::PAIR_CLIENT, 500, "Invalid pair secret")
            }
            Err(e) => Reply::store(&Error::unavailable(format!(
                "the PIN could not be delivered: {e}"
            ))),
        }
    }
}

/// A refused request: logged (the message never holds a PIN or a certificate) and answered in
/// Wolf's error shape.
fn refused(endpoint: &'static str, status: u16, message: impl Into<String>) -> Reply {
    let message = message.into();
    info!(endpoint, status, reason = %message, "wolf api: request refused");
    Reply::error(status, message)
}

#[cfg(test)]
mod tests;
