//! What the benches read about a process from `/proc`.

/// The numeric value of `key` (e.g. `VmRSS:`, in KiB for sizes) in `/proc/<pid>/status`; `pid`
/// is a number or `self`. Panics with the key's name when it is missing.
pub fn proc_status(pid: &str, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}
