//! The runbook's backup and restore (`docs/runbook.md`, "Back up and restore"), done during a
//! sale: the server is paused (`SIGSTOP`), its data directory copied, and resumed; a server
//! started on the copy has every registration acknowledged before the pause, with tickets that
//! scan and the accounts' keys.

use serde_json::json;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tests::{Api, Server};

/// Whether every thread of `pid` is stopped (`T` in `/proc/PID/task/*/stat`): `kill -STOP`
/// returns before a thread inside a system call (a write, an fsync, a file's removal) has
/// finished it and stopped.
fn all_threads_stopped(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks.map(|t| t.unwrap().path().join("stat")).all(|stat| {
        let stat = std::fs::read_to_string(stat).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_taken_while_paused_mid_sale_restores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    let (event, tt) = api.published_event(10_000, 600, 4).await;

    // Buyers confirm registrations in a loop; each answer is noted with whether it arrived
    // before the pause began (then it was durable before the copy).
    let paused = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let buyers: Vec<_> = (0..4)
        .map(|b| {
            let (api, event, tt) = (api.clone(), event.clone(), tt.clone());
            let (paused, stop, acknowledged) = (paused.clone(), stop.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let attendee = json!({"name": format!("Buyer {b}"), "email": "buyer@example.com"});
                while !stop.load(Ordering::Acquire) {
                    let registration = api.confirmed(&event, &tt, attendee.clone(), 1).await;
                    let before = !paused.load(Ordering::Acquire);
                    let id = registration["id"].as_str().unwrap().to_owned();
                    let code = registration["tickets"][0]["code"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    acknowledged.lock().unwrap().push((id, code, before));
                }
            })
        })
        .collect();
    let enough = tests::wait_for(std::time::Duration::from_secs(30), || {
        let acknowledged = acknowledged.clone();
        async move { (acknowledged.lock().unwrap().len() >= 60).then_some(()) }
    })
    .await;
    assert!(enough.is_some(), "the sale runs");

    // The runbook's "pause and copy".
    paused.store(true, Ordering::Release);
    signal(server.pid(), "STOP");
    let stopped = tests::wait_for(std::time::Duration::from_secs(10), || {
        let pid = server.pid();
        async move { all_threads_stopped(pid).then_some(()) }
    })
    .await;
    assert!(stopped.is_some(), "every thread stopped");
    let backup = dir.path().join("backup");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&backup)
        .status()
        .unwrap();
    signal(server.pid(), "CONT");
    assert!(copied.success());
    // The sale goes on after the copy, then the original server stops.
    let more = tests::wait_for(std::time::Duration::from_secs(30), || {
        let acknowledged = acknowledged.clone();
        async move {
            let after = acknowledged.lock().unwrap().iter().filter(|a| !a.2).count();
            (after >= 20).then_some(())
        }
    })
    .await;
    assert!(more.is_some(), "the sale continues after the pause");
    stop.store(true, Ordering::Release);
    for buyer in buyers {
        buyer.await.unwrap();
    }
    drop(api);
    let status = server.terminate(std::time::Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()));

    // Restore: a server on the copy.
    let restored = Server::start(&backup, &[]);
    let api = Api::admin(&restored).await;
    api.wait_ready().await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let before: Vec<_> = acknowledged.iter().filter(|a| a.2).collect();
    assert!(before.len() >= 60);
    for (id, _, _) in &before {
        let registration = api.get(&format!("/api/v1/registrations/{id}")).await;
        assert_eq!(
            (registration.status, registration.str("status").as_str()),
            (200, "confirmed"),
            "{id} was acknowledged before the copy"
        );
    }
    let (capacity, held, confirmed, available) = api.availability(&event).await;
    assert_eq!(held + confirmed + available, capacity);
    assert!(
        // (+ 4: a confirmation in flight per buyer may be durable in the copy, unanswered.)
        confirmed >= before.len() as u64 && confirmed <= acknowledged.len() as u64 + 4,
        "confirmed {confirmed}: at least the {} before the copy, at most all {} (+ in flight)",
        before.len(),
        acknowledged.len()
    );
    // A ticket issued before the copy scans once (the ticket key came with the copy).
    let path = format!("/api/v1/events/{event}/check-ins");
    let scan = json!({"ticket_code": before[0].1, "gate": "main"});
    assert_eq!(api.post(&path, &scan, None).await.status, 200);
    assert_eq!(api.post(&path, &scan, None).await.status, 409);
    // And the sale goes on where the copy left it.
    assert_eq!(api.hold(&event, &tt, 1, None).await.status, 201);
}
