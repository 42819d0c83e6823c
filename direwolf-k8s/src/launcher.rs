//! [`KubeLauncher`]: launch, resume and cancel as `Session` objects
//! (`docs/protocol/kubernetes.md` § Launch, resume and cancel).
//!
//! The proxy does not start streams itself: it records what the client asked for in a `Session`
//! and the operator provisions it and publishes `status.streamURL`. Every replica of the proxy
//! runs its own launcher; they share nothing but the API server.
//!
//! * **launch**: resolve the App by `spec.id`, delete the user's Sessions (one stream per user),
//!   create a Session named `<user>-<app>-<5 random characters>` with the labels and annotation
//!   of `docs/protocol/kubernetes.md` § Names, labels and annotations, and wait for
//!   `status.streamURL` with [`await_condition`] inside an overall timeout (default
//!   [`DEFAULT_LAUNCH_TIMEOUT`], below the ~55 s the slowest client waits). A Session that does
//!   not start in time is deleted and the client gets [`LaunchError::Timeout`].
//! * **resume**: read the Session fresh, write the new keys into its keys Secret at the next
//!   revision, then merge-patch its client address, pairing and `spec.keysRevision`, conditional
//!   on the version read; wait until the agent reports that revision registered with Wolf
//!   (`status.keysRevision`) and for the stream URL.
//! * **cancel**: delete the user's Sessions and wait (bounded) until the watch shows none of them
//!   running, so the `/serverinfo` that clients send next reports the server free.
//! * **current_app**: answered from the Session cache, never an API call.
//!
//! The launcher reads the Session and App watches of a shared [`Watches`] set. What it writes
//! (the Session it created, the re-keyed one, the one whose stream URL it saw, a deletion) goes
//! into the set's write-through overlay of Sessions, so `current_app` answers from it at once,
//! before the watch delivers it: the `/serverinfo` a client sends right after `/launch` sees
//! the server busy.
//!
//! The name is generated here rather than with `metadata.generateName` so that a create retried
//! after a lost answer is idempotent (the retry meets its own object instead of starting a second
//! stream); it has the same shape as a generated one.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use direwolf_core::launcher::{UserLocks, detached};
use direwolf_core::{
    AppId, LaunchError, LaunchOutcome, LaunchRequest, Launcher, PairSecret, ResumeRequest, SessionId,
    StreamKeys, UserName,
};
use futures::future::BoxFuture;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tracing::{Instrument as _, debug, info, warn};

use crate::crd::{self, annotations, labels};
use crate::retry::{RetryPolicy, has_status, is_transient};
use crate::watch::Watches;
use crate::watch::cache::Cache;
use crate::watch::reflector::Reflector;

/// How long a launch or resume waits for the stream URL by default: below the ~55 s within
/// which `/launch` must answer for the most impatient client (`docs/protocol/moonlight-http.md`
/// § Client timeouts).
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(45);

/// How long a cancel waits by default for the watch to stop showing the user's Sessions
/// (clients give up on `/cancel` after 30 s).
pub const DEFAULT_CANCEL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a Session deleted by this process is hidden from [`Launcher::current_app`] while the
/// watch has not delivered the deletion.
/// How much longer than the launch timeout a launch is waited for, so that its own timeout
/// answer (after deleting the Session that did not start) reaches the client.
const DETACHED_GRACE: Duration = Duration::from_secs(5);

const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// The longest a Session name may be: `SessionId` is a DNS-1123 label.
const MAX_NAME: usize = 63;

/// Settings of a [`KubeLauncher`].
#[derive(Debug, Clone, Copy)]
pub struct LauncherConfig {
    /// Upper bound of one launch or resume, from the request to the stream URL.
    pub launch_timeout: Duration,
    /// Upper bound of the wait at the end of a cancel.
    pub cancel_timeout: Duration,
    /// How transient API failures ([`is_transient`]) are retried.
    pub retry: RetryPolicy,
}

