//! Calls, signals, errors and deadlines between RPC peers on loopback.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use weft_link::{LinkConfig, ReconnectPolicy};
use weft_messaging::{Identity, Message, Messaging, MessagingConfig};
use weft_rpc::wire::{Call, Frame, Outcome, Reply};
use weft_rpc::{CallOptions, Method, RemoteError, RemoteErrorKind, Rpc, RpcConfig, RpcError};

const WAIT: Duration = Duration::from_secs(10);

/// The service both sides of these tests share.
mod calc {
    use weft_rpc::Method;

    pub(crate) const ADD: Method<(i32, i32), i32> = Method::new("calc", "add");
    pub(crate) const SLOW_ADD: Method<(i32, i32), i32> = Method::new("calc", "slow_add");
    pub(crate) const HANG: Method<(), ()> = Method::new("calc", "hang");
    pub(crate) const OPEN: Method<String, u64> = Method::new("calc", "open");
    pub(crate) const BOOM: Method<u32, u32> = Method::new("calc", "boom");
    pub(crate) const COUNT: Method<(), u64> = Method::new("calc", "count");
    pub(crate) const NOPE: Method<(), ()> = Method::new("calc", "nope");
    pub(crate) const NOBODY: Method<(), ()> = Method::new("nobody", "home");
    pub(crate) const NOTE: Method<u32, ()> = Method::new("log", "note");
    pub(crate) const ECHO: Method<Vec<u8>, Vec<u8>> = Method::new("calc", "echo");
}
use calc::*;

fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

fn messaging_config() -> MessagingConfig {
    let mut c = MessagingConfig::default();
    let mut link = LinkConfig::default();
    link.reconnect = ReconnectPolicy::fixed(Duration::from_millis(20));
    c.link = link;
    c
}

async fn peer(name: &str, config: RpcConfig) -> Rpc {
    let m = Messaging::new(id(name), messaging_config()).await.unwrap();
    Rpc::new(m, config).unwrap()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A server listening and a client connected to it, both identified.
async fn pair(server: RpcConfig, client: RpcConfig) -> (Rpc, Rpc) {
    let s = peer("server", server).await;
    let at = s
        .messaging()
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let c = peer("client", client).await;
    c.messaging().link().connect(&at).unwrap();
    until("the pair to connect", || {
        s.messaging().is_connected(&id("client")) && c.messaging().is_connected(&id("server"))
    })
    .await;
    (s, c)
}

/// The default config, with every handler spawned or not: each guarantee
/// below that a handler's way of running could touch is checked both ways.
fn config(spawn_handlers: bool) -> RpcConfig {
    let mut c = RpcConfig::default();
    c.server.spawn_handlers = spawn_handlers;
    c
}

fn serve_add(rpc: &Rpc) {
    rpc.register(ADD, |(a, b)| async move { Ok::<_, Infallible>(a + b) });
}

fn opts() -> CallOptions {
    CallOptions::timeout(WAIT)
}

/// Sends the instant it is dropped: shows a handler was stopped.
struct OnDrop(mpsc::Sender<Instant>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.try_send(Instant::now());
    }
}

/// Results skip the inbound queue (they only wake their callers): a burst
/// of them is never dropped, however small that queue is.
#[tokio::test]
async fn a_burst_of_results_never_waits_in_the_inbound_queue() {
    let mut small = RpcConfig::default();
    small.inbound_capacity = 1;
    let (server, client) = pair(RpcConfig::default(), small).await;
    serve_add(&server);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..64 {
        let client = client.clone();
        calls.spawn(async move {
            let sum = client.call_with(&id("server"), ADD, (i, 1), opts()).await;
            (i, sum)
        });
    }
    while let Some(done) = calls.join_next().await {
        let (i, sum) = done.unwrap();
        assert_eq!(sum.unwrap(), i + 1);
    }
    assert_eq!(client.stats().inbound_dropped, 0);
}

#[tokio::test]
async fn a_typed_call_and_its_result() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_add(&server);
    assert_eq!(client.call(&id("server"), ADD, (2, 40)).await.unwrap(), 42);
    assert_eq!(client.call(&id("server"), ADD, (1, 1)).await.unwrap(), 2);
    let s = server.stats();
    assert_eq!((s.calls_received, s.calls_executed), (2, 2));
    assert_eq!(client.stats().results_received, 2);
}

#[tokio::test]
async fn a_call_waits_for_its_peer_to_connect() {
    let server = peer("server", RpcConfig::default()).await;
    serve_add(&server);
    let at = server
        .messaging()
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let client = peer("client", RpcConfig::default()).await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call_with(&id("server"), ADD, (3, 4), opts()).await }
    });
    until("the call to be queued", || {
        client.messaging().queue_depth(&id("server")) == 1
    })
    .await;
    client.messaging().link().connect(&at).unwrap();
    assert_eq!(timeout(WAIT, call).await.unwrap().unwrap().unwrap(), 7);
    assert_eq!(
        client.stats().calls_resent,
        0,
        "queued calls are not sent twice"
    );
}

