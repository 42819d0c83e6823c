//! The PIN entry page (`docs/protocol/moonlight-http.md` § PIN page), Wolf-compatible: `GET /pin/`
//! serves a page with four digit inputs whose script reads the pairing secret from the URL fragment
//! (`/pin/#SECRET`) and `POST`s `{"pin":"1234","secret":"SECRET"}` (optionally `"user"`) to
//! `/pin/`, which answers `OK` or a plain-text error.
//!
//! Only the page's own script may post: a submission must be `Content-Type: application/json`
//! (which a cross-site page cannot send without a CORS preflight, and the preflight is refused)
//! and, when it carries an `Origin`, come from the page's own origin ([`check_headers`]).
//!
//! Guessing is bounded: failed submissions are counted per source network (an address's /24 or
//! /64), and invalid submissions per pending pairing (after too many the pairing is cancelled).
//! A network over its limit may still submit for a pairing that is waiting (a correct secret
//! goes through), so nobody can lock the administrator out by failing on purpose. A well-formed
//! PIN is delivered once per pairing; whether it was right is only known at pairing phase 4.
//!
//! With local accounts ([`PinEntry::with_local_accounts`], single-machine mode), once any user
//! has a password the post must also carry `"user"` and `"password"` (checked against the
//! user's Argon2id hash; wrong ones are refused per network after [`PinLimits::max_wrong_passwords`]
//! a minute, and leave the PIN pending) or `"link"`, a one-time pairing link the admin API
//! issued for a user; the pairing belongs to that user. A trusted proxy's identity still wins.
//!
//! With single sign-on ([`PinEntry::with_oidc`], [`crate::oidc`]), the page offers "Log in with
//! single sign-on"; a browser back from the provider carries a one-time login cookie, and its
//! user owns the pairing (the login is used up once the PIN is delivered).
//!
//! A PIN entered without any login is refused (401, an audit line, the PIN still pending) unless
//! unauthenticated PINs are allowed ([`TrustedProxies::allow_unauthenticated`]), also when no
//! login is possible yet; the page then says so before anything is typed ([`Notice`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use direwolf_core::accounts::{LinkError, PairingLinks, PasswordHash};
use direwolf_core::{PairSecret, Pin, PinBroker, PinError, PinSubmission, UserName, UserStore};
use http::header::{CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::oidc::{LoginToken, OidcLogin};
use crate::source::{FailureTable, PrefixLengths, Source};
use crate::trusted_proxy::{Attribution, LOGIN_REQUIRED, TrustedProxies};

mod notice;

pub use notice::{NO_LOGIN_CONFIGURED, NO_LOGIN_YET, Notice, page};

/// The page served by `GET /pin/`.
pub const PIN_PAGE: &str = include_str!("pin.html");

/// The largest `POST /pin/` body accepted.
pub const MAX_BODY: usize = 4096;

/// Limits on PIN submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLimits {
    /// Failed submissions (unknown secret, malformed body, PIN or user) per source network
    /// ([`PinLimits::prefixes`]) within [`PinLimits::window`] before the network is refused
    /// (except for submissions to a pairing that is waiting).
    pub max_failures_per_ip: usize,
    /// Invalid submissions for one pending pairing before it is cancelled.
    pub max_invalid_per_pairing: usize,
    /// The counting window.
    pub window: Duration,
    /// How addresses group into one source (IPv4 /24, IPv6 /64).
    pub prefixes: PrefixLengths,
    /// Wrong passwords (and unknown users) per source network within
    /// [`PinLimits::password_window`] before logins from it are refused (429), whatever they
    /// submit for.
    pub max_wrong_passwords: usize,
    /// The window wrong passwords are counted over.
    pub password_window: Duration,
}

impl Default for PinLimits {
    fn default() -> Self {
        PinLimits {
            max_failures_per_ip: 10,
            max_invalid_per_pairing: 5,
            window: Duration::from_secs(600),
            prefixes: PrefixLengths::default(),
            max_wrong_passwords: 5,
            password_window: Duration::from_secs(60),
        }
    }
}

#[derive(Deserialize)]
struct Body {
    pin: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

struct Counters {
    by_source: FailureTable,
    by_secret: HashMap<PairSecret, usize>,
    wrong_passwords: FailureTable,
    /// The pairing link each delivered PIN came with, until its pairing ends.
    links_in_use: HashMap<PairSecret, String>,
}

/// Local accounts on the PIN page: the users (their password hashes) and the pairing links.
#[derive(Debug, Clone)]
pub struct LocalAccounts {
    /// Where users and their password hashes are.
    pub users: Arc<dyn UserStore>,
    /// The one-time pairing links the admin API issues.
    pub links: PairingLinks,
}

/// Who a submission is for, once its login (if any) is checked.
struct Owner {
    /// The user the pairing will belong to (`None`: the server's default user).
    user: Option<UserName>,
    /// The form named a user that is not a valid name (open entry only).
    invalid_user: Option<String>,
    /// The pairing link used, consumed when the PIN is delivered.
    link: Option<String>,
    /// Whether someone vouched for the user (a proxy, a password, a link, a single sign-on).
    vouched: bool,
    /// The single sign-on login used, used up when the PIN is delivered.
    sso: Option<LoginToken>,
}

impl Owner {
    fn vouched(user: UserName, link: Option<String>) -> Self {
        Owner {
            user: Some(user),
            invalid_user: None,
            link,
            vouched: true,
            sso: None,
        }
    }
}

/// Message for a submission without login while local accounts exist.
pub const PASSWORD_REQUIRED: &str = "Log in to pair: enter your user name and password with the PIN (or open a pairing link from your administrator)";
/// Message for a submission without login while local accounts and single sign-on both exist.
pub const ANY_LOGIN_REQUIRED: &str = "Log in to pair: use \"Log in with single sign-on\", or enter your user name and password with the PIN (or open a pairing link from your administrator)";

/// The refusal of a PIN without login while local accounts exist.
fn password_required(sso: bool) -> &'static str {
    if sso {
        ANY_LOGIN_REQUIRED
    } else {
        PASSWORD_REQUIRED
    }
}

/// Message for a wrong password or an unknown user.
pub const WRONG_PASSWORD: &str = "Wrong user name or password; the PIN is still waiting, try again";
/// Message when a network has sent too many wrong passwords.
pub const TOO_MANY_PASSWORDS: &str =
    "Too many wrong passwords from this network; wait a minute and try again";
/// Message for a pairing link whose user was deleted.
pub const LINK_USER_GONE: &str =
    "This pairing link's user no longer exists; ask your administrator for a new link";