impl Default for LauncherConfig {
    fn default() -> Self {
        LauncherConfig {
            launch_timeout: DEFAULT_LAUNCH_TIMEOUT,
            cancel_timeout: DEFAULT_CANCEL_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

struct Inner {
    namespace: String,
    sessions_api: Api<crd::Session>,
    /// The Sessions' keys Secrets (`crate::keys`).
    secrets_api: Api<k8s_openapi::api::core::v1::Secret>,
    sessions: Arc<Cache<crd::Session>>,
    apps: Arc<Reflector<crd::App>>,
    config: LauncherConfig,
    /// Sessions this process deleted, hidden from `current_app` until the watch agrees.
    tombstones: Mutex<HashMap<String, Instant>>,
    /// One lock per user: this process runs a user's launches and resumes (with their rollback)
    /// one after the other, so a retry after a hang-up is not undone by the attempt it replaces.
    user_locks: UserLocks,
}

/// A [`Launcher`] over `Session` objects of one namespace; see the [module docs](self).
#[derive(Clone)]
pub struct KubeLauncher {
    inner: Arc<Inner>,
}

impl fmt::Debug for KubeLauncher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeLauncher")
            .field("namespace", &self.inner.namespace)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The readable 503 for an API server that did not answer `what`.
fn unavailable(what: &str) -> LaunchError {
    LaunchError::Unavailable {
        message: format!("The Kubernetes API server did not answer ({what}); try again in a moment."),
    }
}

/// A kube error as a launch error: `Unavailable` for what retrying may fix, `Backend` otherwise.
fn launch_error(what: &str, err: kube::Error) -> LaunchError {
    if is_transient(&err) {
        unavailable(what)
    } else {
        LaunchError::Backend(direwolf_core::Error::backend(
            "kubernetes",
            format!("{what}: {err}"),
        ))
    }
}

/// What a Session says about its stream, as the launcher waits for it.
fn stream_url(session: &crd::Session) -> Option<&str> {
    session.status.as_ref()?.stream_url.as_deref()
}

fn has_ended(session: &crd::Session) -> bool {
    session
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p == crd::SessionPhase::Ended)
}

/// Why a Session ended before its stream started, for the client: the message of its failed
/// condition (the operator's or the agent's), else a generic one.
fn ended_message(session: &crd::Session) -> String {
    let failed = session.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.status == "False" && !c.message.is_empty())
    });
    match failed {
        Some(c) => format!("The stream could not start: {}", c.message),
        None => "The session ended before its stream started.".to_owned(),
    }
}

/// The Session name for a user and an App object: `<user>-<app>-` (cut to fit a DNS label)
/// followed by five random lower-case characters, like a generated name.
pub fn session_name(user: &UserName, app_object: &str) -> String {
    let app: String = app_object
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut prefix = format!("{user}-{app}");
    prefix.truncate(MAX_NAME - 6);
    let prefix = prefix.trim_end_matches('-');
    let random = PairSecret::generate().as_str().to_ascii_lowercase();
    let suffix: String = random.chars().take(5).collect();
    format!("{prefix}-{suffix}")
}

/// The Session a launch creates (`docs/protocol/kubernetes.md` § Names, labels and annotations,
/// § Session): a pending session of the request, built by the one Session builder of the
/// stores.
fn session_object(
    id: &SessionId,
    request: &LaunchRequest,
    app_object: &str,
) -> Result<crd::Session, LaunchError> {
    let session = direwolf_core::Session {
        id: id.clone(),
        ..direwolf_core::Session::from_launch(request)
    };
    crate::stores::session_object(&session, app_object).map_err(|e| LaunchError::Backend(e.into()))
}

impl KubeLauncher {
    /// Starts watching the Sessions and Apps of `namespace` (watches of its own) with the
    /// default settings. Must be called inside a Tokio runtime; see [`KubeLauncher::wait_ready`].
    pub fn new(client: Client, namespace: &str) -> Self {
        Self::with_config(client, namespace, LauncherConfig::default())
    }

    /// Like [`KubeLauncher::new`] with explicit settings.
    pub fn with_config(client: Client, namespace: &str, config: LauncherConfig) -> Self {
        Self::with_watches(&Watches::new(client, namespace), config)
    }

