//! Lists the stream sessions of a Wolf instance.
//!
//! Usage: `cargo run -p direwolf-wolf-client --example list_sessions -- [SOCKET_PATH | host:port]`
//! (default `/var/run/wolf/wolf.sock`).

use direwolf_wolf_client::{DEFAULT_SOCKET_PATH, WolfClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_SOCKET_PATH.to_owned());
    let wolf = if target.starts_with('/') || target.starts_with('.') {
        WolfClient::unix(target)?
    } else {
        WolfClient::tcp(target)?
    };
    println!("Wolf {} at {}", wolf.version().await?, wolf.target());
    let sessions = wolf.sessions().await?;
    if sessions.is_empty() {
        println!("no sessions");
    }
    for s in sessions {
        println!(
            "session {} app {} client {} {}x{}@{} rtsp host {}",
            s.session_id(),
            s.app_id,
            s.client_ip,
            s.video_width,
            s.video_height,
            s.video_refresh_rate,
            s.rtsp_fake_ip.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}
