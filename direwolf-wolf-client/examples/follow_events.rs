//! Prints Wolf's events as they happen, re-listing sessions after every reconnection.
//!
//! Usage: `cargo run -p direwolf-wolf-client --example follow_events -- [SOCKET_PATH]`
//! (default `/var/run/wolf/wolf.sock`). Stop with Ctrl-C.

use direwolf_wolf_client::{DEFAULT_SOCKET_PATH, EventItem, WolfClient};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_SOCKET_PATH.to_owned());
    let wolf = WolfClient::unix(path)?;
    let mut events = wolf.events();
    while let Some(item) = events.next().await {
        match item? {
            EventItem::Reconnected => {
                let sessions = wolf.sessions().await?;
                println!("reconnected; {} session(s) now", sessions.len());
            }
            EventItem::Event(event) => println!("{:?} {:?}", event.session_id(), event),
        }
    }
    Ok(())
}