    /// A launcher reading the Session and App watches of `watches` (starting them if no other
    /// reader has). Must be called inside a Tokio runtime.
    pub fn with_watches(watches: &Watches, config: LauncherConfig) -> Self {
        KubeLauncher {
            inner: Arc::new(Inner {
                namespace: watches.namespace().to_owned(),
                sessions: watches.sessions(),
                apps: watches.apps().reflector().clone(),
                sessions_api: watches.api(),
                secrets_api: watches.api(),
                config,
                tombstones: Mutex::new(HashMap::new()),
                user_locks: UserLocks::default(),
            }),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> LauncherConfig {
        self.inner.config
    }

    /// Whether both caches have completed their initial lists (part of `/readyz`).
    pub fn ready(&self) -> bool {
        self.inner.sessions.is_ready() && self.inner.apps.is_ready()
    }

    /// Waits up to `timeout` for both caches' initial lists.
    ///
    /// # Errors
    /// `Unavailable` if they do not sync in time (API server down, CRDs missing, no permission).
    pub async fn wait_ready(&self, timeout: Duration) -> direwolf_core::Result<()> {
        let both = async {
            self.inner.sessions.wait_ready(timeout).await?;
            self.inner.apps.wait_ready(timeout).await
        };
        match tokio::time::timeout(timeout, both).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(direwolf_core::Error::unavailable(format!(
                "the Session and App caches did not sync within {timeout:?}"
            ))),
        }
    }

    fn belongs_to(session: &crd::Session, user: &UserName) -> bool {
        session.spec.user_reference.name == user.as_str()
            || session
                .labels()
                .get(labels::USER)
                .is_some_and(|u| u == user.as_str())
    }

    /// The user's Sessions the cache shows running (not deleted, not being deleted, not ended),
    /// newest first.
    fn running(&self, user: &UserName) -> Vec<Arc<crd::Session>> {
        let mut tombstones = self.inner.tombstones.lock();
        tombstones.retain(|_, at| at.elapsed() < TOMBSTONE_TTL);
        let mut found: Vec<Arc<crd::Session>> = self
            .inner
            .sessions
            .list()
            .into_iter()
            .filter(|s| Self::belongs_to(s, user))
            .filter(|s| s.metadata.deletion_timestamp.is_none() && !has_ended(s))
            .filter(|s| !tombstones.contains_key(&s.name_any()))
            .collect();
        found.sort_by_key(|s| std::cmp::Reverse(s.creation_timestamp()));
        found
    }

    /// The App object carrying `id`, from the cache. Objects sharing an id are ambiguous and
    /// count as unknown, as in the app list.
    fn app_object(&self, id: AppId) -> Option<String> {
        let matching: Vec<Arc<crd::App>> = self
            .inner
            .apps
            .state()
            .into_iter()
            .filter(|a| i64::from(a.spec.id) == i64::from(id.get()))
            .collect();
        match matching.as_slice() {
            [one] => Some(one.name_any()),
            _ => None,
        }
    }

    fn app_id_of(&self, session: &crd::Session) -> Option<AppId> {
        if let Some(id) = session.spec.game_reference.app_id {
            return u32::try_from(id).ok().and_then(|n| AppId::new(n).ok());
        }
        let name = &session.spec.game_reference.name;
        self.inner
            .apps
            .state()
            .into_iter()
            .find(|a| &a.name_any() == name)
            .and_then(|a| u32::try_from(a.spec.id).ok())
            .and_then(|n| AppId::new(n).ok())
    }

    /// The names of the user's Sessions: those the cache shows plus those the API server lists
    /// by label (a Session another replica created may not have reached this cache yet).
    async fn user_sessions(&self, user: &UserName) -> Result<Vec<String>, LaunchError> {
        let selector = format!("{}={}", labels::USER, user);
        let params = ListParams::default().labels(&selector);
        let listed = self
            .inner
            .config
            .retry
            .run("list sessions", || self.inner.sessions_api.list(&params))
            .await
            .map_err(|e| launch_error("listing the user's sessions", e))?;
        let mut names: Vec<String> = listed.items.iter().map(ResourceExt::name_any).collect();
        names.extend(
            self.inner
                .sessions
                .list()
                .iter()
                .filter(|s| Self::belongs_to(s, user))
                .map(|s| s.name_any()),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Deletes one Session (already gone is fine) and hides it from `current_app`.
    async fn delete_session(&self, name: &str) -> Result<(), LaunchError> {
        let params = DeleteParams::background();
        let known = self.inner.sessions.get(name).and_then(|s| s.resource_version());
        let deleted = self
            .inner
            .config
            .retry
            .run("delete session", || self.inner.sessions_api.delete(name, &params))
            .await;
        match deleted {
            Ok(_) => {}
            Err(e) if has_status(&e, 404) => {}
            Err(e) => return Err(launch_error("deleting a session", e)),
        }
        self.inner.sessions.deleted(name, known);
        self.inner
            .tombstones
            .lock()
            .insert(name.to_owned(), Instant::now());
        debug!(session = name, "session deleted");
        Ok(())
    }

    async fn delete_all(&self, user: &UserName) -> Result<Vec<String>, LaunchError> {
        let names = self.user_sessions(user).await?;
        for name in &names {
            self.delete_session(name).await?;
        }
        Ok(names)
    }

    /// Creates `object` (see [`create_session`](crate::stores::create_session): a retried create
    /// that meets its own earlier attempt counts as success).
    async fn create(&self, object: &crd::Session) -> Result<crd::Session, LaunchError> {
        let created =
            crate::stores::create_session(&self.inner.sessions_api, &self.inner.config.retry, object);
        match created.await {
            Ok(written) => {
                self.inner.sessions.wrote(written.clone());
                Ok(written)
            }
            Err(direwolf_core::Error::AlreadyExists { .. }) => Err(LaunchError::Unavailable {
                message: "Another session with the same generated name exists; try again.".to_owned(),
            }),
            Err(direwolf_core::Error::Unavailable { .. }) => Err(unavailable("creating the session")),
            Err(err) => Err(LaunchError::Backend(err)),
        }
    }

    /// Applies the keys Secret of `session` (`crate::keys`), which its agent reads.
    async fn write_keys(&self, session: &crd::Session, keys: &StreamKeys) -> Result<(), LaunchError> {
        crate::keys::apply_keys(&self.inner.secrets_api, &self.inner.config.retry, session, keys)
            .await
            .map(drop)
            .map_err(|e| launch_error("writing the session's keys", e))
    }

    /// Waits until Session `name` has a stream URL (and, if `revision` is given, its agent has
    /// registered the stream with keys of at least that revision), until `deadline`. A failing
    /// watch is retried with backoff until the deadline.
    async fn wait_for_url(
        &self,
        name: &str,
        revision: Option<i64>,
        deadline: tokio::time::Instant,
    ) -> Result<String, LaunchError> {
        let keyed = move |s: &crd::Session| {
            let registered = s.status.as_ref().and_then(|st| st.keys_revision).unwrap_or(0);
            revision.is_none_or(|wanted| registered >= wanted)
        };
        let condition = move |o: Option<&crd::Session>| match o {
            None => true,
            Some(s) => has_ended(s) || (stream_url(s).is_some() && keyed(s)),
        };
        let mut delay = self.inner.config.retry.initial_delay;
        loop {
            let waited = tokio::time::timeout_at(
                deadline,
                await_condition(self.inner.sessions_api.clone(), name, condition),
            )
            .await;
            match waited {
                Err(_elapsed) => return Err(LaunchError::Timeout),
                Ok(Ok(None)) => {
                    return Err(LaunchError::Unavailable {
                        message: "The session was removed before its stream started.".to_owned(),
                    });
                }
                Ok(Ok(Some(session))) => {
                    if has_ended(&session) {
                        return Err(LaunchError::Unavailable {
                            message: ended_message(&session),
                        });
                    }
                    if let Some(url) = stream_url(&session).map(str::to_owned) {
                        self.inner.sessions.wrote(session);
                        return Ok(url);
                    }
                }
                Ok(Err(err)) => {
                    warn!(session = name, error = %err, "watching the session failed; retrying");
                    if tokio::time::Instant::now() + delay >= deadline {
                        return Err(LaunchError::Timeout);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.inner.config.retry.max_delay);
                }
            }
        }
    }

    /// Waits until the watch (not this process's overlay) shows none of `names` running, at
    /// most `timeout`.
    async fn wait_gone(&self, names: &[String], timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let showing = names.iter().any(|name| {
                self.inner
                    .sessions
                    .reflector()
                    .get(name)
                    .is_some_and(|s| s.metadata.deletion_timestamp.is_none())
            });
            if !showing {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn session_id(name: &str) -> Result<SessionId, LaunchError> {
        name.parse().map_err(LaunchError::Backend)
    }
}

impl KubeLauncher {
    /// Runs a launch or resume (`work`) of `user` with [`detached`], under the user's lock: to
    /// its end even if the client hangs up, and, when nobody takes its outcome any more, rolled
    /// back by deleting the Session it started or re-keyed (no stream runs for nobody) before the
    /// user's next launch runs. `work` ends at the launch timeout itself, deleting a Session
    /// that did not start; the grace lets that answer through.
    async fn detached(
        &self,
        user: &UserName,
        work: impl Future<Output = Result<LaunchOutcome, LaunchError>> + Send + 'static,
    ) -> Result<LaunchOutcome, LaunchError> {
        let user_lock = self.inner.user_locks.of(user);
        let this = self.clone();
        let rollback = move |outcome: LaunchOutcome| -> BoxFuture<'static, ()> {
            Box::pin(async move {
                if let Err(error) = this.delete_session(outcome.session.as_str()).await {
                    warn!(session = %outcome.session, %error, "could not roll back an abandoned launch");
                }
            })
        };
        let deadline = self.inner.config.launch_timeout + DETACHED_GRACE;
        detached(deadline, user_lock, work, rollback).await
    }

    async fn launch_now(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.launch_timeout;
        let ready = tokio::time::timeout_at(deadline, self.wait_ready(self.inner.config.launch_timeout));
        match ready.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(LaunchError::Backend(e)),
            Err(_) => return Err(LaunchError::Timeout),
        }
        let app_object = self
            .app_object(request.app)
            .ok_or(LaunchError::UnknownApp(request.app))?;
        let replaced = self.delete_all(&request.user).await?;
        if !replaced.is_empty() {
            info!(user = %request.user, sessions = ?replaced, "replacing the user's sessions");
        }
        let name = session_name(&request.user, &app_object);
        let span = tracing::info_span!("session", session = %name);
        self.start_session(name, request, app_object, deadline)
            .instrument(span)
            .await
    }

    /// Creates Session `name` with its keys and waits for its stream URL; deletes it again if it
    /// does not start.
    async fn start_session(
        &self,
        name: String,
        request: LaunchRequest,
        app_object: String,
        deadline: tokio::time::Instant,
    ) -> Result<LaunchOutcome, LaunchError> {
        let id = Self::session_id(&name)?;
        let object = session_object(&id, &request, &app_object)?;
        let created = self.create(&object).await?;
        let started = match self.write_keys(&created, &request.keys).await {
            Ok(()) => {
                info!(user = %request.user, app = %request.app, "session created; waiting for its stream");
                self.wait_for_url(&name, None, deadline).await
            }
            Err(err) => Err(err),
        };
        match started {
            Ok(session_url) => {
                info!(url = %session_url, "stream ready");
                Ok(LaunchOutcome {
                    session: id,
                    session_url,
                })
            }
            Err(err) => {
                // Nothing is left behind for a launch the client was told failed.
                if let Err(cleanup) = self.delete_session(&name).await {
                    warn!(error = %cleanup, "could not delete a session that did not start");
                }
                warn!(error = %err, "the session did not start");
                Err(err)
            }
        }
    }

    async fn resume_now(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.launch_timeout;
        let name = self.session_to_resume(&request.user).await?;
        let mut attempts = 0;
        let (patched, revision) = loop {
            match self.rekey(&name, &request).await {
                Err(RekeyError::Conflict) if attempts < REKEY_ATTEMPTS => attempts += 1,
                Err(RekeyError::Conflict) => {
                    return Err(LaunchError::Unavailable {
                        message: "The session kept changing while it was resumed; try again.".to_owned(),
                    });
                }
                Err(RekeyError::Launch(e)) => return Err(e),
                Ok(done) => break done,
            }
        };
        self.inner.sessions.wrote(patched);
        info!(session = %name, user = %request.user, revision, "session re-keyed; waiting for its stream");
        let session_url = self.wait_for_url(&name, Some(revision), deadline).await?;
        Ok(LaunchOutcome {
            session: Self::session_id(&name)?,
            session_url,
        })
    }

    /// The user's running Session, from the cache, else listed (it may have been launched
    /// through another replica whose Session this cache has not seen yet).
    async fn session_to_resume(&self, user: &UserName) -> Result<String, LaunchError> {
        if let Some(session) = self.running(user).first() {
            return Ok(session.name_any());
        }
        let names = self.user_sessions(user).await?;
        let tombstones = self.inner.tombstones.lock();
        names
            .into_iter()
            .find(|n| !tombstones.contains_key(n))
            .ok_or(LaunchError::NotRunning)
    }

    /// One re-keying of Session `name`, read fresh from the API server: the keys Secret at the
    /// next revision, then the Session's client, pairing and `keysRevision`, conditional on the
    /// version read (a concurrent change is a [`RekeyError::Conflict`]). Returns the patched
    /// Session and the revision.
    async fn rekey(&self, name: &str, request: &ResumeRequest) -> Result<(crd::Session, i64), RekeyError> {
        let retry = &self.inner.config.retry;
        let api = &self.inner.sessions_api;
        let current = retry
            .run("get session", || api.get_opt(name))
            .await
            .map_err(|e| launch_error("reading the session", e))?
            .filter(|s| s.metadata.deletion_timestamp.is_none() && !has_ended(s))
            .ok_or(LaunchError::NotRunning)?;
        let revision = current.spec.keys_revision.unwrap_or(0) + 1;
        let mut keyed = current.clone();
        keyed.spec.keys_revision = Some(revision);
        self.write_keys(&keyed, &request.keys).await?;
        let mut config = json!({ "clientIP": request.client_ip.to_string() });
        if let Some(flags) = request.surround_audio_info {
            config["surroundAudioFlags"] = json!(flags);
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": current.resource_version(),
                "annotations": { annotations::PAIRING: request.pairing.to_string() },
            },
            "spec": {
                "pairingReference": { "name": request.pairing.to_string() },
                "config": config,
                "keysRevision": revision,
            }
        });
        let params = PatchParams::default();
        let merge = Patch::Merge(&patch);
        match retry
            .run("patch session", || api.patch(name, &params, &merge))
            .await
        {
            Ok(patched) => Ok((patched, revision)),
            Err(e) if has_status(&e, 409) => Err(RekeyError::Conflict),
            Err(e) if has_status(&e, 404) => Err(LaunchError::NotRunning.into()),
            Err(e) => Err(launch_error("re-keying the session", e).into()),
        }
    }
}

/// How often a resume re-reads a Session that changed under it before giving up.
const REKEY_ATTEMPTS: u32 = 3;

/// Why one re-keying attempt failed.
enum RekeyError {
    /// The Session changed between the read and the patch.
    Conflict,
    /// Anything else, as the client is told.
    Launch(LaunchError),
}

impl From<LaunchError> for RekeyError {
    fn from(e: LaunchError) -> Self {
        RekeyError::Launch(e)
    }
}

#[async_trait]
impl Launcher for KubeLauncher {
    async fn launch(&self, request: LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let (this, user) = (self.clone(), request.user.clone());
        self.detached(&user, async move { this.launch_now(request).await })
            .await
    }

