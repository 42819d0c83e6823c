//! Runs a fake Wolf (API on a unix socket, streaming side on an IP) until SIGTERM or SIGINT, for
//! tests that run Wolf hosts in network namespaces (`ip netns exec NS fake_wolf ...`).
//!
//! ```text
//! fake_wolf --socket /tmp/w/wolf.sock --stream-ip 10.0.0.2 [--rtsp-port 48010] [--video-port 48100]
//!           [--audio-port 48200] [--control-port 47999] [--app 1=Desktop]... [--records FILE]
//!           [--video-rtp-pings N]
//! ```
//!
//! Prints one line `fake wolf ready <ports as JSON>` once listening. With `--records`, the stream
//! report ([`direwolf_wolf_client::fake::stream::StreamReport`]) is written there as JSON every
//! 200 ms (replaced atomically).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use direwolf_wolf_client::fake::FakeWolf;
use direwolf_wolf_client::fake::stream::StreamConfig;

fn usage(why: &str) -> ! {
    eprintln!("fake_wolf: {why}");
    eprintln!(
        "usage: fake_wolf --socket PATH --stream-ip IP [--rtsp-port N] [--video-port N] \
         [--audio-port N] [--control-port N] [--app ID=TITLE]... [--records FILE] [--video-rtp-pings N]"
    );
    std::process::exit(2)
}

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
    let value = value.unwrap_or_else(|| usage(&format!("{flag} needs a value")));
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("{flag}: cannot parse {value:?}")))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut socket: Option<PathBuf> = None;
    let mut stream_ip: Option<IpAddr> = None;
    let mut apps = Vec::new();
    let mut records: Option<PathBuf> = None;
    let mut ports = [48010u16, 48100, 48200, 47999];
    let mut video_rtp_pings = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--socket" => socket = Some(parse(&flag, args.next())),
            "--stream-ip" => stream_ip = Some(parse(&flag, args.next())),
            "--rtsp-port" => ports[0] = parse(&flag, args.next()),
            "--video-port" => ports[1] = parse(&flag, args.next()),
            "--audio-port" => ports[2] = parse(&flag, args.next()),
            "--control-port" => ports[3] = parse(&flag, args.next()),
            "--records" => records = Some(parse(&flag, args.next())),
            "--video-rtp-pings" => video_rtp_pings = Some(parse(&flag, args.next())),
            "--app" => {
                let spec: String = parse(&flag, args.next());
                let Some((id, title)) = spec.split_once('=') else {
                    usage("--app takes ID=TITLE")
                };
                apps.push(FakeWolf::sample_app(id, title));
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let socket = socket.unwrap_or_else(|| usage("--socket is required"));
    let stream_ip = stream_ip.unwrap_or_else(|| usage("--stream-ip is required"));
    let mut config = StreamConfig::new(stream_ip);
    [
        config.rtsp_port,
        config.video_port,
        config.audio_port,
        config.control_port,
    ] = ports;
    config.video_rtp_pings = video_rtp_pings;
    let wolf = FakeWolf::builder().unix(&socket).stream(config).start().await?;
    for app in apps {
        wolf.add_app(app);
    }
    println!("fake wolf ready {}", serde_json::to_string(&wolf.stream_ports())?);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                if let Some(path) = &records {
                    let tmp = path.with_extension("tmp");
                    std::fs::write(&tmp, serde_json::to_vec(&wolf.stream_report())?)?;
                    std::fs::rename(&tmp, path)?;
                }
            }
        }
    }
    Ok(())
}
