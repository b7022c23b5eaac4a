//! weft against a real snakeMQ 1.6 peer (Python, from PyPI).
//!
//! Ignored in plain test runs: `cargo xtask interop` makes the venv,
//! installs snakemq and runs them with `WEFT_SNAKEMQ_PYTHON` set.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;
use weft_link::{LinkConfig, ReconnectPolicy};
use weft_messaging::message::Flags;
use weft_messaging::{Identity, Message, Messaging, MessagingConfig};

const WAIT: Duration = Duration::from_secs(15);

fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

fn config() -> MessagingConfig {
    let mut c = MessagingConfig::default();
    let mut link = LinkConfig::default();
    link.reconnect = ReconnectPolicy::fixed(Duration::from_millis(50));
    c.link = link;
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A snakeMQ peer process started by this test (and killed by it).
struct Snake {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Snake {
    async fn start(args: &[&str]) -> Snake {
        let python = std::env::var("WEFT_SNAKEMQ_PYTHON")
            .expect("WEFT_SNAKEMQ_PYTHON: run these through `cargo xtask interop`");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/snakemq_peer.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python starts");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut snake = Snake {
            child,
            stdin,
            lines,
        };
        snake.expect("ready").await;
        snake
    }

    /// The next event of this kind (others are skipped).
    async fn expect(&mut self, kind: &str) -> Value {
        timeout(WAIT, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("snakeMQ peer still running");
                let v: Value = serde_json::from_str(&line).unwrap();
                if v["event"] == kind {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no `{kind}` event from snakeMQ"))
    }

    async fn send(&mut self, to: &str, text: &str) {
        self.stdin
            .write_all(format!("{to}\t{text}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

async fn exchange(weft: &Messaging, snake: &mut Snake) {
    let sent = Message::new("hello snake")
        .with_ttl(Duration::from_secs(60))
        .persistent();
    weft.send_message(&id("snake"), sent.clone()).await.unwrap();
    let got = snake.expect("message").await;
    assert_eq!(got["from"], "weft");
    assert_eq!(got["data"], "hello snake");
    assert_eq!(got["uuid"], sent.id.to_hex());
    assert_eq!(got["flags"], 1, "persistent flag carried");
    let ttl = got["ttl"].as_u64().unwrap();
    assert!((58..=60).contains(&ttl), "TTL carried: {ttl}");

    snake.send("weft", "hello weft").await;
    let got = weft.recv(Some(WAIT)).await.unwrap();
    assert_eq!(got.from.as_str(), "snake");
    assert_eq!(&got.message.data[..], b"hello weft");
    assert!(
        got.message.flags.contains(Flags::PERSISTENT),
        "persistent flag carried"
    );
    let ttl = got.message.ttl.unwrap().as_secs();
    assert!((28..=30).contains(&ttl), "TTL carried: {ttl}");
}

#[tokio::test]
#[ignore = "needs snakeMQ: run `cargo xtask interop`"]
async fn weft_connects_to_a_snakemq_listener() {
    let port = free_port();
    let mut snake = Snake::start(&[
        "--ident",
        "snake",
        "--listen",
        &port.to_string(),
        "--ttl",
        "30",
        "--persistent",
    ])
    .await;
    let weft = Messaging::new(id("weft"), config()).await.unwrap();
    weft.link()
        .connect(format!("tcp://127.0.0.1:{port}"))
        .unwrap();
    assert_eq!(snake.expect("connect").await["ident"], "weft");
    exchange(&weft, &mut snake).await;
    snake.kill().await;
}

#[tokio::test]
#[ignore = "needs snakeMQ: run `cargo xtask interop`"]
async fn a_snakemq_connector_reaches_a_weft_listener() {
    let weft = Messaging::new(id("weft"), config()).await.unwrap();
    let at = weft
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let port = at.socket_addr().unwrap().port().to_string();
    let mut snake = Snake::start(&[
        "--ident",
        "snake",
        "--connect",
        &port,
        "--ttl",
        "30",
        "--persistent",
    ])
    .await;
    assert_eq!(snake.expect("connect").await["ident"], "weft");
    exchange(&weft, &mut snake).await;
    assert_eq!(
        weft.stats().acked,
        0,
        "a snakeMQ peer is never sent weft's extensions"
    );
    snake.kill().await;
}

#[tokio::test]
#[ignore = "needs snakeMQ: run `cargo xtask interop`"]
async fn snakemq_pings_are_answered() {
    let weft = Messaging::new(id("weft"), config()).await.unwrap();
    let at = weft
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let port = at.socket_addr().unwrap().port().to_string();
    // snakeMQ pings after 0.2 s of silence and hangs up 0.2 s later
    // without a PONG.
    let mut snake =
        Snake::start(&["--ident", "snake", "--connect", &port, "--keepalive", "0.2"]).await;
    snake.expect("connect").await;
    let received_before = weft.link().stats().bytes_received;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        weft.link().stats().bytes_received >= received_before + 5,
        "snakeMQ sent PINGs while idle"
    );
    assert_eq!(
        weft.link().stats().connections_opened,
        1,
        "no reconnect: every PING was answered"
    );
    snake.send("weft", "still here").await;
    assert_eq!(
        &weft.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"still here"
    );
    snake.kill().await;
}

#[tokio::test]
#[ignore = "needs snakeMQ: run `cargo xtask interop`"]
async fn messages_queued_while_snakemq_restarts_arrive() {
    let port = free_port();
    let listen = ["--ident", "snake", "--listen", &port.to_string()];
    let mut snake = Snake::start(&listen).await;
    let weft = Messaging::new(id("weft"), config()).await.unwrap();
    weft.link()
        .connect(format!("tcp://127.0.0.1:{port}"))
        .unwrap();
    snake.expect("connect").await;
    snake.kill().await;
    timeout(WAIT, async {
        while weft.is_connected(&id("snake")) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("weft notices the peer is gone");
    for i in 0..5 {
        weft.send_message(&id("snake"), Message::new(format!("queued {i}")))
            .await
            .unwrap();
    }
    assert_eq!(weft.queue_depth(&id("snake")), 5);
    let mut snake = Snake::start(&listen).await;
    for i in 0..5 {
        assert_eq!(snake.expect("message").await["data"], format!("queued {i}"));
    }
    assert!(
        weft.flush(WAIT).await,
        "delivered = written to snakeMQ's socket"
    );
    snake.kill().await;
}