#[tokio::test]
async fn a_call_whose_connection_is_cut_after_the_server_got_it_runs_once() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    let (runs, release, mut started) = serve_slow_add(&server);
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call_with(&id("server"), SLOW_ADD, (20, 22), opts())
                .await
        }
    });
    timeout(WAIT, started.recv()).await.unwrap().unwrap();

    // The server received the call and runs it: cut every connection.
    let connections = server.messaging().link().connections();
    assert!(!connections.is_empty());
    for c in connections {
        c.abort();
    }
    // The client reconnects and sends the call again, same id; the server
    // sees the repeat while the first is still running and does not run it.
    until("the repeated call to reach the server", || {
        server.stats().duplicates_running >= 1
    })
    .await;
    assert!(client.stats().calls_resent >= 1);
    release.add_permits(1);

    let got = timeout(WAIT, call).await.unwrap().unwrap().unwrap();
    assert_eq!(got, 42);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "executed exactly once");
    assert_eq!(server.stats().calls_executed, 1);
    assert!(started.try_recv().is_err(), "the handler started once");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_stops_the_server() {
    deadline_stops_the_server(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_stops_a_spawned_handler() {
    deadline_stops_the_server(true).await;
}

async fn deadline_stops_the_server(spawn: bool) {
    // Calls to our own identity stay in the process: the clock can be
    // paused without a network underneath.
    let mut config = config(spawn);
    config.server.max_deadline = Duration::from_secs(600);
    let rpc = peer("solo", config).await;
    let finished = Arc::new(AtomicBool::new(false));
    let (dropped_tx, mut dropped) = mpsc::channel(4);
    const SLEEP: Method<u64, ()> = Method::new("slow", "sleep");
    rpc.register(SLEEP, {
        let finished = finished.clone();
        move |secs: u64| {
            let (finished, guard) = (finished.clone(), OnDrop(dropped_tx.clone()));
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(secs)).await;
                finished.store(true, Ordering::SeqCst);
                Ok::<_, Infallible>(())
            }
        }
    });

    // 1. A CALL frame as a peer sends it, with a relative deadline of
    //    1.5 s and no CANCEL to follow: the server stops at the deadline.
    let args = postcard::to_allocvec(&60u64).unwrap();
    let frame = Frame::Call(Call {
        id: 77,
        object: "slow",
        method: "sleep",
        deadline_ms: 1500,
        args: &args,
    })
    .encode();
    let start = Instant::now();
    rpc.messaging()
        .try_send_message(
            rpc.identity(),
            Message::new(frame).with_ttl(Duration::from_secs(60)),
        )
        .unwrap();
    let stopped_at = timeout(WAIT, dropped.recv()).await.unwrap().unwrap();
    assert_eq!(stopped_at - start, Duration::from_millis(1500));
    assert_eq!(rpc.stats().deadline_exceeded, 1);
    assert!(!finished.load(Ordering::SeqCst));

    // 2. A typed call with a 2 s timeout: the caller gets Timeout at 2 s
    //    and the server stops working on it (deadline or CANCEL, whichever
    //    it sees first: they are due at the same instant here).
    let start = Instant::now();
    let err = rpc
        .call_with(
            rpc.identity(),
            SLEEP,
            60,
            CallOptions::timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Timeout(d) if d == Duration::from_secs(2)),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let stopped_at = timeout(WAIT, dropped.recv()).await.unwrap().unwrap();
    assert_eq!(stopped_at - start, Duration::from_secs(2));
    let s = rpc.stats();
    assert_eq!(s.deadline_exceeded + s.cancelled, 2);
    assert_eq!(s.timed_out, 1);

    // 3. The server's own cap applies whatever the caller asks.
    drop(rpc);
    let mut config = self::config(spawn);
    config.server.max_deadline = Duration::from_secs(1);
    let rpc = Rpc::new(
        Messaging::new(id("solo2"), messaging_config())
            .await
            .unwrap(),
        config,
    )
    .unwrap();
    rpc.register(SLEEP, |secs: u64| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<_, Infallible>(())
    });
    let start = Instant::now();
    let err = rpc
        .call_with(rpc.identity(), SLEEP, 60, CallOptions::timeout(WAIT))
        .await
        .unwrap_err();
    match err {
        RpcError::Remote(e) => assert_eq!(e.kind, RemoteErrorKind::DeadlineExceeded),
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(1));

    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        !finished.load(Ordering::SeqCst),
        "no handler ran to its end"
    );
}

#[tokio::test]
async fn dropping_a_call_cancels_it_on_the_server() {
    dropping_cancels(false).await;
}

#[tokio::test]
async fn dropping_a_call_cancels_its_spawned_handler() {
    dropping_cancels(true).await;
}

/// Serves SLOW_ADD: a sum that waits for a permit of the returned
/// semaphore. Also returns how many times it ran and a channel that says
/// when one starts.
fn serve_slow_add(server: &Rpc) -> (Arc<AtomicUsize>, Arc<Semaphore>, mpsc::Receiver<()>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (started_tx, started) = mpsc::channel(4);
    server.register(SLOW_ADD, {
        let (runs, release) = (runs.clone(), release.clone());
        move |(a, b)| {
            let (runs, release, started_tx) = (runs.clone(), release.clone(), started_tx.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = started_tx.send(()).await;
                release.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(a + b)
            }
        }
    });
    (runs, release, started)
}

