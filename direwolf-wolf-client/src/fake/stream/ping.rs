//! The video and audio ping sockets (`docs/protocol/streaming-ports.md` § Pings and media): a ping
//! matched to a live session (§ How Wolf matches traffic to a session) binds the session's stream
//! to its source, which then receives RTP-looking packets from the same socket.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::UdpSocket;

use super::{Ctx, recv};
use crate::events::names;
use crate::fake::handlers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Video,
    Audio,
}

#[derive(Serialize)]
struct PingOut<'a> {
    client_ip: String,
    client_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a [u8]>,
}

pub(super) async fn ping_loop(ctx: Ctx, kind: Kind, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    let server_port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        let (n, src) = recv(&socket, &mut buf, "ping").await;
        if n != 4 && n < 20 {
            continue;
        }
        let payload = (n >= 20).then(|| &buf[..16]);
        emit_ping(&ctx, kind, src, payload);
        if let Some(first) = count_ping(&ctx, kind, src, payload, server_port) {
            for i in 0..ctx.config.rtp_per_ping {
                let packet = rtp_packet(kind, first.wrapping_add(i as u16));
                if let Err(e) = socket.send_to(&packet, src).await {
                    tracing::debug!(error = %e, %src, "fake wolf cannot send rtp");
                }
            }
        }
    }
}

/// Broadcasts the ping event of `kind` for a ping from `src`, with its payload when it has one.
fn emit_ping(ctx: &Ctx, kind: Kind, src: SocketAddr, payload: Option<&[u8]>) {
    let event = if kind == Kind::Video {
        names::RTP_VIDEO_PING
    } else {
        names::RTP_AUDIO_PING
    };
    ctx.shared.emit(
        event,
        &handlers::to_json(&PingOut {
            client_ip: src.ip().to_string(),
            client_port: src.port(),
            payload,
        }),
    );
}

/// Records a ping from `src` for the live session it matches, or as unmatched; the first RTP
/// sequence number of the packets that answer it, `None` when none do.
fn count_ping(
    ctx: &Ctx,
    kind: Kind,
    src: SocketAddr,
    payload: Option<&[u8]>,
    server_port: u16,
) -> Option<u16> {
    let live = ctx.live_sessions();
    let mut st = ctx.state.lock();
    let matched = match payload {
        Some(p) => st.live_entry(&live, |e| e.ping == p),
        None => {
            let src_ip = src.ip().to_string();
            st.session_entry(&live, |s| s.client_ip == src_ip && src.port() == server_port)
        }
    };
    let Some(e) = matched else {
        st.unmatched_pings += 1;
        return None;
    };
    let r = &mut e.record;
    let (pings, sources, sent) = match kind {
        Kind::Video => (
            &mut r.video_pings,
            &mut r.video_ping_sources,
            &mut r.video_rtp_sent,
        ),
        Kind::Audio => (
            &mut r.audio_pings,
            &mut r.audio_ping_sources,
            &mut r.audio_rtp_sent,
        ),
    };
    *pings += 1;
    if !sources.contains(&src) {
        sources.push(src);
    }
    let quiet = kind == Kind::Video && ctx.config.video_rtp_pings.is_some_and(|n| *pings > n);
    if quiet {
        return None;
    }
    *sent += u64::from(ctx.config.rtp_per_ping);
    let first = st.rtp_seq;
    st.rtp_seq = st.rtp_seq.wrapping_add(ctx.config.rtp_per_ping as u16);
    Some(first)
}

/// A 12-byte RTP header (version 2, payload type 97 audio / 96 video) and 100 bytes of filler.
fn rtp_packet(kind: Kind, seq: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(112);
    p.push(0x80);
    p.push(if kind == Kind::Audio { 97 } else { 96 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 240).to_be_bytes());
    p.extend_from_slice(&0x5746_4f4c_u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0u8, 100));
    p
}