/// Message for a pairing link that was never issued.
pub const UNKNOWN_LINK: &str = "This pairing link is not valid; ask your administrator for a new one";

/// Message for a submission without login while single sign-on is configured.
pub const SSO_REQUIRED: &str =
    "Log in to pair: use \"Log in with single sign-on\" on this page, then enter the PIN";
/// Message for a single sign-on login that expired or was used.
pub const SSO_EXPIRED: &str =
    "Your single sign-on login expired or was already used; log in again from the PIN page";

/// Password checks running at once; later ones wait their turn.
const MAX_CONCURRENT_VERIFICATIONS: usize = 2;

/// Sources kept in the failure table; past it, failures are counted together (never ignored).
const MAX_FAILURE_SOURCES: usize = 4096;

/// Message for a submission that is not JSON.
pub const NOT_JSON: &str = "The PIN must be posted as JSON (Content-Type: application/json)";
/// Message for a submission from another origin than the page.
pub const CROSS_ORIGIN: &str =
    "PIN submissions from other web pages are refused: open the PIN page link from the server log";

/// Checks that a `POST /pin/` can only come from the page's own script: `Content-Type:
/// application/json` (a cross-site page cannot send it without a preflight, which is refused), and
/// an `Origin`, if present, equal to `http://` plus the request's `Host` (browsers send `Origin`
/// with every cross-origin POST; tools such as curl send none).
///
/// # Errors
/// 415 [`NOT_JSON`] or 403 [`CROSS_ORIGIN`].
pub fn check_headers(headers: &HeaderMap) -> Result<(), PinReply> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON.into()));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        let same = match (origin.to_str(), host) {
            (Ok(origin), Some(host)) => origin
                .strip_prefix("http://")
                .is_some_and(|o| o.eq_ignore_ascii_case(host)),
            _ => false,
        };
        if !same {
            return Err((StatusCode::FORBIDDEN, CROSS_ORIGIN.into()));
        }
    }
    Ok(())
}

/// Handles PIN submissions.
pub struct PinEntry {
    broker: Arc<dyn PinBroker>,
    limits: PinLimits,
    proxies: TrustedProxies,
    accounts: Option<LocalAccounts>,
    oidc: Option<Arc<OidcLogin>>,
    /// The HTTPS port of the web UI, where a password is safer than on this plain-HTTP page.
    web_ui_port: OnceLock<u16>,
    counters: Mutex<Counters>,
    /// Bounds the password checks running at once.
    verifying: tokio::sync::Semaphore,
}

impl fmt::Debug for PinEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinEntry")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The answer to a submission: HTTP status and a plain-text body.
pub type PinReply = (StatusCode, String);

fn bad(text: impl Into<String>) -> PinReply {
    (StatusCode::BAD_REQUEST, text.into())
}

impl PinEntry {
    /// PIN entry over `broker`.
    pub fn new(broker: Arc<dyn PinBroker>, limits: PinLimits) -> Self {
        PinEntry {
            broker,
            limits,
            proxies: TrustedProxies::default(),
            accounts: None,
            oidc: None,
            web_ui_port: OnceLock::new(),
            verifying: tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
            counters: Mutex::new(Counters {
                by_source: FailureTable::new(limits.window, MAX_FAILURE_SOURCES, limits.max_failures_per_ip),
                by_secret: HashMap::new(),
                links_in_use: HashMap::new(),
                wrong_passwords: FailureTable::new(
                    limits.password_window,
                    MAX_FAILURE_SOURCES,
                    limits.max_wrong_passwords,
                ),
            }),
        }
    }

    /// Local accounts: once any user has a password, a PIN needs that user's password (or a
    /// pairing link, or a trusted proxy's identity) unless unauthenticated PINs are allowed
    /// ([`TrustedProxies::allow_unauthenticated`]).
    pub fn with_local_accounts(mut self, accounts: LocalAccounts) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// Single sign-on through an OpenID Connect provider ([`crate::oidc`]).
    pub fn with_oidc(mut self, oidc: Arc<OidcLogin>) -> Self {
        self.oidc = Some(oidc);
        self
    }

    /// The single sign-on logins, if configured.
    pub fn oidc(&self) -> Option<&Arc<OidcLogin>> {
        self.oidc.as_ref()
    }

    /// Points people about to type a password to the web UI on `port` (HTTPS, same host) instead;
    /// the first port set stays.
    pub fn set_web_ui_port(&self, port: u16) {
        let _ = self.web_ui_port.set(port);
    }

    /// The page as served now: [`page`] with the web UI's port, if set and passwords are taken
    /// here (local accounts).
    pub async fn page(&self) -> Cow<'static, str> {
        let page = page(self.oidc.is_some(), self.notice().await);
        match self.web_ui_port.get().filter(|_| self.accounts.is_some()) {
            Some(port) => page
                .replacen(r#"data-web-ui="""#, &format!(r#"data-web-ui="{port}""#), 1)
                .into(),
            None => page.into(),
        }
    }

    /// Believe these proxies' identity headers ([`crate::trusted_proxy`]).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Who entered a PIN posted by `ip` with `headers`; a refusal counts as a failed submission.
    ///
    /// # Errors
    /// As [`TrustedProxies::attribute`].
    pub fn attribute(&self, ip: IpAddr, headers: &HeaderMap) -> Result<Attribution, PinReply> {
        // A login cookie counts while its login is valid; a stale one (used up, expired, from
        // before a restart) is ignored, so a password or pairing link still works beside it.
        let sso = self
            .oidc
            .as_ref()
            .and_then(|oidc| LoginToken::from_headers(headers).filter(|token| oidc.user_of(token).is_some()));
        match (self.proxies.attribute(ip, headers), sso) {
            (Ok(Attribution::Open) | Err((StatusCode::UNAUTHORIZED, _)), Some(token)) => {
                Ok(Attribution::SingleSignOn(token))
            }
            // A password, a pairing link or a single sign-on may still say who it is.
            (Err((StatusCode::UNAUTHORIZED, _)), None) if self.accounts.is_some() || self.oidc.is_some() => {
                Ok(Attribution::LoginRequired)
            }
            (other, _) => other.map_err(|reply| self.fail(ip, reply)),
        }
    }

    fn locked_out(&self, ip: IpAddr) -> bool {
        let source = Source::of(ip, self.limits.prefixes);
        self.counters.lock().by_source.count(source, Instant::now()) >= self.limits.max_failures_per_ip
    }