/// Serves HANG: a handler that never finishes. Says when one starts and
/// when one is dropped (stopped).
fn serve_hang(server: &Rpc) -> (mpsc::Receiver<()>, mpsc::Receiver<Instant>) {
    let (started_tx, started) = mpsc::channel(4);
    let (dropped_tx, dropped) = mpsc::channel(4);
    server.register(HANG, move |()| {
        let (started_tx, guard) = (started_tx.clone(), OnDrop(dropped_tx.clone()));
        async move {
            let _guard = guard;
            let _ = started_tx.send(()).await;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(())
        }
    });
    (started, dropped)
}

/// Calls HANG on the server, in a task of its own.
fn call_hang(client: &Rpc) -> tokio::task::JoinHandle<Result<(), RpcError>> {
    let client = client.clone();
    tokio::spawn(async move { client.call_with(&id("server"), HANG, (), opts()).await })
}

async fn dropping_cancels(spawn: bool) {
    // One turn: the stopped handler must give it back for the last call.
    let mut config = config(spawn);
    config.server.max_concurrent_calls = 1;
    let (server, client) = pair(config, RpcConfig::default()).await;
    serve_add(&server);
    let (mut started, mut dropped) = serve_hang(&server);
    let call = call_hang(&client);
    timeout(WAIT, started.recv()).await.unwrap().unwrap();
    call.abort();
    timeout(WAIT, dropped.recv())
        .await
        .expect("the handler is stopped on the server")
        .unwrap();
    until("the cancel to be counted", || server.stats().cancelled == 1).await;
    assert_eq!(client.stats().cancels_sent, 1);
    assert_eq!(server.stats().in_progress, 0);
    assert_eq!(client.call(&id("server"), ADD, (1, 2)).await.unwrap(), 3);
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open ledger `{name}`")]
struct LedgerError {
    name: String,
    #[source]
    cause: StorageError,
}

#[derive(Debug, thiserror::Error)]
#[error("storage unavailable")]
struct StorageError(#[source] std::io::Error);

fn serve_open(rpc: &Rpc) {
    rpc.register(OPEN, |name: String| async move {
        Err::<u64, _>(LedgerError {
            name,
            cause: StorageError(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            )),
        })
    });
}

#[tokio::test]
async fn a_remote_error_comes_back_typed_with_its_context() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_open(&server);
    let err = client
        .call_with(&id("server"), OPEN, "main".to_string(), opts())
        .await
        .unwrap_err();
    let RpcError::Remote(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind, RemoteErrorKind::Application);
    assert_eq!(e.type_name, std::any::type_name::<LedgerError>());
    assert_eq!(e.message, "cannot open ledger `main`");
    assert_eq!(e.context, vec!["storage unavailable", "no such file"]);
    assert!(e.to_string().contains("cannot open ledger `main`"));
}

#[tokio::test]
async fn without_error_transfer_the_caller_learns_only_that_the_call_failed() {
    let mut quiet = RpcConfig::default();
    quiet.server.transfer_errors = false;
    let (server, client) = pair(quiet, RpcConfig::default()).await;
    serve_open(&server);
    serve_add(&server);
    server.register(BOOM, |n: u32| async move {
        if n == 7 {
            panic!("boom {n}");
        }
        Ok::<_, Infallible>(n)
    });
    let remote = |r: Result<(), RpcError>| match r {
        Err(RpcError::Remote(e)) => e,
        other => panic!("{other:?}"),
    };
    let to = id("server");

    let r = client.call_with(&to, OPEN, "main".into(), opts()).await;
    let e = remote(r.map(drop));
    assert_eq!(e, RemoteError::bare(RemoteErrorKind::Application));
    assert_eq!(e.to_string(), "remote application error");
    let r = client.call_with(&to, BOOM, 7, opts()).await;
    assert_eq!(
        remote(r.map(drop)),
        RemoteError::bare(RemoteErrorKind::Panic)
    );
    let r = client.call_with(&to, NOPE, (), opts()).await;
    assert_eq!(remote(r), RemoteError::bare(RemoteErrorKind::UnknownMethod));
    let r = client.call_raw(&to, "calc", "add", &[0xff; 12], WAIT).await;
    assert_eq!(
        remote(r.map(drop)),
        RemoteError::bare(RemoteErrorKind::BadPayload)
    );
    // The server keeps serving.
    assert_eq!(client.call(&to, ADD, (2, 3)).await.unwrap(), 5);
}

#[tokio::test]
async fn unknown_methods_and_objects_are_typed_errors() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_add(&server);
    let kind = |r: Result<(), RpcError>| match r {
        Err(RpcError::Remote(e)) => e.kind,
        other => panic!("{other:?}"),
    };
    let r = client.call_with(&id("server"), NOPE, (), opts()).await;
    assert_eq!(kind(r), RemoteErrorKind::UnknownMethod);
    let r = client.call_with(&id("server"), NOBODY, (), opts()).await;
    assert_eq!(kind(r), RemoteErrorKind::UnknownObject);
    assert_eq!(server.stats().unknown, 2);
    assert_eq!(client.call(&id("server"), ADD, (1, 1)).await.unwrap(), 2);
    assert!(server.unregister("calc", "add"));
    let r = client.call_with(&id("server"), ADD, (1, 1), opts()).await;
    assert!(matches!(r, Err(RpcError::Remote(e)) if e.kind == RemoteErrorKind::UnknownObject));
}

