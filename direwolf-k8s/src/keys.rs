//! The keys Secret of a Session: the stream's AES key and IV, which only the proxy, the operator
//! and that Session's agent may read (`stream::keys_secret_name`, keys `aesKey` and `aesIV`).
//!
//! The proxy applies it right after it creates the Session, owned by the Session, so it goes
//! with it. A resume writes the new keys with the next revision ([`KEYS_REVISION`], the
//! Session's `spec.keysRevision`) before it raises the Session's, so an agent that sees the
//! Session's revision finds keys at least that new. Anyone allowed to read Sessions cannot see the keys this way; the agent's
//! account may read only its own Secret.

use std::collections::BTreeMap;

use direwolf_core::StreamKeys;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use crate::crd::{self, field_managers, labels};
use crate::retry::RetryPolicy;
use crate::stream::{KEYS_AES_IV, KEYS_AES_KEY, KEYS_REVISION, SESSION_LABEL, keys_secret_name};

/// The keys Secret of `session`, owned by it (not blocking its deletion), at the Session's
/// `spec.keysRevision`.
///
/// # Panics
/// Never for a Session read from the API server (it has a name and uid).
pub fn keys_secret(session: &crd::Session, keys: &StreamKeys) -> Secret {
    let name = session.name_any();
    let owner = OwnerReference {
        api_version: crd::Session::api_version(&()).into_owned(),
        kind: crd::Session::kind(&()).into_owned(),
        name: name.clone(),
        uid: session.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(false),
    };
    let data = BTreeMap::from([
        (
            KEYS_AES_KEY.to_owned(),
            ByteString(keys.aes_key.to_hex().into_bytes()),
        ),
        (
            KEYS_AES_IV.to_owned(),
            ByteString(keys.aes_iv.signed().to_string().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(keys_secret_name(&name)),
            namespace: session.namespace(),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.to_owned(), labels::DIREWOLF.to_owned()),
                (SESSION_LABEL.to_owned(), name),
            ])),
            annotations: Some(BTreeMap::from([(
                KEYS_REVISION.to_owned(),
                session.spec.keys_revision.unwrap_or(0).to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Applies the keys Secret of `session` (server-side apply, retried while transient).
///
/// # Errors
/// The API server's refusal, or the last transient error.
pub async fn apply_keys(
    api: &Api<Secret>,
    retry: &RetryPolicy,
    session: &crd::Session,
    keys: &StreamKeys,
) -> Result<Secret, kube::Error> {
    let secret = keys_secret(session, keys);
    let name = secret.name_any();
    let params = PatchParams::apply(field_managers::PROXY_SESSION_KEYS).force();
    let apply = Patch::Apply(&secret);
    retry
        .run("apply session keys", || api.patch(&name, &params, &apply))
        .await
}

/// The keys of a keys Secret, checked.
///
/// # Errors
/// A readable message naming the missing or malformed key (never its value).
pub fn stream_keys(secret: &Secret) -> Result<StreamKeys, String> {
    let (key, iv) = read_keys(secret).ok_or_else(|| format!("{KEYS_AES_KEY} or {KEYS_AES_IV} is missing"))?;
    Ok(StreamKeys {
        aes_key: key.parse().map_err(|e| format!("{KEYS_AES_KEY}: {e}"))?,
        aes_iv: iv.parse().map_err(|e| format!("{KEYS_AES_IV}: {e}"))?,
    })
}

/// The revision of a keys Secret's keys (absent or unreadable: 0).
pub fn keys_revision(secret: &Secret) -> i64 {
    secret
        .annotations()
        .get(KEYS_REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The keys in a keys Secret, as the agent reads them: `(aesKey, aesIV)`.
pub fn read_keys(secret: &Secret) -> Option<(String, String)> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    Some((text(KEYS_AES_KEY)?, text(KEYS_AES_IV)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> crd::Session {
        let mut s = crd::Session::example("alice-desktop-x7k2p");
        s.metadata.namespace = Some("games".into());
        s.metadata.uid = Some("uid-1".into());
        s
    }

    #[test]
    fn the_secret_is_named_labelled_and_owned_by_the_session() {
        let keys = StreamKeys {
            aes_key: "773448F67992470C5C62848D361E1025".parse().unwrap(),
            aes_iv: "-123456789".parse().unwrap(),
        };
        let secret = keys_secret(&session(), &keys);
        assert_eq!(secret.name_any(), "alice-desktop-x7k2p-keys");
        assert_eq!(secret.namespace().as_deref(), Some("games"));
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Session", "uid-1"));
        assert_eq!(owner.controller, Some(true));
        assert_eq!(
            read_keys(&secret),
            Some(("773448F67992470C5C62848D361E1025".into(), "-123456789".into()))
        );
        assert_eq!(keys_revision(&secret), 0, "a launch's keys");
        let mut resumed = session();
        resumed.spec.keys_revision = Some(3);
        assert_eq!(keys_revision(&keys_secret(&resumed, &keys)), 3);
    }
}