    fn fail(&self, ip: IpAddr, reply: PinReply) -> PinReply {
        let source = Source::of(ip, self.limits.prefixes);
        self.counters.lock().by_source.record(source, Instant::now());
        reply
    }

    async fn is_pending(&self, secret: &PairSecret) -> bool {
        self.broker
            .pending()
            .await
            .map(|p| p.iter().any(|e| &e.secret == secret))
            .unwrap_or(false)
    }

    /// Handles `POST /pin/` from `ip` with `body` (headers checked by [`check_headers`]) as an
    /// open submission ([`Attribution::Open`]): accepted only with a login in the body, or when
    /// unauthenticated PINs are allowed (then for the form's user, else the default user).
    pub async fn submit(&self, ip: IpAddr, body: &[u8]) -> PinReply {
        self.submit_as(ip, Attribution::Open, body).await
    }

    /// Handles `POST /pin/` from `ip` with `body`, entered by `who` ([`PinEntry::attribute`]): a
    /// user named by a trusted proxy owns the pairing whatever the form says; otherwise a pairing
    /// link's user, or the user whose password the form carries; otherwise (no local accounts, or
    /// unauthenticated PINs allowed) the form's user.
    pub async fn submit_as(&self, ip: IpAddr, who: Attribution, body: &[u8]) -> PinReply {
        let locked_out = self.locked_out(ip);
        let too_many = || {
            (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed PIN submissions from this network; try again in a few minutes".to_owned(),
            )
        };
        let parsed = serde_json::from_slice::<Body>(body);
        let secret = parsed
            .as_ref()
            .ok()
            .and_then(|b| b.secret.as_deref())
            .and_then(|s| s.parse::<PairSecret>().ok());
        // Over the limit, only submissions for a waiting pairing go on (they are bounded per
        // pairing); guesses at secrets do not.
        if locked_out && !matches!(&secret, Some(s) if self.is_pending(s).await) {
            return too_many();
        }
        let Ok(body) = parsed else {
            return self.fail(ip, bad(r#"Expected a JSON body {"pin":"1234","secret":"..."}"#));
        };
        let via_proxy = matches!(who, Attribution::Proxy(_));
        let owner = match self.owner(ip, who, &body).await {
            Ok(owner) => owner,
            Err(reply) => return reply,
        };
        let secret = match secret {
            Some(secret) => secret,
            // Someone vouched for the user and the page has no secret (a pairing link opened
            // as given): the one pairing waiting, if there is exactly one.
            None if owner.vouched && body.secret.as_deref().is_none_or(str::is_empty) => {
                match self.only_pending().await {
                    Ok(secret) => secret,
                    Err(reply) => return reply,
                }
            }
            None => return self.fail(ip, bad("Missing or malformed pairing secret")),
        };
        let pin = body.pin.as_deref().unwrap_or("").parse::<Pin>();
        let pin = match (pin, owner.invalid_user) {
            (Ok(pin), None) => pin,
            (pin, invalid_user) => {
                let message = if pin.is_err() {
                    "The PIN must be exactly four digits".to_owned()
                } else {
                    format!("Invalid user name: {}", invalid_user.unwrap_or_default())
                };
                return self.invalid_for_pairing(ip, &secret, message).await;
            }
        };
        let user = owner.user;
        // A link is reserved before the PIN goes out, so two submissions cannot both use it; it
        // is given back if the PIN cannot be delivered, and used up or given back when the
        // pairing ends ([`PinEntry::pairing_finished`]).
        if let (Some(token), Some(accounts)) = (&owner.link, &self.accounts)
            && let Err(e) = accounts.links.reserve(token)
        {
            return self.fail(ip, link_refusal(e));
        }
        let restore_link = || {
            if let (Some(token), Some(accounts)) = (&owner.link, &self.accounts) {
                accounts.links.restore(token);
            }
        };
        // A single sign-on login is used once: taken before the PIN goes out, given back if it
        // cannot be delivered.
        let sso = match (&owner.sso, &self.oidc) {
            (Some(token), Some(oidc)) => match oidc.take(token) {
                Some(taken) => Some((oidc, token, taken)),
                None => {
                    restore_link();
                    return self.fail(ip, (StatusCode::UNAUTHORIZED, SSO_EXPIRED.into()));
                }
            },
            _ => None,
        };
        let restore_sso = || {
            if let Some((oidc, token, taken)) = &sso {
                oidc.restore(token, taken.clone());
            }
        };
        let shown = user.as_ref().map_or("(default)", UserName::as_str).to_owned();
        match self.broker.submit(&secret, PinSubmission { pin, user }).await {
            Ok(()) => {
                let mut counters = self.counters.lock();
                counters.by_secret.remove(&secret);
                if let Some(token) = &owner.link {
                    if counters.links_in_use.len() >= 1024 {
                        // Pairings that never ended; their reservations lapse by themselves.
                        counters.links_in_use.clear();
                    }
                    counters.links_in_use.insert(secret.clone(), token.clone());
                }
                drop(counters);
                let how = match (via_proxy, &owner.link, owner.vouched) {
                    (true, _, _) => "trusted proxy",
                    _ if owner.sso.is_some() => "single sign-on",
                    (_, Some(_), _) => "pairing link",
                    (_, None, true) => "password",
                    (_, None, false) => "unauthenticated",
                };
                tracing::info!(pairing.secret = ?secret, user = %shown, login = how, "PIN submitted");
                (StatusCode::OK, "OK".into())
            }
            Err(PinError::UnknownSecret | PinError::Closed | PinError::TimedOut) => {
                restore_link();
                restore_sso();
                self.fail(
                    ip,
                    bad("No pairing is waiting for this secret (it may have expired or been used)"),
                )
            }
            Err(e) => {
                restore_link();
                restore_sso();
                crate::warn_throttled!("pin-broker-submit", error = %e, "PIN broker failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The PIN could not be delivered; try again".into(),
                )
            }
        }
    }

    /// The pairing a PIN was delivered to (by its broker `secret`) ended: a pairing link used for
    /// it is used up if it `paired`, else given back.
    pub fn pairing_finished(&self, secret: &PairSecret, paired: bool) {
        let token = self.counters.lock().links_in_use.remove(secret);
        if let (Some(token), Some(accounts)) = (token, &self.accounts) {
            if paired {
                accounts.links.consume(&token);
            } else {
                accounts.links.restore(&token);
                tracing::info!(pairing.secret = ?secret, "pairing failed: its pairing link may be used again");
            }
        }
    }

    /// Who the submission is for: see [`PinEntry::submit_as`].
    async fn owner(&self, ip: IpAddr, who: Attribution, body: &Body) -> Result<Owner, PinReply> {
        if let Attribution::Proxy(user) = who {
            return Ok(Owner::vouched(user, None));
        }
        if let Attribution::SingleSignOn(token) = &who {
            return match self.oidc.as_ref().and_then(|oidc| oidc.user_of(token)) {
                Some(user) => Ok(Owner {
                    sso: Some(token.clone()),
                    ..Owner::vouched(user, None)
                }),
                None => {
                    audit(
                        ip,
                        "-",
                        "PIN page single sign-on refused: the login expired or was used",
                    );
                    Err(self.fail(ip, (StatusCode::UNAUTHORIZED, SSO_EXPIRED.into())))
                }
            };
        }
        let form_user = body.user.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let open = || {
            let (user, invalid_user) = match form_user.map(str::parse::<UserName>) {
                None => (None, None),
                Some(Ok(user)) => (Some(user), None),
                Some(Err(e)) => (None, Some(e.to_string())),
            };
            Owner {
                user,
                invalid_user,
                link: None,
                vouched: false,
                sso: None,
            }
        };
        let sso = self.oidc.is_some();
        let Some(accounts) = &self.accounts else {
            return match who {
                Attribution::LoginRequired => {
                    Err(self.fail(ip, (StatusCode::UNAUTHORIZED, SSO_REQUIRED.into())))
                }
                Attribution::Open if !self.proxies.allow_unauthenticated => {
                    let message = if sso { SSO_REQUIRED } else { NO_LOGIN_CONFIGURED };
                    audit(ip, form_user.unwrap_or("-"), "PIN entry without login refused");
                    Err(self.fail(ip, (StatusCode::UNAUTHORIZED, message.into())))
                }
                _ => Ok(open()),
            };
        };
        if let Some(token) = body.link.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            return match accounts.links.check(token) {
                // A link does not bring back a user deleted since it was issued.
                Ok(user) if !matches!(accounts.users.get(&user).await, Ok(Some(_))) => {
                    audit(
                        ip,
                        user.as_str(),
                        "PIN page pairing link refused: its user no longer exists",
                    );
                    Err(self.fail(ip, (StatusCode::GONE, LINK_USER_GONE.into())))
                }
                Ok(user) => Ok(Owner::vouched(user, Some(token.to_owned()))),
                Err(e) => {
                    audit(ip, "-", &format!("PIN page pairing link refused: {e}"));
                    Err(self.fail(ip, link_refusal(e)))
                }
            };
        }
        if let Some(password) = body.password.as_deref().filter(|p| !p.is_empty()) {
            return self
                .log_in(ip, accounts, form_user, password)
                .await
                .map(|user| Owner::vouched(user, None));
        }
        let accounts_exist = match accounts.users.list().await {
            Ok(users) => users.iter().any(|u| u.password.is_some()),
            Err(e) => {
                crate::warn_throttled!("pin-users", error = %e, "cannot read the users for the PIN page");
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The user list is unavailable; try again".into(),
                ));
            }
        };
        match who {
            Attribution::LoginRequired if accounts_exist => {
                Err(self.fail(ip, (StatusCode::UNAUTHORIZED, password_required(sso).into())))
            }
            Attribution::LoginRequired if sso => {
                Err(self.fail(ip, (StatusCode::UNAUTHORIZED, SSO_REQUIRED.into())))
            }
            Attribution::LoginRequired => {
                Err(self.fail(ip, (StatusCode::UNAUTHORIZED, LOGIN_REQUIRED.into())))
            }
            Attribution::Open if !self.proxies.allow_unauthenticated => {
                let message = match (accounts_exist, sso) {
                    (true, _) => password_required(sso),
                    (false, true) => SSO_REQUIRED,
                    (false, false) => NO_LOGIN_YET,
                };
                audit(ip, form_user.unwrap_or("-"), "PIN entry without login refused");
                Err(self.fail(ip, (StatusCode::UNAUTHORIZED, message.into())))
            }
            _ => Ok(open()),
        }
    }

    /// Checks `user`'s `password`: the user, or 401 (429 once the network has sent too many
    /// wrong passwords). The PIN stays pending either way.
    async fn log_in(
        &self,
        ip: IpAddr,
        accounts: &LocalAccounts,
        user: Option<&str>,
        password: &str,
    ) -> Result<UserName, PinReply> {
        // Few hashes at once: each takes ~19 MiB.
        let Ok(_turn) = self.verifying.acquire().await else {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "The server is stopping".into()));
        };
        let source = Source::of(ip, self.limits.prefixes);
        // Each check counts as wrong until it proves right, so guesses sent at once cannot
        // together get more tries than the limit.
        let over = {
            let mut counters = self.counters.lock();
            let now = Instant::now();
            let over = counters.wrong_passwords.count(source, now) >= self.limits.max_wrong_passwords;
            if !over {
                counters.wrong_passwords.record(source, now);
            }
            over
        };
        if over {
            audit(
                ip,
                user.unwrap_or("-"),
                "PIN page login refused: too many wrong passwords",
            );
            return Err((StatusCode::TOO_MANY_REQUESTS, TOO_MANY_PASSWORDS.into()));
        }
        let name = user.and_then(|u| u.parse::<UserName>().ok());
        let stored = match &name {
            Some(name) => accounts
                .users
                .get(name)
                .await
                .ok()
                .flatten()
                .and_then(|u| u.password),
            None => None,
        };
        // An unknown user costs as much as a wrong password: no telling them apart by time.
        let hash = stored.clone().unwrap_or_else(|| dummy_hash().clone());
        let matches = hash.verify_blocking(password.to_owned()).await && stored.is_some();
        match name {
            Some(name) if matches => {
                self.counters.lock().wrong_passwords.forgive(source);
                Ok(name)
            }
            _ => {
                audit(
                    ip,
                    user.unwrap_or("-"),
                    "PIN page login refused: wrong user name or password",
                );
                Err((StatusCode::UNAUTHORIZED, WRONG_PASSWORD.into()))
            }
        }
    }

    /// The secret of the one pairing waiting, for a vouched-for submission without one.
    async fn only_pending(&self) -> Result<PairSecret, PinReply> {
        let pending = self.broker.pending().await.unwrap_or_default();
        match pending.as_slice() {
            [one] => Ok(one.secret.clone()),
            [] => Err((
                StatusCode::CONFLICT,
                "No pairing is waiting for a PIN: start pairing in Moonlight first, then enter the PIN it shows".into(),
            )),
            _ => Err((
                StatusCode::CONFLICT,
                "Several pairings are waiting for a PIN: open the PIN page link from the server log \
                 (…/pin/#SECRET), or try again in a moment"
                    .into(),
            )),
        }
    }

    async fn invalid_for_pairing(&self, ip: IpAddr, secret: &PairSecret, message: String) -> PinReply {
        if !self.is_pending(secret).await {
            return self.fail(ip, bad(message));
        }
        let count = {
            let mut counters = self.counters.lock();
            if counters.by_secret.len() >= 1024 {
                counters.by_secret.clear();
            }
            let count = counters.by_secret.entry(secret.clone()).or_insert(0);
            *count += 1;
            *count
        };
        if count >= self.limits.max_invalid_per_pairing {
            self.counters.lock().by_secret.remove(secret);
            self.broker.close(secret).await;
            crate::warn_throttled!(
                "pin-invalid-cancel",
                pairing.secret = ?secret,
                "pairing cancelled after repeated invalid PIN submissions"
            );
            return self.fail(
                ip,
                bad("Too many invalid PIN submissions; this pairing attempt was cancelled"),
            );
        }
        self.fail(ip, bad(message))
    }
}