#[tokio::test]
async fn bad_payloads_and_malformed_frames_are_answered_and_survived() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_add(&server);
    // Arguments that do not decode as (i32, i32).
    let err = client
        .call_raw(&id("server"), "calc", "add", &[0xff; 12], WAIT)
        .await
        .unwrap_err();
    let RpcError::Remote(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind, RemoteErrorKind::BadPayload);
    assert_eq!(e.type_name, "(i32, i32)");

    // A CALL whose body is garbage after a readable id: answered with
    // BadPayload for that id; the client has no such call waiting.
    client
        .messaging()
        .try_send_message(&id("server"), Message::new(&b"\xF7rpc\x01\x05\xff\xff"[..]))
        .unwrap();
    // A frame kind nobody knows, and a bare tag.
    for junk in [&b"\xF7rpc\x63abc"[..], &b"\xF7rpc"[..]] {
        client
            .messaging()
            .try_send_message(&id("server"), Message::new(junk))
            .unwrap();
    }
    until("the bad frames", || server.stats().bad_frames == 3).await;
    until("the BadPayload answer", || {
        client.stats().results_unmatched == 1
    })
    .await;
    // Still serving.
    assert_eq!(client.call(&id("server"), ADD, (5, 5)).await.unwrap(), 10);
}

#[tokio::test]
async fn a_panicking_handler_is_an_error_and_the_server_keeps_serving() {
    panicking_handler(false).await;
}

#[tokio::test]
async fn a_panicking_spawned_handler_is_an_error_too() {
    panicking_handler(true).await;
}

async fn panicking_handler(spawn: bool) {
    // One turn: the panicked handler must give it back for the next calls.
    let mut config = config(spawn);
    config.server.max_concurrent_calls = 1;
    let (server, client) = pair(config, RpcConfig::default()).await;
    serve_add(&server);
    server.register(BOOM, |n: u32| async move {
        if n == 7 {
            panic!("boom {n}");
        }
        Ok::<_, Infallible>(n)
    });
    let err = client
        .call_with(&id("server"), BOOM, 7, opts())
        .await
        .unwrap_err();
    let RpcError::Remote(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind, RemoteErrorKind::Panic);
    assert_eq!(e.message, "boom 7");
    assert_eq!(server.stats().panics, 1);
    assert_eq!(client.call(&id("server"), BOOM, 8).await.unwrap(), 8);
    assert_eq!(client.call(&id("server"), ADD, (1, 2)).await.unwrap(), 3);
}

#[tokio::test]
async fn many_concurrent_calls_in_both_directions() {
    let (a, b) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_add(&a);
    serve_add(&b);
    const N: i32 = 300;
    let mut calls = JoinSet::new();
    for i in 0..N {
        for (from, to) in [(a.clone(), "client"), (b.clone(), "server")] {
            calls.spawn(async move {
                let got = from.call_with(&id(to), ADD, (i, 1000), opts()).await;
                (i, got)
            });
        }
    }
    let mut done = 0;
    while let Some(joined) = timeout(WAIT, calls.join_next()).await.unwrap() {
        let (i, got) = joined.unwrap();
        assert_eq!(got.unwrap(), i + 1000);
        done += 1;
    }
    assert_eq!(done, 2 * N);
    for rpc in [&a, &b] {
        let s = rpc.stats();
        assert_eq!(s.calls_executed, N as u64);
        assert_eq!(s.results_received, N as u64);
    }
}

#[tokio::test(start_paused = true)]
async fn a_signal_whose_ttl_runs_out_before_the_peer_connects_never_runs() {
    let caller = peer("caller", RpcConfig::default()).await;
    caller
        .signal(&id("server"), NOTE, 1, Duration::from_secs(1))
        .unwrap();
    assert_eq!(caller.messaging().queue_depth(&id("server")), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(caller.messaging().stats().expired, 1);
    assert_eq!(caller.messaging().queue_depth(&id("server")), 0);

    // Real time from here: the server starts and the caller connects.
    tokio::time::resume();
    let server = peer("server", RpcConfig::default()).await;
    let (notes_tx, mut notes) = mpsc::channel(8);
    server.register(NOTE, move |n: u32| {
        let notes_tx = notes_tx.clone();
        async move {
            let _ = notes_tx.send(n).await;
            Ok::<_, Infallible>(())
        }
    });
    serve_add(&server);
    let at = server
        .messaging()
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    caller.messaging().link().connect(&at).unwrap();
    // A later signal with time to spare arrives and runs; it would have
    // arrived after the first, had the first not expired.
    caller
        .signal(&id("server"), NOTE, 2, Duration::from_secs(60))
        .unwrap();
    assert_eq!(timeout(WAIT, notes.recv()).await.unwrap(), Some(2));
    assert_eq!(caller.call(&id("server"), ADD, (0, 0)).await.unwrap(), 0);
    assert!(notes.try_recv().is_err(), "the expired signal never ran");
    let s = server.stats();
    assert_eq!((s.signals_received, s.signals_executed), (1, 1));
    assert_eq!(caller.stats().signals_sent, 2);
}

#[tokio::test]
async fn signals_never_wait_and_unknown_ones_are_counted() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    let (tx, mut rx) = mpsc::channel(8);
    server.register(NOTE, move |n: u32| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(n).await;
            Ok::<_, Infallible>(())
        }
    });
    client.signal(&id("server"), NOBODY, (), WAIT).unwrap();
    client.signal(&id("server"), NOTE, 5, WAIT).unwrap();
    assert_eq!(timeout(WAIT, rx.recv()).await.unwrap(), Some(5));
    until("the unknown signal", || server.stats().unknown == 1).await;
}

