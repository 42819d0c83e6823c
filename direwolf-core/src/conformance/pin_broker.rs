//! The [`PinBroker`] suite.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;

use super::{name, promptly, run_tag};
use crate::ids::{PairSecret, Pin};
use crate::pin_broker::{PendingPinRequest, PinBroker, PinError, PinSubmission};

/// How long a wait that must time out is given.
const SHORT: Duration = Duration::from_millis(300);

/// How long a wait that must succeed is given (the submission arrives meanwhile).
const LONG: Duration = Duration::from_secs(10);

/// Checks [`PinBroker`] on one instance: distinct fresh secrets listed as pending with what
/// phase 1 knew, a PIN submitted before or during the wait is delivered once, unknown and used
/// secrets are refused, a wait without a PIN times out, a dropped wait leaves the entry open,
/// and a close ends waiters and the entry.
pub async fn pin_broker(broker: &dyn PinBroker) {
    pin_broker_across(broker, broker).await;
    let tag = run_tag();
    secrets_are_fresh_and_listed(broker, &tag).await;
    unknown_secrets_are_refused(broker).await;
    waits_time_out_and_survive_being_dropped(broker, &tag).await;
    close_ends_waiters(broker, &tag).await;
}

/// Checks delivery between two instances sharing a backend (two replicas of the Kubernetes
/// proxy): an entry opened and waited on by `holder` gets the PIN typed on `page`'s PIN page,
/// whether it arrives before or during the wait, exactly once.
pub async fn pin_broker_across(holder: &dyn PinBroker, page: &dyn PinBroker) {
    let tag = run_tag();
    let user = name(format!("c{tag}-pin"));
    let submission = PinSubmission {
        pin: random_pin(),
        user: Some(user),
    };
    // Submitted before the wait.
    let secret = opened(holder, &tag, "before").await;
    submitted(page, &secret, submission.clone()).await;
    assert_eq!(
        waited(holder, &secret).await,
        submission,
        "a PIN submitted earlier is delivered"
    );
    match promptly("a second submission", page.submit(&secret, submission.clone())).await {
        Err(PinError::UnknownSecret) => {}
        other => panic!("an entry takes one submission; a second must be UnknownSecret, got {other:?}"),
    }
    promptly("close", holder.close(&secret)).await;
    // Submitted during the wait.
    let secret = opened(holder, &tag, "during").await;
    let wait = holder.wait(&secret, LONG);
    let submit = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        submitted(page, &secret, submission.clone()).await;
    };
    let (delivered, ()) = promptly("a wait with a submission", futures::future::join(wait, submit)).await;
    match delivered {
        Ok(delivered) => assert_eq!(delivered, submission, "the PIN is delivered as submitted"),
        Err(e) => panic!("a wait must end with the PIN submitted meanwhile, got {e} ({e:?})"),
    }
    promptly("close", holder.close(&secret)).await;
}

fn random_pin() -> Pin {
    let n: u16 = rand::thread_rng().gen_range(0..10_000);
    format!("{n:04}").parse().expect("four digits are a PIN")
}

fn client_ip() -> IpAddr {
    IpAddr::from([192, 0, 2, rand::thread_rng().gen_range(1..255)])
}

async fn opened(broker: &dyn PinBroker, tag: &str, what: &str) -> PairSecret {
    let request = PendingPinRequest {
        client_ip: client_ip(),
        device_name: Some(format!("c{tag}-{what}")),
    };
    match promptly("open", broker.open(request)).await {
        Ok(secret) => secret,
        Err(e) => panic!("PinBroker::open failed: {e} ({e:?})"),
    }
}

async fn submitted(broker: &dyn PinBroker, secret: &PairSecret, submission: PinSubmission) {
    if let Err(e) = promptly("submit", broker.submit(secret, submission)).await {
        panic!("a submission for an open entry must be accepted, got {e} ({e:?})");
    }
}

async fn waited(broker: &dyn PinBroker, secret: &PairSecret) -> PinSubmission {
    match promptly("wait", broker.wait(secret, LONG)).await {
        Ok(submission) => submission,
        Err(e) => panic!("a wait for a submitted PIN must return it, got {e} ({e:?})"),
    }
}

