//! What an RTSP `ANNOUNCE` tells Wolf (`docs/protocol/streaming-ports.md` § RTSP handshake): the
//! `VideoSession` and `AudioSession` events built from the session and the stream parameters of the
//! SDP body.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::Ctx;
use crate::events::names;
use crate::fake::handlers;
use crate::secret::Secret;
use crate::types::{
    AudioMode, AudioSession, ColorRange, ColorSpace, DisplayMode, Speaker, StreamSession, VideoSession,
};

/// `VideoSession` and `AudioSession` events for an `ANNOUNCE` body.
pub(super) fn announce_events(
    ctx: &Ctx,
    s: &StreamSession,
    ping: [u8; 16],
    body: &str,
) -> Vec<(&'static str, String)> {
    let sdp = Sdp::parse(body);
    let video = video_session(&sdp, s, ping, ctx.video_port.load(Ordering::Relaxed));
    let audio = audio_session(&sdp, s, ping, ctx.audio_port.load(Ordering::Relaxed));
    vec![
        (names::VIDEO_SESSION, handlers::to_json(&video)),
        (names::AUDIO_SESSION, handlers::to_json(&audio)),
    ]
}

/// The `a=key:value` attributes of an SDP body, trimmed.
struct Sdp<'a>(HashMap<&'a str, &'a str>);

impl<'a> Sdp<'a> {
    fn parse(body: &'a str) -> Self {
        let mut values = HashMap::new();
        for line in body.lines() {
            if let Some((k, v)) = line.trim().strip_prefix("a=").and_then(|l| l.split_once(':')) {
                values.insert(k.trim(), v.trim());
            }
        }
        Sdp(values)
    }

    /// Attribute `k` as an integer; `default` when it is absent or not one.
    fn num(&self, k: &str, default: i64) -> i64 {
        self.0
            .get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    }
}

/// The video stream the client asked for, to be sent from `port`, the session's display mode where
/// the SDP has none.
fn video_session(sdp: &Sdp, s: &StreamSession, ping: [u8; 16], port: u16) -> VideoSession {
    let width = sdp.num("x-nv-video[0].clientViewportWd", i64::from(s.video_width));
    let height = sdp.num("x-nv-video[0].clientViewportHt", i64::from(s.video_height));
    let fps = sdp.num("x-nv-video[0].maxFPS", i64::from(s.video_refresh_rate));
    let codec = sdp.num("x-nv-vqos[0].bitStreamFormat", 0);
    VideoSession {
        display_mode: DisplayMode {
            width: u32::try_from(width).unwrap_or(s.video_width),
            height: u32::try_from(height).unwrap_or(s.video_height),
            refresh_rate: u32::try_from(fps).unwrap_or(s.video_refresh_rate),
        },
        gst_pipeline: match codec {
            1 => "hevc",
            2 => "av1",
            _ => "h264",
        }
        .into(),
        render_node: "/dev/dri/renderD128".into(),
        session_id: s.client_id,
        port,
        timeout_ms: u32::try_from(sdp.num("x-nv-video[0].timeoutLengthMs", 7000)).unwrap_or(7000),
        wait_for_ping: true,
        packet_size: u32::try_from(sdp.num("x-nv-video[0].packetSize", 1024)).unwrap_or(1024),
        frames_with_invalid_ref_threshold: i32::try_from(
            sdp.num("x-nv-video[0].framesWithInvalidRefThreshold", 0),
        )
        .unwrap_or(0),
        fec_percentage: 20,
        min_required_fec_packets: i32::try_from(sdp.num("x-nv-vqos[0].fec.minRequiredFecPackets", 0))
            .unwrap_or(0),
        bitrate_kbps: sdp.num(
            "x-ml-video.configuredBitrateKbps",
            sdp.num("x-nv-vqos[0].bw.maximumBitrateKbps", 15000),
        ),
        slices_per_frame: i32::try_from(sdp.num("x-nv-video[0].videoEncoderSlicesPerFrame", 1)).unwrap_or(1),
        color_range: ColorRange::Mpeg,
        color_space: ColorSpace::Bt709,
        client_ip: s.client_ip.clone(),
        rtp_secret_payload: Some(Secret::new(ping)),
    }
}

/// The audio stream the client asked for, to be sent from `port`, encrypted when feature flag 0x20
/// is set, with the session's channel count where the SDP has none.
fn audio_session(sdp: &Sdp, s: &StreamSession, ping: [u8; 16], port: u16) -> AudioSession {
    let channels = sdp.num(
        "x-nv-audio.surround.numChannels",
        i64::from(s.audio_channel_count),
    );
    let flags = sdp.num("x-nv-general.featureFlags", 0);
    AudioSession {
        gst_pipeline: "opus".into(),
        session_id: s.client_id,
        encrypt_audio: flags & 0x20 != 0,
        aes_key: Secret::new(s.aes_key.as_ref().map(|k| k.expose().clone()).unwrap_or_default()),
        aes_iv: Secret::new(s.aes_iv.as_ref().map(|k| k.expose().clone()).unwrap_or_default()),
        port,
        wait_for_ping: true,
        client_ip: s.client_ip.clone(),
        rtp_secret_payload: Some(Secret::new(ping)),
        packet_duration: u32::try_from(sdp.num("x-nv-aqos.packetDuration", 5)).unwrap_or(5),
        audio_mode: audio_mode(u32::try_from(channels).unwrap_or(2)),
    }
}

/// The Opus layout for `channels`: up to stereo one coupled stream, beyond it `channels - 2` streams
/// of which two are coupled; the first `channels` speakers in Wolf's order; 48 kbit/s a channel.
fn audio_mode(channels: u32) -> AudioMode {
    AudioMode {
        channels,
        streams: if channels > 2 { channels - 2 } else { 1 },
        coupled_streams: if channels > 2 { 2 } else { 1 },
        speakers: [
            Speaker::FrontLeft,
            Speaker::FrontRight,
            Speaker::FrontCenter,
            Speaker::LowFrequency,
            Speaker::BackLeft,
            Speaker::BackRight,
            Speaker::SideLeft,
            Speaker::SideRight,
        ]
        .into_iter()
        .take(channels as usize)
        .collect(),
        bitrate: 96000 * channels / 2,
        sample_rate: 48000,
    }
}