#[tokio::test]
async fn the_concurrency_limit_holds_and_beyond_the_waiting_room_calls_are_refused() {
    concurrency_limit(false).await;
}

#[tokio::test]
async fn the_concurrency_limit_holds_for_spawned_handlers() {
    concurrency_limit(true).await;
}

async fn concurrency_limit(spawn: bool) {
    let mut config = config(spawn);
    config.server.max_concurrent_calls = 2;
    config.server.max_waiting_calls = 2;
    let (server, client) = pair(config, RpcConfig::default()).await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::channel(8);
    server.register(SLOW_ADD, {
        let (running, most, release) = (running.clone(), most.clone(), release.clone());
        move |(a, b)| {
            let (running, most, release, started_tx) = (
                running.clone(),
                most.clone(),
                release.clone(),
                started_tx.clone(),
            );
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _ = started_tx.send(()).await;
                release.acquire().await.unwrap().forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(a + b)
            }
        }
    });
    let mut calls = JoinSet::new();
    for i in 0..6 {
        let client = client.clone();
        calls.spawn(async move {
            client
                .call_with(&id("server"), SLOW_ADD, (i, 0), opts())
                .await
        });
    }
    until("all six calls to arrive", || {
        server.stats().calls_received == 6
    })
    .await;
    for _ in 0..2 {
        timeout(WAIT, started.recv()).await.unwrap().unwrap();
    }
    // Two run, two wait for a turn, two were refused at once.
    assert_eq!(running.load(Ordering::SeqCst), 2);
    let s = server.stats();
    assert_eq!((s.in_progress, s.overloaded, s.calls_executed), (4, 2, 2));
    let mut overloaded = 0;
    for _ in 0..2 {
        let done = timeout(WAIT, calls.join_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match done {
            Err(RpcError::Remote(e)) if e.kind == RemoteErrorKind::Overloaded => overloaded += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(overloaded, 2);
    release.add_permits(4);
    let mut ok = 0;
    while let Some(done) = timeout(WAIT, calls.join_next()).await.unwrap() {
        done.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 4);
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than the limit at once"
    );
    assert_eq!(server.stats().in_progress, 0);
}

/// A peer that speaks the wire format by hand, to repeat call ids.
async fn raw_call(raw: &Messaging, call_id: u64) -> u64 {
    let args = postcard::to_allocvec(&()).unwrap();
    let frame = Frame::Call(Call {
        id: call_id,
        object: "calc",
        method: "count",
        deadline_ms: 10_000,
        args: &args,
    })
    .encode();
    raw.try_send_message(&id("server"), Message::new(frame).with_ttl(WAIT))
        .unwrap();
    let got = raw.recv(Some(WAIT)).await.unwrap();
    match Frame::parse(&got.message.data).unwrap() {
        Frame::Result(Reply {
            id,
            outcome: Outcome::Ok(value),
        }) => {
            assert_eq!(id, call_id);
            postcard::from_bytes(value).unwrap()
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn repeated_ids_are_answered_from_a_bounded_cache() {
    let mut config = RpcConfig::default();
    config.server.result_cache = 2;
    let server = peer("server", config).await;
    let runs = Arc::new(AtomicUsize::new(0));
    server.register(COUNT, {
        let runs = runs.clone();
        move |()| {
            let n = runs.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            async move { Ok::<_, Infallible>(n) }
        }
    });
    let at = server
        .messaging()
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let raw = Messaging::new(id("raw"), messaging_config()).await.unwrap();
    raw.link().connect(&at).unwrap();

    assert_eq!(raw_call(&raw, 1).await, 1);
    assert_eq!(raw_call(&raw, 2).await, 2);
    assert_eq!(raw_call(&raw, 3).await, 3);
    // The last two are remembered: repeats do not run again.
    assert_eq!(raw_call(&raw, 3).await, 3);
    assert_eq!(raw_call(&raw, 2).await, 2);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // The first fell out of the cache: a repeat this old runs again.
    assert_eq!(raw_call(&raw, 1).await, 4);
    let s = server.stats();
    assert_eq!(s.duplicates_cached, 2);
    assert_eq!(
        s.cached_results, 2,
        "never more than result_cache per caller"
    );
    assert_eq!(s.results_evicted, 2);
}

#[tokio::test]
async fn sizes_are_bounded_both_ways() {
    let mut small_server = RpcConfig::default();
    small_server.max_response_bytes = 200;
    let mut small_client = RpcConfig::default();
    small_client.max_request_bytes = 300;
    small_client.max_response_bytes = 400;
    let (server, client) = pair(small_server, small_client).await;
    server.register(ECHO, |v: Vec<u8>| async move { Ok::<_, Infallible>(v) });
    // Within limits.
    assert_eq!(
        client
            .call(&id("server"), ECHO, vec![1; 100])
            .await
            .unwrap(),
        vec![1; 100]
    );
    // A request over the caller's limit never leaves.
    let err = client
        .call(&id("server"), ECHO, vec![1; 300])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::TooLarge {
                what: "request",
                limit: 300,
                ..
            }
        ),
        "{err:?}"
    );
    // A result over the server's limit becomes an error.
    let err = client
        .call(&id("server"), ECHO, vec![1; 250])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote(e) if e.kind == RemoteErrorKind::TooLarge),
        "{err:?}"
    );
    assert_eq!(client.stats().calls_sent, 2);
}

