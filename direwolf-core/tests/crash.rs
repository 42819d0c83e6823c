//! Crash safety of the persistent backend: a child process writes pairings and acknowledges each
//! one on stdout only after `put` returned; the parent kills it with SIGKILL mid-run, reopens
//! the database and checks that every acknowledged pairing is there, intact.
//!
//! The child is this test binary re-invoked on the ignored test `crash_child_writer` with
//! `DIREWOLF_CRASH_DIR` set.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use direwolf_core::persistent::PersistentStores;
use direwolf_core::{Fingerprint, Pairing, PairingStore, UserName};

const DIR_VAR: &str = "DIREWOLF_CRASH_DIR";
const START_VAR: &str = "DIREWOLF_CRASH_START";
/// The child stops on its own after this many writes, should the parent vanish.
const MAX_WRITES: u64 = 20_000;

/// The pairing number `i`: deterministic, so the parent knows exactly what was written.
fn pairing(i: u64) -> Pairing {
    let der = format!("crash test certificate {i}");
    Pairing {
        fingerprint: Fingerprint::of_der(der.as_bytes()),
        cert_pem: format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            der.repeat(20)
        ),
        user: UserName::default_user(),
        device_name: Some(format!("device №{i}")),
        paired_at: 1_700_000_000 + i,
    }
}

/// Not a test: the child process of `acknowledged_pairings_survive_sigkill`.
#[test]
#[ignore = "helper process of acknowledged_pairings_survive_sigkill, which runs it"]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        eprintln!("{DIR_VAR} is not set: nothing to do (this is a helper process, not a test)");
        return;
    };
    let start: u64 = std::env::var(START_VAR)
        .expect("start index")
        .parse()
        .expect("numeric start index");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let stores = PersistentStores::open(Path::new(&dir)).expect("child: open the database");
        let pairings = stores.pairing_store();
        let mut out = std::io::stdout().lock();
        // libtest has printed `test crash_child_writer ... ` without a newline: start a line.
        writeln!(out, "\nOPEN").expect("stdout");
        out.flush().expect("stdout");
        for i in start..start + MAX_WRITES {
            pairings.put(pairing(i)).await.expect("child: put");
            writeln!(out, "ACK {i}").expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

/// Kills the child when the test ends early (a failed assertion).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path, start: u64) -> (KillOnDrop, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().expect("path of this test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DIR_VAR, dir)
        .env(START_VAR, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), rx)
}

#[test]
fn acknowledged_pairings_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut acknowledged: Vec<u64> = Vec::new();

    // How many acknowledgements to wait for before the kill; 0 kills right after opening.
    for (round, kill_after) in [0usize, 1, 7, 40, 150].into_iter().enumerate() {
        let start = round as u64 * 1_000_000;
        let (mut child, lines) = spawn_child(dir.path(), start);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut opened = false;
        let mut acks_this_round = 0usize;
        while !opened || acks_this_round < kill_after {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "round {round}: the child did not acknowledge {kill_after} writes within 60 s \
                     (timeout means the child is stuck or died; see its stderr above)"
                )
            });
            if line == "OPEN" {
                opened = true;
            } else if let Some(i) = line.strip_prefix("ACK ") {
                acknowledged.push(i.parse().expect("numeric ack"));
                acks_this_round += 1;
            }
        }
        // SIGKILL: no destructor, no flush, no clean close.
        child.0.kill().expect("SIGKILL the child");
        let status = child.0.wait().expect("reap the child");
        assert!(
            !status.success(),
            "round {round}: the child must have died from the kill, not finished"
        );
        // Acknowledgements already in the pipe were printed after `put` returned: they count.
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
            if let Some(i) = line.strip_prefix("ACK ") {
                acknowledged.push(i.parse().expect("numeric ack"));
            }
        }

        let stores = PersistentStores::open(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: the database must reopen cleanly after SIGKILL: {e}"));
        let pairings = stores.pairing_store();
        runtime.block_on(async {
            for &i in &acknowledged {
                let expected = pairing(i);
                let got = pairings.get(&expected.fingerprint).await.expect("get");
                assert_eq!(
                    got.as_ref(),
                    Some(&expected),
                    "round {round}: acknowledged pairing {i} lost or damaged"
                );
            }
            // Whatever else is there (a write killed after commit, before its ack) is intact too.
            for p in pairings.list().await.expect("list") {
                let i = p.paired_at - 1_700_000_000;
                assert_eq!(p, pairing(i), "round {round}: a stored pairing is damaged");
            }
            // And the database takes writes again.
            pairings
                .put(pairing(999_999_999))
                .await
                .expect("write after recovery");
            assert!(
                pairings
                    .delete(&pairing(999_999_999).fingerprint)
                    .await
                    .expect("delete")
            );
        });
        drop(pairings);
        drop(stores);
    }
    assert!(
        acknowledged.len() >= 198,
        "the rounds acknowledged only {} writes",
        acknowledged.len()
    );
}