    async fn resume(&self, request: ResumeRequest) -> Result<LaunchOutcome, LaunchError> {
        let (this, user) = (self.clone(), request.user.clone());
        self.detached(&user, async move { this.resume_now(request).await })
            .await
    }

    async fn cancel(&self, user: &UserName) -> Result<(), LaunchError> {
        let names = self.delete_all(user).await?;
        if names.is_empty() {
            return Ok(());
        }
        info!(user = %user, sessions = ?names, "sessions deleted");
        if !self.wait_gone(&names, self.inner.config.cancel_timeout).await {
            // This replica already hides them (tombstones); other replicas will see the watch.
            warn!(user = %user, "the watch has not delivered the deletion yet");
        }
        Ok(())
    }

    async fn current_app(&self, user: &UserName) -> Option<AppId> {
        self.running(user).first().and_then(|s| self.app_id_of(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use direwolf_core::{AesKey, Fingerprint, RiKeyId, StreamKeys, VideoMode};

    fn request() -> LaunchRequest {
        LaunchRequest {
            user: "alice".parse().unwrap(),
            pairing: Fingerprint::of_der(b"cert"),
            app: AppId::new(2).unwrap(),
            client_ip: "192.0.2.7".parse().unwrap(),
            server_ip: "192.0.2.1".parse().unwrap(),
            mode: VideoMode {
                width: 2560,
                height: 1440,
                fps: 120,
            },
            surround_audio_info: 393_222,
            keys: StreamKeys {
                aes_key: "773448F67992470C5C62848D361E1025".parse::<AesKey>().unwrap(),
                aes_iv: "-123456789".parse::<RiKeyId>().unwrap(),
            },
            hdr: false,
            host_audio: false,
            gamepads: 1,
        }
    }

    #[test]
    fn an_ended_session_tells_the_client_why() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let id: SessionId = "alice-firefox-x7k2p".parse().unwrap();
        let mut session = session_object(&id, &request(), "firefox").unwrap();
        assert_eq!(
            ended_message(&session),
            "The session ended before its stream started."
        );
        session.status = Some(crd::SessionStatus {
            phase: Some(crd::SessionPhase::Ended),
            conditions: vec![Condition {
                type_: "DeploymentCreated".into(),
                status: "False".into(),
                reason: "Unschedulable".into(),
                message: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.".into(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..crd::SessionStatus::default()
        });
        assert_eq!(
            ended_message(&session),
            "The stream could not start: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
        );
    }

    #[test]
    fn names_are_dns_labels_with_the_reference_prefix() {
        let user: UserName = "alice".parse().unwrap();
        let name = session_name(&user, "firefox");
        assert!(name.starts_with("alice-firefox-"), "{name}");
        assert_eq!(name.len(), "alice-firefox-".len() + 5);
        assert!(name.parse::<SessionId>().is_ok());
        assert_ne!(session_name(&user, "firefox"), name, "names are random");
        let long = session_name(&user, &format!("{}.example", "x".repeat(200)));
        assert!(
            long.len() <= MAX_NAME && long.parse::<SessionId>().is_ok(),
            "{long}"
        );
    }

    #[test]
    fn session_object_carries_the_request_but_not_its_keys() {
        let id: SessionId = "alice-firefox-abcde".parse().unwrap();
        let object = session_object(&id, &request(), "firefox").unwrap();
        let spec = serde_json::to_value(&object.spec).unwrap();
        assert_eq!(
            spec,
            json!({
                "userReference": {"name": "alice"},
                "gameReference": {"name": "firefox", "appID": 2},
                "pairingReference": {"name": Fingerprint::of_der(b"cert").to_string()},
                "config": {
                    "clientIP": "192.0.2.7",
                    "videoWidth": 2560, "videoHeight": 1440, "videoRefreshRate": 120,
                    "surroundAudioFlags": 393222
                }
            })
        );
        assert_eq!(object.labels().get(labels::USER).unwrap(), "alice");
        assert_eq!(object.labels().get(labels::APP_NAME).unwrap(), "firefox");
        assert_eq!(object.labels().get(labels::SESSION).unwrap(), "true");
        assert_eq!(
            object.annotations().get(annotations::PAIRING).unwrap(),
            Fingerprint::of_der(b"cert").as_str()
        );
    }
}