/// The reply to a pairing link that cannot be used.
fn link_refusal(e: LinkError) -> PinReply {
    match e {
        LinkError::Unknown => (StatusCode::UNAUTHORIZED, UNKNOWN_LINK.to_owned()),
        LinkError::InUse => (StatusCode::CONFLICT, e.to_string()),
        LinkError::Expired | LinkError::Used => (StatusCode::GONE, e.to_string()),
    }
}

/// An audit line for a refused login on the PIN page (never the password or PIN).
fn audit(ip: IpAddr, user: &str, what: &str) {
    tracing::warn!(target: "direwolf::audit", actor = "pin-page", client = %ip, user = %user, action = "login", outcome = "refused", "{what}");
}

/// A hash no password matches quickly, verified for unknown users.
fn dummy_hash() -> &'static PasswordHash {
    static DUMMY: OnceLock<PasswordHash> = OnceLock::new();
    DUMMY.get_or_init(|| {
        PasswordHash::new("direwolf: no such user, no such password").expect("a valid fixed password")
    })
}

#[cfg(test)]
mod tests {
    use direwolf_core::{InMemoryPinBroker, PendingPinRequest};

    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    async fn open(broker: &InMemoryPinBroker) -> PairSecret {
        broker
            .open(PendingPinRequest {
                client_ip: IP,
                device_name: None,
            })
            .await
            .unwrap()
    }