async fn secrets_are_fresh_and_listed(broker: &dyn PinBroker, tag: &str) {
    let requests: Vec<PendingPinRequest> = (0..8)
        .map(|i| PendingPinRequest {
            client_ip: client_ip(),
            device_name: (i % 2 == 0).then(|| format!("c{tag}-{i} «ünïcode» 📱")),
        })
        .collect();
    let opens = requests.iter().map(|r| broker.open(r.clone()));
    let secrets: Vec<PairSecret> = promptly("concurrent opens", join_all(opens))
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("PinBroker::open failed: {e} ({e:?})")))
        .collect();
    let distinct: HashSet<&PairSecret> = secrets.iter().collect();
    assert_eq!(
        distinct.len(),
        secrets.len(),
        "every open gets a secret of its own"
    );
    let pending = promptly("pending", broker.pending())
        .await
        .unwrap_or_else(|e| panic!("PinBroker::pending failed: {e} ({e:?})"));
    for (secret, request) in secrets.iter().zip(&requests) {
        let Some(entry) = pending.iter().find(|p| &p.secret == secret) else {
            panic!("an open entry must be listed as pending");
        };
        assert_eq!(
            (entry.client_ip, &entry.device_name),
            (request.client_ip, &request.device_name),
            "a pending entry shows the client address and device name phase 1 gave"
        );
    }
    submitted(
        broker,
        &secrets[0],
        PinSubmission {
            pin: random_pin(),
            user: None,
        },
    )
    .await;
    let pending = promptly("pending", broker.pending()).await.unwrap_or_default();
    assert!(
        !pending.iter().any(|p| p.secret == secrets[0]),
        "an entry with a PIN is no longer pending"
    );
    for secret in &secrets {
        promptly("close", broker.close(secret)).await;
    }
    let pending = promptly("pending", broker.pending()).await.unwrap_or_default();
    assert!(
        !pending.iter().any(|p| secrets.contains(&p.secret)),
        "closed entries are not pending"
    );
}

async fn unknown_secrets_are_refused(broker: &dyn PinBroker) {
    let unknown = PairSecret::generate();
    let submission = PinSubmission {
        pin: random_pin(),
        user: None,
    };
    match promptly("submit", broker.submit(&unknown, submission)).await {
        Err(PinError::UnknownSecret) => {}
        other => panic!("a submission for an unknown secret must be UnknownSecret, got {other:?}"),
    }
    match promptly("wait", broker.wait(&unknown, SHORT)).await {
        Err(PinError::UnknownSecret) => {}
        other => panic!("a wait on an unknown secret must be UnknownSecret, got {other:?}"),
    }
}

async fn waits_time_out_and_survive_being_dropped(broker: &dyn PinBroker, tag: &str) {
    let secret = opened(broker, tag, "timeout").await;
    match promptly("a wait without a PIN", broker.wait(&secret, SHORT)).await {
        Err(PinError::TimedOut) => {}
        other => panic!("a wait nobody answers must be TimedOut, got {other:?}"),
    }
    {
        let mut dropped = broker.wait(&secret, LONG);
        let _ = futures::poll!(dropped.as_mut());
    }
    let submission = PinSubmission {
        pin: random_pin(),
        user: None,
    };
    submitted(broker, &secret, submission.clone()).await;
    assert_eq!(
        waited(broker, &secret).await,
        submission,
        "an entry stays open after a timed-out or dropped wait"
    );
    promptly("close", broker.close(&secret)).await;
}

async fn close_ends_waiters(broker: &dyn PinBroker, tag: &str) {
    let secret = opened(broker, tag, "close").await;
    let wait = broker.wait(&secret, LONG);
    let close = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        broker.close(&secret).await;
    };
    let (waited, ()) = promptly("a wait on a closed entry", futures::future::join(wait, close)).await;
    match waited {
        Err(PinError::Closed) => {}
        other => panic!("a wait on an entry that is closed must end with Closed, got {other:?}"),
    }
    let submission = PinSubmission {
        pin: random_pin(),
        user: None,
    };
    match promptly("submit", broker.submit(&secret, submission)).await {
        Err(PinError::UnknownSecret) => {}
        other => panic!("a submission for a closed entry must be UnknownSecret, got {other:?}"),
    }
}
