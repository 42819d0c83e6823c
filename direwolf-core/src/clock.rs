//! The time unit of every stored record.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, the time unit stored in every record.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