#[tokio::test]
async fn a_response_over_the_callers_limit_fails_the_call() {
    let mut small = RpcConfig::default();
    small.max_response_bytes = 64;
    let (server, client) = pair(RpcConfig::default(), small).await;
    server.register(ECHO, |v: Vec<u8>| async move { Ok::<_, Infallible>(v) });
    let err = client
        .call(&id("server"), ECHO, vec![7; 100])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::TooLarge {
                what: "response",
                limit: 64,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn closing_cancels_waiting_calls_and_refuses_new_ones() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    let (mut started, mut dropped) = serve_hang(&server);
    let call = call_hang(&client);
    timeout(WAIT, started.recv()).await.unwrap().unwrap();
    timeout(WAIT, client.close()).await.unwrap();
    let err = timeout(WAIT, call).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, RpcError::Cancelled), "{err:?}");
    timeout(WAIT, dropped.recv()).await.unwrap().unwrap();
    let err = client.call(&id("server"), ADD, (1, 1)).await.unwrap_err();
    assert!(matches!(err, RpcError::Closed), "{err:?}");
}

#[tokio::test]
async fn a_dropped_rpc_stops_serving() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_add(&server);
    assert_eq!(client.call(&id("server"), ADD, (1, 1)).await.unwrap(), 2);
    let messaging = server.messaging().clone();
    drop(server);
    // Nobody serves any more; the messaging instance still runs.
    let err = client
        .call_with(
            &id("server"),
            ADD,
            (1, 1),
            CallOptions::timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout(_)), "{err:?}");
    assert!(messaging.is_connected(&id("client")));
}

#[tokio::test]
async fn a_handler_can_call_back_its_caller() {
    const VIA: Method<i32, i32> = Method::new("relay", "add_via_caller");
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_add(&client);
    server.register(VIA, {
        let server = server.clone();
        move |n: i32| {
            let (server, caller) = (server.clone(), id("client"));
            async move { server.call_with(&caller, ADD, (n, n), opts()).await }
        }
    });
    assert_eq!(client.call(&id("server"), VIA, 21).await.unwrap(), 42);
    // The handler holds the server's Rpc: close breaks that cycle.
    timeout(WAIT, server.close()).await.unwrap();
    let err = client
        .call_with(
            &id("server"),
            VIA,
            1,
            CallOptions::timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout(_)), "{err:?}");
}

const TASK: Method<(), String> = Method::new("where", "task");

/// Serves [`TASK`]: the id of the task that runs the handler.
fn serve_task_id(rpc: &Rpc) {
    rpc.register(TASK, |()| async move {
        Ok::<_, Infallible>(tokio::task::try_id().map_or("none".into(), |id| id.to_string()))
    });
}

#[tokio::test]
async fn handlers_that_finish_at_once_run_in_the_dispatcher_unless_spawned() {
    for spawn in [false, true] {
        let (server, client) = pair(config(spawn), RpcConfig::default()).await;
        serve_task_id(&server);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(
                client
                    .call_with(&id("server"), TASK, (), opts())
                    .await
                    .unwrap(),
            );
        }
        tasks.dedup();
        if spawn {
            assert_eq!(tasks.len(), 3, "a task of its own for each: {tasks:?}");
        } else {
            assert_eq!(tasks.len(), 1, "all in the task that read them: {tasks:?}");
        }
        let s = server.stats();
        assert_eq!((s.calls_executed, s.in_progress), (3, 0));
    }
}

#[tokio::test]
async fn a_lone_call_is_answered_on_the_task_that_read_it() {
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    serve_task_id(&server);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(
            client
                .call_with(&id("server"), TASK, (), opts())
                .await
                .unwrap(),
        );
    }
    tasks.dedup();
    assert_eq!(tasks.len(), 1, "all in messaging's task: {tasks:?}");
    let s = server.stats();
    assert_eq!(
        (s.calls_received, s.calls_inline, s.calls_executed),
        (3, 3, 3)
    );
    assert_eq!(s.in_progress, 0);
}

