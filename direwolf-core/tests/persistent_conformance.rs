//! The conformance suite on the persistent (redb) backend.

use direwolf_core::persistent::PersistentStores;
use direwolf_core::{PairingStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persistent_backend_conforms() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stores = PersistentStores::open(dir.path())
        .expect("open a fresh database")
        .stores();
    conformance::all(&stores).await;
    // The suite needs no empty store: it runs again on the same (now non-empty) database.
    conformance::all(&stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_backend_conforms_after_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let identity = {
        let stores = PersistentStores::open(dir.path())
            .expect("open a fresh database")
            .stores();
        conformance::identity_store(stores.identity.as_ref()).await;
        stores
            .identity
            .load()
            .await
            .expect("load")
            .expect("the suite leaves an identity")
    };
    let stores = PersistentStores::open(dir.path())
        .expect("reopen the database")
        .stores();
    assert_eq!(
        stores.identity.load().await.expect("load"),
        Some(identity),
        "identity must survive a reopen"
    );
    conformance::all(&stores).await;
    assert!(
        stores.pairings.list().await.expect("list").is_empty(),
        "the suite cleans up after itself"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn persistent_backend_conforms_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stores = PersistentStores::open(dir.path())
        .expect("open a fresh database")
        .stores();
    conformance::all(&stores).await;
}
