//! Exactly once across a receiver's SIGKILL: a receiver with a store runs
//! in a child process (this test binary, run again as `receiver_child`),
//! is killed with SIGKILL midway through 5,000 messages, restarted on the
//! same store, and every message is printed exactly once overall.
#![cfg(all(feature = "sqlite", unix))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use weft_messaging::storage::SqliteStorage;
use weft_messaging::{Message, Messaging, MessagingConfig};

mod common;
use common::{WAIT, config, id};

/// Set in the child's environment: the store's path and the sender's
/// address.
const CHILD_STORE: &str = "WEFT_TEST_RECEIVER_STORE";
const CHILD_CONNECT: &str = "WEFT_TEST_RECEIVER_CONNECT";

/// The receiver holds its acks back this long (unless 256 messages wait
/// for one), so that when it is killed the messages it printed last are
/// certainly unacknowledged and their sender sends them again.
const ACK_DELAY: Duration = Duration::from_secs(1);

/// The receiver, when run as a child by the test below: prints `got DATA`
/// for every message, on its store, until it is killed. Run alone (no
/// environment), it does nothing.
#[test]
fn receiver_child() {
    let (Ok(store), Ok(connect)) = (std::env::var(CHILD_STORE), std::env::var(CHILD_CONNECT))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut config: MessagingConfig = config();
        config.ack_delay = ACK_DELAY;
        let storage = SqliteStorage::open(&store).unwrap();
        let receiver = Messaging::with_storage(id("receiver"), config, storage)
            .await
            .unwrap();
        receiver.unsubscribe(0);
        receiver.on_message(|r| {
            let mut out = std::io::stdout().lock();
            out.write_all(b"got ").unwrap();
            out.write_all(&r.message.data).unwrap();
            out.write_all(b"\n").unwrap();
            out.flush().unwrap();
        });
        receiver.link().connect(connect.as_str()).unwrap();
        std::future::pending::<()>().await;
    });
}

/// A receiver child and the lines it prints.
struct Receiver {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Receiver {
    fn start(store: &Path, connect: &str) -> Receiver {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "receiver_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_STORE, store)
            .env(CHILD_CONNECT, connect)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                // The first may follow libtest's "test receiver_child ... ".
                if let Some((_, data)) = line.split_once("got ") {
                    if tx.send(data.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        Receiver { child, lines }
    }

    /// Takes printed messages into `counts` until `done` holds.
    fn until(
        &self,
        counts: &mut HashMap<String, u32>,
        done: impl Fn(&HashMap<String, u32>) -> bool,
    ) {
        while !done(counts) {
            let data = self
                .lines
                .recv_timeout(WAIT)
                .expect("the receiver printed nothing more");
            *counts.entry(data).or_default() += 1;
        }
    }

    /// SIGKILLs the child (by the PID it was started with), then takes
    /// every line it printed before it died.
    fn kill(mut self, counts: &mut HashMap<String, u32>) {
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        drop(self);
        while let Ok(data) = lines.recv_timeout(WAIT) {
            *counts.entry(data).or_default() += 1;
        }
    }
}

impl Drop for Receiver {
    /// A failed test leaves no child behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn data(k: usize) -> String {
    format!("m{k}")
}

fn all_printed(range: std::ops::Range<usize>) -> impl Fn(&HashMap<String, u32>) -> bool {
    move |counts| range.clone().all(|k| counts.contains_key(&data(k)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_midway_and_restarted_on_its_store_prints_each_of_5000_once() {
    const TOTAL: usize = 5_000;
    const FIRST: usize = 2_500;
    const TRICKLE: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("receiver.sqlite");
    let sender = Messaging::new(id("sender"), config()).await.unwrap();
    let at = sender
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address
        .to_string();
    let to = id("receiver");
    let mut counts = HashMap::new();

    let first = Receiver::start(&store, &at);
    for k in 0..FIRST {
        sender
            .send_message(&to, Message::new(data(k)))
            .await
            .unwrap();
    }
    let mut counts_ref = std::mem::take(&mut counts);
    let first = tokio::task::spawn_blocking(move || {
        first.until(&mut counts_ref, all_printed(0..FIRST));
        (first, counts_ref)
    })
    .await
    .unwrap();
    let (first, c) = first;
    counts = c;
    // A few more, one at a time: each arrives alone, and its ack waits
    // for ACK_DELAY; the kill comes first.
    let mut first = Some(first);
    for k in FIRST..FIRST + TRICKLE {
        sender
            .send_message(&to, Message::new(data(k)))
            .await
            .unwrap();
        let (r, mut c) = (first.take().unwrap(), std::mem::take(&mut counts));
        let (r, c) = tokio::task::spawn_blocking(move || {
            r.until(&mut c, all_printed(k..k + 1));
            (r, c)
        })
        .await
        .unwrap();
        first = Some(r);
        counts = c;
    }
    let unacked = sender.queue_depth(&to);
    assert!(
        unacked >= TRICKLE,
        "{unacked} printed but not yet acknowledged"
    );
    let (r, mut c) = (first.take().unwrap(), std::mem::take(&mut counts));
    counts = tokio::task::spawn_blocking(move || {
        r.kill(&mut c);
        c
    })
    .await
    .unwrap();

    // Restarted on the same store: the sender sends again what was not
    // acknowledged, then the rest.
    let second = Receiver::start(&store, &at);
    for k in FIRST + TRICKLE..TOTAL {
        sender
            .send_message(&to, Message::new(data(k)))
            .await
            .unwrap();
    }
    let mut c = std::mem::take(&mut counts);
    let (second, c) = tokio::task::spawn_blocking(move || {
        second.until(&mut c, all_printed(0..TOTAL));
        (second, c)
    })
    .await
    .unwrap();
    counts = c;
    assert!(sender.flush(WAIT).await, "everything acknowledged");
    assert!(
        sender.stats().resent >= TRICKLE as u64,
        "{:?}",
        sender.stats()
    );
    let mut c = std::mem::take(&mut counts);
    counts = tokio::task::spawn_blocking(move || {
        second.kill(&mut c);
        c
    })
    .await
    .unwrap();

    let twice: Vec<(&String, &u32)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "printed more than once: {twice:?}");
    assert_eq!(counts.len(), TOTAL, "each of the {TOTAL} printed");
}