#[tokio::test]
async fn a_burst_of_calls_goes_to_the_dispatcher_but_its_first_call() {
    // A current-thread runtime and calls to ourselves: the 64 CALL frames
    // are read in one run of messages.
    let rpc = peer("solo", RpcConfig::default()).await;
    let handled = Arc::new(AtomicUsize::new(0));
    rpc.register(TASK, {
        let handled = handled.clone();
        move |()| {
            handled.fetch_add(1, Ordering::SeqCst);
            let task = tokio::task::try_id().map_or("none".into(), |id| id.to_string());
            async move { Ok::<_, Infallible>(task) }
        }
    });
    let watcher = tokio::spawn(watch(handled.clone(), 64));
    let mut calls = JoinSet::new();
    for _ in 0..64 {
        let rpc = rpc.clone();
        calls.spawn(async move { rpc.call_with(rpc.identity(), TASK, (), opts()).await });
    }
    let mut seen = timeout(WAIT, watcher).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    while let Some(done) = timeout(WAIT, calls.join_next()).await.unwrap() {
        tasks.push(done.unwrap().unwrap());
    }
    tasks.sort();
    tasks.dedup();
    assert_eq!(tasks.len(), 2, "messaging's task and the dispatcher's");
    let s = rpc.stats();
    assert_eq!(
        (s.calls_received, s.calls_inline, s.calls_executed),
        (64, 1, 64)
    );
    seen.retain(|&n| n > 1); // whether it ran before or after the first is no matter
    assert_eq!(
        seen,
        vec![33, 64],
        "the rest in two halves, the watcher between"
    );
}

#[tokio::test]
async fn a_call_behind_a_frame_waiting_for_the_dispatcher_waits_its_turn() {
    // A signal and a call to ourselves, read in one run: the call, first
    // of its run, still goes after the signal, through the dispatcher.
    let rpc = peer("solo", RpcConfig::default()).await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    rpc.register(NOTE, {
        let order = order.clone();
        move |n: u32| {
            order.lock().unwrap().push(n);
            async move { Ok::<_, Infallible>(()) }
        }
    });
    rpc.register(ADD, {
        let order = order.clone();
        move |(a, b): (i32, i32)| {
            order.lock().unwrap().push(0);
            async move { Ok::<_, Infallible>(a + b) }
        }
    });
    rpc.signal(rpc.identity(), NOTE, 1, WAIT).unwrap();
    let sum = rpc.call_with(rpc.identity(), ADD, (2, 3), opts()).await;
    assert_eq!(sum.unwrap(), 5);
    assert_eq!(*order.lock().unwrap(), vec![1, 0], "in the order sent");
    let s = rpc.stats();
    assert_eq!((s.calls_received, s.calls_inline), (1, 0));
    // Alone, with the dispatcher idle, the next one is handled at once.
    let sum = rpc.call_with(rpc.identity(), ADD, (1, 1), opts()).await;
    assert_eq!(sum.unwrap(), 2);
    assert_eq!(rpc.stats().calls_inline, 1);
}

#[tokio::test]
async fn a_handler_run_by_the_dispatcher_may_use_its_own_rpc() {
    const INSPECT: Method<(), u64> = Method::new("self", "inspect");
    let (server, client) = pair(RpcConfig::default(), RpcConfig::default()).await;
    server.register(INSPECT, {
        let server = server.clone();
        move |()| {
            // All before the first await: this runs in the dispatcher.
            let executed = server.stats().calls_executed;
            serve_add(&server);
            assert!(server.unregister("calc", "add"));
            async move { Ok::<_, Infallible>(executed) }
        }
    });
    assert_eq!(client.call(&id("server"), INSPECT, ()).await.unwrap(), 1);
    assert_eq!(client.call(&id("server"), INSPECT, ()).await.unwrap(), 2);
    timeout(WAIT, server.close()).await.unwrap();
}

#[tokio::test]
async fn a_call_that_would_finish_at_once_still_waits_for_a_turn() {
    let mut config = RpcConfig::default();
    config.server.max_concurrent_calls = 1;
    let (server, client) = pair(config, RpcConfig::default()).await;
    serve_add(&server);
    let (_, release, mut started) = serve_slow_add(&server);
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call_with(&id("server"), SLOW_ADD, (1, 1), opts())
                .await
        }
    });
    timeout(WAIT, started.recv()).await.unwrap().unwrap();
    let quick = tokio::spawn({
        let client = client.clone();
        async move { client.call_with(&id("server"), ADD, (2, 2), opts()).await }
    });
    until("the quick call to arrive", || {
        server.stats().calls_received == 2
    })
    .await;
    // The slow call holds the only turn: the quick one waits, not run.
    let s = server.stats();
    assert_eq!((s.calls_executed, s.in_progress), (1, 2));
    assert!(!quick.is_finished());
    release.add_permits(1);
    assert_eq!(timeout(WAIT, slow).await.unwrap().unwrap().unwrap(), 2);
    assert_eq!(timeout(WAIT, quick).await.unwrap().unwrap().unwrap(), 4);
    let s = server.stats();
    assert_eq!((s.calls_executed, s.in_progress), (2, 0));
}