    /// A PIN entry that accepts PINs without login.
    fn open_entry(broker: &InMemoryPinBroker, limits: PinLimits) -> PinEntry {
        PinEntry::new(Arc::new(broker.clone()), limits).with_trusted_proxies(TrustedProxies {
            networks: vec![],
            allow_unauthenticated: true,
        })
    }

    fn json(pin: &str, secret: &str) -> Vec<u8> {
        format!(r#"{{"pin":"{pin}","secret":"{secret}"}}"#).into_bytes()
    }

    #[tokio::test]
    async fn delivers_a_valid_pin_once() {
        let broker = InMemoryPinBroker::default();
        let entry = open_entry(&broker, PinLimits::default());
        let secret = open(&broker).await;
        let body = format!(
            r#"{{"pin":"1234","secret":"{}","user":"alice"}}"#,
            secret.as_str().to_lowercase()
        );
        assert_eq!(
            entry.submit(IP, body.as_bytes()).await,
            (StatusCode::OK, "OK".into())
        );
        let got = broker.wait(&secret, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.pin.expose(), "1234");
        assert_eq!(got.user.unwrap().as_str(), "alice");
        let (status, _) = entry.submit(IP, &json("1234", secret.as_str())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn malformed_submissions() {
        let broker = InMemoryPinBroker::default();
        let entry = open_entry(&broker, PinLimits::default());
        let secret = open(&broker).await;
        for (body, expected) in [
            (b"not json".to_vec(), "Expected a JSON body"),
            (json("1234", "nothex"), "Missing or malformed pairing secret"),
            (json("12a4", secret.as_str()), "four digits"),
            (json("12345", secret.as_str()), "four digits"),
            (
                format!(
                    r#"{{"pin":"1234","secret":"{}","user":"Bad User"}}"#,
                    secret.as_str()
                )
                .into_bytes(),
                "Invalid user name",
            ),
        ] {
            let (status, text) = entry.submit(IP, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(text.contains(expected), "{text}");
        }
    }

    #[tokio::test]
    async fn invalid_submissions_cancel_the_pairing() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_invalid_per_pairing: 2,
            ..Default::default()
        };
        let entry = open_entry(&broker, limits);
        let secret = open(&broker).await;
        entry.submit(IP, &json("x", secret.as_str())).await;
        let (_, text) = entry.submit(IP, &json("y", secret.as_str())).await;
        assert!(text.contains("cancelled"), "{text}");
        assert!(broker.pending().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn failures_per_address_are_bounded() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_failures_per_ip: 3,
            ..Default::default()
        };
        let entry = open_entry(&broker, limits);
        for _ in 0..3 {
            let guess = PairSecret::generate();
            assert_eq!(
                entry.submit(IP, &json("1234", guess.as_str())).await.0,
                StatusCode::BAD_REQUEST
            );
        }
        // Further guesses are refused, from the whole network (/24).
        let neighbour: IpAddr = "192.0.2.2".parse().unwrap();
        for ip in [IP, neighbour] {
            let (status, text) = entry
                .submit(ip, &json("1234", PairSecret::generate().as_str()))
                .await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert!(text.contains("this network"), "{text}");
        }
        // Another network is not affected.
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        let (status, _) = entry
            .submit(other, &json("1234", PairSecret::generate().as_str()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_correct_secret_goes_through_a_locked_out_address() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_failures_per_ip: 3,
            ..Default::default()
        };
        let entry = open_entry(&broker, limits);
        // Someone (a cross-site page, a neighbour) fails on purpose from the admin's address.
        for _ in 0..5 {
            entry.submit(IP, b"x").await;
        }
        assert_eq!(
            entry
                .submit(IP, &json("1234", PairSecret::generate().as_str()))
                .await
                .0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let secret = open(&broker).await;
        assert_eq!(
            entry.submit(IP, &json("1234", secret.as_str())).await,
            (StatusCode::OK, "OK".into())
        );
        assert_eq!(
            broker
                .wait(&secret, Duration::from_secs(1))
                .await
                .unwrap()
                .pin
                .expose(),
            "1234"
        );
    }

    #[tokio::test]
    async fn the_failure_table_overflowing_keeps_the_limit() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_failures_per_ip: 2,
            ..Default::default()
        };
        let entry = open_entry(&broker, limits);
        // Fill the table with one failure from each of MAX_FAILURE_SOURCES networks.
        for i in 0..MAX_FAILURE_SOURCES {
            let ip = IpAddr::from([10, (i >> 8) as u8, i as u8, 1]);
            entry.submit(ip, b"x").await;
        }
        // A network past the table is still limited.
        let late: IpAddr = "2001:db8:7::1".parse().unwrap();
        for _ in 0..2 {
            entry.submit(late, b"x").await;
        }
        assert_eq!(
            entry
                .submit(late, &json("1234", PairSecret::generate().as_str()))
                .await
                .0,
            StatusCode::TOO_MANY_REQUESTS
        );
        // IPv6 counts per /64: another address of the same /64 is refused too.
        let same_64: IpAddr = "2001:db8:7::2:3".parse().unwrap();
        assert_eq!(
            entry
                .submit(same_64, &json("1234", PairSecret::generate().as_str()))
                .await
                .0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_json_from_the_page_origin_is_accepted() {
        let host = (HOST, "192.0.2.10:47989");
        let json = (CONTENT_TYPE, "application/json");
        assert!(check_headers(&headers(&[host.clone(), json.clone()])).is_ok());
        assert!(check_headers(&headers(&[(CONTENT_TYPE, "Application/JSON; charset=utf-8")])).is_ok());
        assert!(
            check_headers(&headers(&[
                host.clone(),
                json.clone(),
                (ORIGIN, "http://192.0.2.10:47989")
            ]))
            .is_ok()
        );
        // A cross-site form or fetch without a preflight can only send text/plain and the like.
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let refused = check_headers(&headers(&[host.clone(), (CONTENT_TYPE, content_type)]));
            assert_eq!(
                refused,
                Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON.into()))
            );
        }
        assert!(check_headers(&headers(std::slice::from_ref(&host))).is_err());
        // Another origin, an opaque one, or HTTPS for this plain-HTTP page.
        for origin in [
            "http://evil.example",
            "null",
            "https://192.0.2.10:47989",
            "http://192.0.2.10",
        ] {
            let refused = check_headers(&headers(&[host.clone(), json.clone(), (ORIGIN, origin)]));
            assert_eq!(
                refused,
                Err((StatusCode::FORBIDDEN, CROSS_ORIGIN.into())),
                "{origin}"
            );
        }
        assert!(check_headers(&headers(&[json, (ORIGIN, "http://192.0.2.10:47989")])).is_err());
    }

    /// A PIN entry with local accounts: alice has a password, bob has none.
    async fn with_accounts(broker: &InMemoryPinBroker, limits: PinLimits) -> (PinEntry, PairingLinks) {
        let stores = direwolf_core::Stores::in_memory();
        let mut alice = direwolf_core::User::new("alice".parse().unwrap());
        alice.password = Some(PasswordHash::new("alice's password").unwrap());
        stores.users.put(alice).await.unwrap();
        stores
            .users
            .put(direwolf_core::User::new("bob".parse().unwrap()))
            .await
            .unwrap();
        let links = PairingLinks::default();
        let entry = PinEntry::new(Arc::new(broker.clone()), limits).with_local_accounts(LocalAccounts {
            users: stores.users.clone(),
            links: links.clone(),
        });
        (entry, links)
    }

    fn login(secret: &PairSecret, user: &str, password: &str) -> Vec<u8> {
        serde_json::json!({"pin": "1234", "secret": secret.as_str(), "user": user, "password": password})
            .to_string()
            .into_bytes()
    }

    #[tokio::test]
    async fn with_accounts_the_password_decides_who_owns_the_pairing() {
        let broker = InMemoryPinBroker::default();
        let (entry, _) = with_accounts(&broker, PinLimits::default()).await;
        let secret = open(&broker).await;
        // No login: refused, the pairing still waits.
        let (status, text) = entry.submit(IP, &json("1234", secret.as_str())).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::UNAUTHORIZED, PASSWORD_REQUIRED)
        );
        // A wrong password, an unknown user, a user without a password: 401, still waiting.
        for (user, password) in [
            ("alice", "not her password"),
            ("mallory", "whatever1"),
            ("bob", "anything!"),
        ] {
            let (status, text) = entry.submit(IP, &login(&secret, user, password)).await;
            assert_eq!(
                (status, text.as_str()),
                (StatusCode::UNAUTHORIZED, WRONG_PASSWORD),
                "{user}"
            );
        }
        assert_eq!(
            broker.pending().await.unwrap().len(),
            1,
            "the PIN is still pending"
        );
        // The right password: alice owns the pairing, whatever else the form says.
        let (status, _) = entry
            .submit(IP, &login(&secret, "alice", "alice's password"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let got = broker.wait(&secret, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.user.unwrap().as_str(), "alice");
    }

    #[tokio::test]
    async fn unauthenticated_pins_are_refused_unless_allowed() {
        let broker = InMemoryPinBroker::default();
        let stores = direwolf_core::Stores::in_memory();
        let accounts = LocalAccounts {
            users: stores.users.clone(),
            links: PairingLinks::default(),
        };
        // No login configured at all (Kubernetes mode): refused, the PIN still waits.
        let bare = PinEntry::new(Arc::new(broker.clone()), PinLimits::default());
        assert_eq!(bare.notice().await, Notice::NoLoginConfigured);
        let secret = open(&broker).await;
        let (status, text) = bare.submit(IP, &json("1234", secret.as_str())).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::UNAUTHORIZED, NO_LOGIN_CONFIGURED)
        );
        // A fresh install with local accounts: nobody has a password yet, refused all the same.
        let entry = PinEntry::new(Arc::new(broker.clone()), PinLimits::default())
            .with_local_accounts(accounts.clone());
        assert_eq!(entry.notice().await, Notice::NoAccountsYet);
        let (status, text) = entry.submit(IP, &json("1234", secret.as_str())).await;
        assert_eq!((status, text.as_str()), (StatusCode::UNAUTHORIZED, NO_LOGIN_YET));
        assert_eq!(
            broker.pending().await.unwrap().len(),
            1,
            "the PIN is still pending"
        );
        let mut alice = direwolf_core::User::new("alice".parse().unwrap());
        alice.password = Some(PasswordHash::new("alice's password").unwrap());
        stores.users.put(alice).await.unwrap();
        assert_eq!(entry.notice().await, Notice::None);
        assert_eq!(
            entry.submit(IP, &json("1234", secret.as_str())).await,
            (StatusCode::UNAUTHORIZED, PASSWORD_REQUIRED.to_owned())
        );
        let allowed = PinEntry::new(Arc::new(broker.clone()), PinLimits::default())
            .with_trusted_proxies(TrustedProxies {
                networks: vec![],
                allow_unauthenticated: true,
            })
            .with_local_accounts(accounts);
        assert_eq!(allowed.notice().await, Notice::None);
        assert_eq!(
            allowed.submit(IP, &json("1234", secret.as_str())).await.0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn the_page_points_to_the_web_ui_only_where_passwords_are_typed() {
        let broker: Arc<dyn PinBroker> = Arc::new(InMemoryPinBroker::default());
        let stores = direwolf_core::Stores::in_memory();
        let accounts = LocalAccounts {
            users: stores.users.clone(),
            links: PairingLinks::default(),
        };
        let entry = PinEntry::new(broker.clone(), PinLimits::default()).with_local_accounts(accounts);
        assert!(
            entry.page().await.contains(r#"data-web-ui="""#),
            "no port set yet"
        );
        entry.set_web_ui_port(47990);
        entry.set_web_ui_port(1);
        let page = entry.page().await;
        assert!(page.contains(r#"data-web-ui="47990""#), "the first port stays");
        assert!(page.contains(r#"id="web-ui-link""#));
        // Without local accounts nobody types a password on the page: no pointer.
        let bare = PinEntry::new(broker, PinLimits::default());
        bare.set_web_ui_port(47990);
        assert!(bare.page().await.contains(r#"data-web-ui="""#));
    }

    #[tokio::test]
    async fn wrong_passwords_are_rate_limited_per_network() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_wrong_passwords: 3,
            ..Default::default()
        };
        let (entry, _) = with_accounts(&broker, limits).await;
        // Right passwords are no tries.
        for _ in 0..4 {
            let secret = open(&broker).await;
            let (status, _) = entry
                .submit(IP, &login(&secret, "alice", "alice's password"))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let secret = open(&broker).await;
        for _ in 0..3 {
            let (status, _) = entry.submit(IP, &login(&secret, "alice", "guess guess")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // Even the right password waits now, from the whole /24; the pairing is not cancelled.
        let neighbour: IpAddr = "192.0.2.77".parse().unwrap();
        for ip in [IP, neighbour] {
            let (status, text) = entry
                .submit(ip, &login(&secret, "alice", "alice's password"))
                .await;
            assert_eq!(
                (status, text.as_str()),
                (StatusCode::TOO_MANY_REQUESTS, TOO_MANY_PASSWORDS)
            );
        }
        assert!(broker.pending().await.unwrap().iter().any(|p| p.secret == secret));
        let elsewhere: IpAddr = "198.51.100.4".parse().unwrap();
        let (status, _) = entry
            .submit(elsewhere, &login(&secret, "alice", "alice's password"))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_guesses_get_no_more_tries_than_the_limit() {
        let broker = InMemoryPinBroker::default();
        let limits = PinLimits {
            max_wrong_passwords: 3,
            ..Default::default()
        };
        let (entry, _) = with_accounts(&broker, limits).await;
        let entry = Arc::new(entry);
        let secret = open(&broker).await;
        let guesses: Vec<_> = (0..10)
            .map(|i| {
                let (entry, body) = (entry.clone(), login(&secret, "alice", &format!("guess {i:04}")));
                tokio::spawn(async move { entry.submit(IP, &body).await.0 })
            })
            .collect();
        let mut statuses = Vec::new();
        for guess in guesses {
            let status = tokio::time::timeout(Duration::from_secs(30), guess)
                .await
                .expect("a guess is answered within 30 s")
                .unwrap();
            statuses.push(status);
        }
        let checked = statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!((checked, refused), (3, 7), "{statuses:?}");
    }

    #[tokio::test]
    async fn a_pairing_link_pairs_once_for_its_user() {
        let broker = InMemoryPinBroker::default();
        let (entry, links) = with_accounts(&broker, PinLimits::default()).await;
        let link = links.issue("bob".parse().unwrap(), Duration::from_secs(900));
        let body = |secret: Option<&PairSecret>, token: &str| {
            let mut body = serde_json::json!({"pin": "1234", "link": token, "user": "alice"});
            if let Some(secret) = secret {
                body["secret"] = secret.as_str().into();
            }
            body.to_string().into_bytes()
        };
        // No pairing waiting yet: the link stays usable.
        let (status, text) = entry.submit(IP, &body(None, &link.token)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{text}");
        // Without a secret, the one pairing waiting; the link's user owns it, not the form's.
        let secret = open(&broker).await;
        assert_eq!(entry.submit(IP, &body(None, &link.token)).await.0, StatusCode::OK);
        let got = broker.wait(&secret, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.user.unwrap().as_str(), "bob");
        // While that pairing runs, nobody else may use the link.
        let again = open(&broker).await;
        let (status, text) = entry.submit(IP, &body(Some(&again), &link.token)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(text.contains("right now"), "{text}");
        // It failed (a mistyped PIN): the link works again.
        entry.pairing_finished(&secret, false);
        assert_eq!(
            entry.submit(IP, &body(Some(&again), &link.token)).await.0,
            StatusCode::OK
        );
        // It paired: used up.
        entry.pairing_finished(&again, true);
        let again = open(&broker).await;
        let (status, text) = entry.submit(IP, &body(Some(&again), &link.token)).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(text.contains("already used"), "{text}");
        // Expired, unknown.
        let expired = links.issue("bob".parse().unwrap(), Duration::ZERO);
        let (status, text) = entry.submit(IP, &body(Some(&again), &expired.token)).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(text.contains("expired"), "{text}");
        let (status, text) = entry.submit(IP, &body(Some(&again), "made-up")).await;
        assert_eq!((status, text.as_str()), (StatusCode::UNAUTHORIZED, UNKNOWN_LINK));
        // Issued for a user deleted since.
        let carol = links.issue("carol".parse().unwrap(), Duration::from_secs(900));
        let (status, text) = entry.submit(IP, &body(Some(&again), &carol.token)).await;
        assert_eq!((status, text.as_str()), (StatusCode::GONE, LINK_USER_GONE));
        assert_eq!(broker.pending().await.unwrap().len(), 1, "still waiting");
    }

    #[tokio::test]
    async fn a_link_is_given_back_when_its_pin_cannot_be_delivered() {
        let broker = InMemoryPinBroker::default();
        let (entry, links) = with_accounts(&broker, PinLimits::default()).await;
        let link = links.issue("bob".parse().unwrap(), Duration::from_secs(900));
        let gone = PairSecret::generate();
        let body = serde_json::json!({"pin": "1234", "link": link.token, "secret": gone.as_str()});
        assert_eq!(
            entry.submit(IP, body.to_string().as_bytes()).await.0,
            StatusCode::BAD_REQUEST
        );
        assert!(links.check(&link.token).is_ok());
    }

    #[tokio::test]
    async fn a_trusted_proxy_still_wins_and_proxies_without_identity_may_log_in() {
        let broker = InMemoryPinBroker::default();
        let (entry, _) = with_accounts(&broker, PinLimits::default()).await;
        let entry = entry.with_trusted_proxies(TrustedProxies {
            networks: vec!["10.0.0.0/8".parse().unwrap()],
            allow_unauthenticated: false,
        });
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let secret = open(&broker).await;
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-user", "carol".parse().unwrap());
        let who = entry.attribute(proxy, &headers).unwrap();
        let (status, _) = entry
            .submit_as(proxy, who, &login(&secret, "alice", "wrong password"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            broker
                .wait(&secret, Duration::from_secs(1))
                .await
                .unwrap()
                .user
                .unwrap()
                .as_str(),
            "carol"
        );
        // Without the proxy: a password will do, nothing else.
        let secret = open(&broker).await;
        let who = entry.attribute(IP, &HeaderMap::new()).unwrap();
        assert_eq!(who, Attribution::LoginRequired);
        let (status, _) = entry
            .submit_as(IP, who.clone(), &json("1234", secret.as_str()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = entry
            .submit_as(IP, who, &login(&secret, "alice", "alice's password"))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    fn cookie(token: &LoginToken) -> HeaderMap {
        cookie_value(token.value())
    }

    #[tokio::test]
    async fn a_single_sign_on_login_owns_one_pairing() {
        let broker = InMemoryPinBroker::default();
        let oidc = Arc::new(
            OidcLogin::new(crate::oidc::OidcConfig {
                issuer: "https://id.example.com".into(),
                client_id: "direwolf".into(),
                client_secret: None,
                redirect_url: None,
                user_claim: crate::oidc::DEFAULT_USER_CLAIM.into(),
            })
            .unwrap(),
        );
        let entry = PinEntry::new(Arc::new(broker.clone()), PinLimits::default()).with_oidc(oidc.clone());
        let secret = open(&broker).await;
        // Without login: refused, still waiting.
        let who = entry.attribute(IP, &HeaderMap::new()).unwrap();
        let (status, text) = entry.submit_as(IP, who, &json("1234", secret.as_str())).await;
        assert_eq!((status, text.as_str()), (StatusCode::UNAUTHORIZED, SSO_REQUIRED));
        // A cookie nobody issued is no login.
        assert_eq!(
            entry.attribute(IP, &cookie_value("made-up")).unwrap(),
            Attribution::Open
        );
        // Ada's login: her pairing, whatever the form says.
        let token = oidc.log_in_for_test("ada".parse().unwrap());
        let who = entry.attribute(IP, &cookie(&token)).unwrap();
        assert_eq!(who, Attribution::SingleSignOn(token.clone()));
        let body = serde_json::json!({"pin": "1234", "secret": secret.as_str(), "user": "mallory"});
        let (status, _) = entry
            .submit_as(IP, who.clone(), body.to_string().as_bytes())
            .await;
        assert_eq!(status, StatusCode::OK);
        let got = broker.wait(&secret, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.user.unwrap().as_str(), "ada");
        // Used up: the same login again is refused, and the stale cookie no longer counts.
        let again = open(&broker).await;
        let (status, text) = entry.submit_as(IP, who, &json("1234", again.as_str())).await;
        assert_eq!((status, text.as_str()), (StatusCode::UNAUTHORIZED, SSO_EXPIRED));
        assert_eq!(entry.attribute(IP, &cookie(&token)).unwrap(), Attribution::Open);
        // A login whose PIN cannot be delivered is given back.
        let token = oidc.log_in_for_test("ada".parse().unwrap());
        let who = entry.attribute(IP, &cookie(&token)).unwrap();
        let gone = PairSecret::generate();
        let (status, _) = entry.submit_as(IP, who, &json("1234", gone.as_str())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(oidc.user_of(&token).is_some(), "the login was given back");
        // With local accounts too, the refusal names both logins.
        let stores = direwolf_core::Stores::in_memory();
        let mut alice = direwolf_core::User::new("alice".parse().unwrap());
        alice.password = Some(PasswordHash::new("alice's password").unwrap());
        stores.users.put(alice).await.unwrap();
        let both = PinEntry::new(Arc::new(broker.clone()), PinLimits::default())
            .with_oidc(oidc.clone())
            .with_local_accounts(LocalAccounts {
                users: stores.users.clone(),
                links: PairingLinks::default(),
            });
        let (status, text) = both.submit(IP, &json("1234", again.as_str())).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::UNAUTHORIZED, ANY_LOGIN_REQUIRED)
        );
        let (status, _) = both.submit(IP, &login(&again, "alice", "alice's password")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a password still works beside single sign-on"
        );
        let again = open(&broker).await;
        // Unauthenticated PINs may be allowed.
        let allowed = PinEntry::new(Arc::new(broker.clone()), PinLimits::default())
            .with_trusted_proxies(TrustedProxies {
                networks: vec![],
                allow_unauthenticated: true,
            })
            .with_oidc(oidc);
        assert_eq!(
            allowed.submit(IP, &json("1234", again.as_str())).await.0,
            StatusCode::OK
        );
    }

    fn cookie_value(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("{}={value}", crate::oidc::COOKIE_NAME).parse().unwrap(),
        );
        headers
    }

    #[test]
    fn page_posts_json_from_the_fragment() {
        assert!(PIN_PAGE.contains("location.hash"));
        assert!(PIN_PAGE.contains("application/json"));
        assert_eq!(PIN_PAGE.matches("class=\"digit\"").count(), 4);
        assert!(PIN_PAGE.contains("type=\"password\""));
        assert!(PIN_PAGE.contains("get(\"link\")"));
        // The single sign-on link only where it is configured.
        assert!(PIN_PAGE.contains(r#"data-sso="off""#));
        assert!(page(true, Notice::None).contains(r#"data-sso="on""#));
        assert!(page(true, Notice::None).contains("/pin/oidc/login"));
    }
}
