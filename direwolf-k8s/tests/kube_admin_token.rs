//! The admin API's token Secret (`direwolf_k8s::admin_token`) against the in-process API-server
//! emulator: made once and then read, the same token for replicas racing to make it, a create
//! that loses the race to another replica, and a hand-edited Secret without a token.
#![cfg(feature = "emulator")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use direwolf_k8s::admin_token::{AdminTokenError, TOKEN_KEY, load_or_create};
use direwolf_k8s::emulator::FaultRule;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

const WAIT: Duration = Duration::from_secs(20);
const NAME: &str = "direwolf-admin-token";

fn token(n: u8) -> String {
    format!("{n:02}").repeat(32)
}

#[tokio::test]
async fn the_first_replica_makes_the_token_and_every_replica_reads_it() {
    let emulator = support::emulator(WAIT, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(emulator.client(), "default");
    let first = support::within(WAIT, "create", load_or_create(&secrets, NAME, || token(1)))
        .await
        .expect("a token");
    assert_eq!(first, token(1));
    let again = support::within(WAIT, "read", load_or_create(&secrets, NAME, || token(2)))
        .await
        .expect("the stored token");
    assert_eq!(again, token(1), "a second replica reads the first one's token");

    // Replicas racing on an empty namespace agree on one token.
    secrets
        .delete(NAME, &Default::default())
        .await
        .expect("delete the Secret");
    let racing = (3..9).map(|n| load_or_create(&secrets, NAME, move || token(n)));
    let tokens = support::within(WAIT, "race", futures::future::join_all(racing)).await;
    let tokens: Vec<String> = tokens.into_iter().map(|t| t.expect("a token")).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_create_lost_to_another_replica_reads_that_replicas_token() {
    let emulator = support::emulator(WAIT, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(emulator.client(), "default");
    // The other replica's create lands between this one's read and create: the API server
    // answers 409 once, and the token is the stored one.
    let other = Secret {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(token(7).into_bytes()),
        )])),
        ..Secret::default()
    };
    emulator.inject(
        FaultRule::status(409)
            .with_verb("create")
            .with_path_prefix("/api/v1/namespaces/default/secrets")
            .times(1),
    );
    let racing = async {
        let mine = load_or_create(&secrets, NAME, || token(1));
        let theirs = async {
            // Once this replica's create was answered 409, before it reads again (50 ms later).
            while !emulator
                .requests()
                .iter()
                .any(|r| r.verb == "create" && r.injected)
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            secrets.create(&PostParams::default(), &other).await
        };
        tokio::join!(mine, theirs)
    };
    let (mine, theirs) = support::within(WAIT, "race", racing).await;
    theirs.expect("the other replica's create");
    assert_eq!(mine.expect("a token"), token(7));
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_secret_without_a_token_is_named_in_the_error() {
    let emulator = support::emulator(WAIT, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(emulator.client(), "default");
    let empty = Secret {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("other".to_owned(), ByteString(b"x".to_vec()))])),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &empty)
        .await
        .expect("create the hand-made Secret");
    let err = support::within(WAIT, "read", load_or_create(&secrets, NAME, || token(1)))
        .await
        .expect_err("no token in the Secret");
    assert!(matches!(err, AdminTokenError::NoToken { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(NAME) && message.contains("\"token\""),
        "{message}"
    );
    let kept = secrets.get(NAME).await.expect("the Secret");
    assert_eq!(kept.data, empty.data, "the hand-made Secret is left as it was");
    emulator.shutdown().await;
}
