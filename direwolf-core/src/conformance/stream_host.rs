//! The [`StreamHost`] suite.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;

use super::{PROMPTLY, promptly};
use crate::ids::{AesKey, RiKeyId};
use crate::model::{StreamKeys, VideoMode};
use crate::stream_host::{HostError, HostEvent, HostEvents, HostSessionInfo, HostSessionRequest, StreamHost};

/// How long a fresh event stream is given to connect before the suite relies on it.
const CONNECT: Duration = Duration::from_millis(500);

/// Checks [`StreamHost`]: a name; an added session is listed with the address and keys it was
/// asked for; stopping it removes it and reports [`HostEvent::SessionStopped`]; stopping a
/// session the host does not have is [`HostError::NoSuchSession`]; and a host runs the next
/// session after one ended.
///
/// The suite runs one session at a time (a Wolf instance runs one client-less session at a
/// time) and stops what it added. `host_app_id` names the host-side app to run, if the host
/// needs one.
pub async fn stream_host(host: &dyn StreamHost, host_app_id: Option<&str>) {
    assert!(!host.name().is_empty(), "a host has a name");
    let mut events = host.events();
    tokio::time::sleep(CONNECT).await;
    for round in 0..2 {
        let request = sample_request(host_app_id);
        let id = added_and_listed(host, &request, round).await;
        stopped_and_reported(host, &mut events, &id, &request).await;
        match promptly("a second stop", host.stop_session(&id)).await {
            Err(HostError::NoSuchSession { id: reported, .. }) => assert_eq!(reported, id),
            other => panic!("stopping a stopped session must be NoSuchSession, got {other:?}"),
        }
    }
}

/// A request with a random fake address of TEST-NET-3 and random keys.
fn sample_request(host_app_id: Option<&str>) -> HostSessionRequest {
    let mut rng = rand::thread_rng();
    HostSessionRequest {
        client_ip: "192.0.2.7".parse().expect("an address"),
        keys: StreamKeys {
            aes_key: AesKey::new(rng.r#gen()),
            aes_iv: RiKeyId::from_bits(rng.r#gen()),
        },
        rtsp_fake_ip: Ipv4Addr::new(203, 0, 113, rng.gen_range(1..255)),
        mode: VideoMode::DEFAULT,
        audio_channels: 2,
        host_app_id: host_app_id.map(str::to_owned),
    }
}

async fn listed(host: &dyn StreamHost) -> Vec<HostSessionInfo> {
    match promptly("list_sessions", host.list_sessions()).await {
        Ok(list) => list,
        Err(e) => panic!("list_sessions failed: {e} ({e:?})"),
    }
}

async fn added_and_listed(host: &dyn StreamHost, request: &HostSessionRequest, round: usize) -> String {
    let id = match promptly("add_session", host.add_session(request)).await {
        Ok(id) => id,
        Err(e) => panic!("add_session (round {round}) failed: {e} ({e:?})"),
    };
    assert!(!id.is_empty(), "a session id is not empty");
    let list = listed(host).await;
    let fake_ip = request.rtsp_fake_ip.to_string();
    let Some(info) = list
        .iter()
        .find(|s| s.rtsp_fake_ip.as_deref() == Some(fake_ip.as_str()))
    else {
        panic!("an added session must be listed with its rtsp_fake_ip {fake_ip}: {list:?}");
    };
    assert_eq!(info.id, id, "the listed session has the id add_session returned");
    assert_eq!(
        info.client_ip,
        request.client_ip.to_string(),
        "the listed session has the client address it was added with"
    );
    if let Some(key) = &info.aes_key_hex {
        assert!(
            key.eq_ignore_ascii_case(&request.keys.aes_key.to_hex()),
            "a listed AES key is the one the session was added with"
        );
    }
    id
}

async fn stopped_and_reported(
    host: &dyn StreamHost,
    events: &mut HostEvents,
    id: &str,
    request: &HostSessionRequest,
) {
    if let Err(e) = promptly("stop_session", host.stop_session(id)).await {
        panic!("stopping a listed session failed: {e} ({e:?})");
    }
    let fake_ip = request.rtsp_fake_ip.to_string();
    assert!(
        !listed(host)
            .await
            .iter()
            .any(|s| s.rtsp_fake_ip.as_deref() == Some(fake_ip.as_str())),
        "a stopped session must no longer be listed"
    );
    let reported = tokio::time::timeout(PROMPTLY, async {
        while let Some(event) = events.next().await {
            if event == (HostEvent::SessionStopped { id: id.to_owned() }) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        reported,
        Ok(true),
        "stopping a session must be reported as SessionStopped {{ id: {id} }} on the event stream"
    );
}