#[tokio::test]
async fn a_call_waiting_for_a_turn_is_cancelled_without_running() {
    for spawn in [false, true] {
        let mut config = config(spawn);
        config.server.max_concurrent_calls = 1;
        let (server, client) = pair(config, RpcConfig::default()).await;
        let (runs, release, mut started) = serve_slow_add(&server);
        let call = |n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call_with(&id("server"), SLOW_ADD, (n, 0), opts())
                    .await
            })
        };
        let first = call(1);
        timeout(WAIT, started.recv()).await.unwrap().unwrap();
        let second = call(2);
        until("the second call to wait for a turn", || {
            server.stats().in_progress == 2
        })
        .await;
        second.abort();
        until("the cancel", || server.stats().cancelled == 1).await;
        assert_eq!(server.stats().in_progress, 1);
        release.add_permits(1);
        assert_eq!(timeout(WAIT, first).await.unwrap().unwrap().unwrap(), 1);
        until("the first call to end", || server.stats().in_progress == 0).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the cancelled call never ran"
        );
        assert_eq!(server.stats().calls_executed, 1);
    }
}

#[tokio::test]
async fn signals_that_wait_or_panic_are_counted_and_leave_their_place() {
    const WAIT_NOTE: Method<u32, ()> = Method::new("log", "wait");
    const BAD_NOTE: Method<u32, ()> = Method::new("log", "bad");
    for spawn in [false, true] {
        let (server, client) = pair(config(spawn), RpcConfig::default()).await;
        let release = Arc::new(Semaphore::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        server.register(WAIT_NOTE, {
            let (release, done) = (release.clone(), done.clone());
            move |_n: u32| {
                let (release, done) = (release.clone(), done.clone());
                async move {
                    release.acquire().await.unwrap().forget();
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(())
                }
            }
        });
        server.register(BAD_NOTE, |n: u32| async move {
            if n > 0 {
                panic!("bad note {n}");
            }
            Ok::<_, Infallible>(())
        });
        client.signal(&id("server"), BAD_NOTE, 1, WAIT).unwrap();
        client.signal(&id("server"), WAIT_NOTE, 1, WAIT).unwrap();
        until("both signals to start", || {
            let s = server.stats();
            s.panics == 1 && s.signals_executed == 2
        })
        .await;
        // The one that waits holds its place; the one that panicked left it.
        assert_eq!(server.stats().in_progress, 1);
        release.add_permits(1);
        until("the waiting signal to end", || {
            server.stats().in_progress == 0
        })
        .await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}

/// Wakes itself at every poll, so that it runs whenever the runtime's
/// other ready tasks let it, and records `handled` each time.
async fn watch(handled: Arc<AtomicUsize>, until: usize) -> Vec<usize> {
    let mut seen = Vec::new();
    std::future::poll_fn(|cx| {
        let now = handled.load(Ordering::SeqCst);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if now >= until {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
    seen
}

#[tokio::test]
async fn a_burst_of_frames_is_handled_in_two_halves_with_other_tasks_between() {
    // A current-thread runtime and signals to ourselves: the 64 frames
    // reach the dispatcher at once, and what runs between its chunks is
    // deterministic.
    let rpc = peer("solo", RpcConfig::default()).await;
    let handled = Arc::new(AtomicUsize::new(0));
    rpc.register(NOTE, {
        let handled = handled.clone();
        move |_n: u32| {
            handled.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Infallible>(()) }
        }
    });
    let watcher = tokio::spawn(watch(handled.clone(), 64));
    for n in 0..64 {
        rpc.signal(rpc.identity(), NOTE, n, WAIT).unwrap();
    }
    let mut seen = timeout(WAIT, watcher).await.unwrap().unwrap();
    seen.retain(|&n| n > 0); // whether it ran before the burst is no matter
    assert_eq!(seen, vec![32, 64], "the watcher ran between the halves");
    assert_eq!(rpc.stats().signals_executed, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_finish_at_once_or_wait_run_once_each_on_worker_threads() {
    const MAYBE_WAIT: Method<i32, i32> = Method::new("calc", "maybe_wait");
    for spawn in [false, true] {
        let mut config = config(spawn);
        config.server.max_concurrent_calls = 8;
        let (server, client) = pair(config, RpcConfig::default()).await;
        let runs = Arc::new(AtomicUsize::new(0));
        server.register(MAYBE_WAIT, {
            let runs = runs.clone();
            move |n: i32| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if n % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    Ok::<_, Infallible>(n * 2)
                }
            }
        });
        const N: i32 = 600;
        let mut calls = JoinSet::new();
        for n in 0..N {
            let client = client.clone();
            calls.spawn(async move {
                let got = client.call_with(&id("server"), MAYBE_WAIT, n, opts()).await;
                (n, got)
            });
        }
        while let Some(joined) = timeout(WAIT, calls.join_next()).await.unwrap() {
            let (n, got) = joined.unwrap();
            assert_eq!(got.unwrap(), n * 2);
        }
        assert_eq!(runs.load(Ordering::SeqCst), N as usize, "each ran once");
        until("every handler to end", || server.stats().in_progress == 0).await;
        let s = server.stats();
        assert_eq!((s.calls_executed, s.overloaded), (N as u64, 0));
    }
}
