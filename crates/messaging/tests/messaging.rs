//! Identity messaging between weft peers on loopback.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use weft_messaging::config::{DuplicateIdentity, QueuePolicy};
use weft_messaging::error::{Misuse, ProtocolError, StorageError};
use weft_messaging::internal::frame::{Frame, PROTOCOL_VERSION};
use weft_messaging::storage::{Loaded, MemoryStorage, Storage, StoredMessage};
use weft_messaging::{Message, Messaging, MessagingConfig, MessagingError, Subscription};

mod common;
use common::{WAIT, config, id, until};

async fn pair(config_a: MessagingConfig, config_b: MessagingConfig) -> (Messaging, Messaging) {
    let a = Messaging::new(id("a"), config_a).await.unwrap();
    let at = a.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    let b = Messaging::new(id("b"), config_b).await.unwrap();
    b.link().connect(&at).unwrap();
    (a, b)
}

#[tokio::test]
async fn messages_both_ways_whoever_listened() {
    let (a, b) = pair(config(), config()).await;
    b.send_message(&id("a"), Message::new("from b"))
        .await
        .unwrap();
    a.send_message(&id("b"), Message::new("from a"))
        .await
        .unwrap();
    let got = a.recv(Some(WAIT)).await.unwrap();
    assert_eq!(
        (got.from.as_str(), &got.message.data[..]),
        ("b", &b"from b"[..])
    );
    let got = b.recv(Some(WAIT)).await.unwrap();
    assert_eq!(
        (got.from.as_str(), &got.message.data[..]),
        ("a", &b"from a"[..])
    );
    until("both delivered", || {
        a.stats().delivered == 1 && b.stats().delivered == 1
    })
    .await;
    assert_eq!(a.stats().acked, 1, "weft peers acknowledge");
}

#[tokio::test]
async fn a_lone_message_is_acknowledged_by_the_ack_timer() {
    // Nothing goes back from `a` for an ACK to ride on: only the I/O
    // task's timer sends it, `ack_delay` after each message arrived (and
    // so no sooner than `ack_delay` after it was sent).
    let delay = Duration::from_millis(40);
    let mut config_a = config();
    config_a.ack_delay = delay;
    let (a, b) = pair(config_a, config()).await;
    for (n, text) in (1..).zip(["one", "two"]) {
        let sent = tokio::time::Instant::now();
        b.send_message(&id("a"), Message::new(text)).await.unwrap();
        assert!(b.flush(WAIT).await, "message {text} acknowledged");
        assert!(sent.elapsed() >= delay, "the ACK waited for ack_delay");
        assert_eq!(b.stats().acked, n);
        assert_eq!(
            &a.recv(Some(WAIT)).await.unwrap().message.data[..],
            text.as_bytes()
        );
    }
}

#[tokio::test]
async fn queued_before_the_peer_connects_and_carried_intact() {
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let at = a.link().listen("tcp://[::1]:0").await.unwrap().address;
    let b = Messaging::new(id("b"), config()).await.unwrap();
    let sent = Message::new(Bytes::from_static(b"early"))
        .with_ttl(Duration::from_secs(120))
        .persistent();
    b.send_message(&id("a"), sent.clone()).await.unwrap();
    assert_eq!(b.queue_depth(&id("a")), 1);
    b.link().connect(&at).unwrap();
    let got = a.recv(Some(WAIT)).await.unwrap();
    assert_eq!(got.message.id, sent.id);
    assert_eq!(got.message.flags, sent.flags);
    let ttl = got.message.ttl.unwrap().as_secs();
    assert!(
        (118..=120).contains(&ttl),
        "ttl carried as whole seconds left: {ttl}"
    );
    until("queue emptied", || b.queue_depth(&id("a")) == 0).await;
}

#[tokio::test]
async fn sending_to_ourselves_delivers_locally() {
    let a = Messaging::new(id("self"), config()).await.unwrap();
    a.send_message(&id("self"), Message::new("me"))
        .await
        .unwrap();
    let got = a.recv(Some(WAIT)).await.unwrap();
    assert_eq!(got.from.as_str(), "self");
}

#[tokio::test(start_paused = true)]
async fn ttl_runs_out_while_waiting() {
    let a = Messaging::new(id("a"), config()).await.unwrap();
    a.send_message(
        &id("nobody"),
        Message::new("short").with_ttl(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    a.send_message(&id("nobody"), Message::new("forever"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.stats().expired, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.stats().expired, 1);
    assert_eq!(
        a.queue_depth(&id("nobody")),
        1,
        "the message without TTL waits on"
    );
}

#[tokio::test]
async fn subscriptions_by_regex_and_sender_get_copies() {
    let (a, b) = pair(config(), config()).await;
    let orders = a.subscribe(Subscription::matching(
        regex::bytes::Regex::new("^order:").unwrap(),
    ));
    let from_b = a.subscribe(Subscription::all().from(id("b")));
    let from_c = a.subscribe(Subscription::all().from(id("c")));
    b.send_message(&id("a"), Message::new("order:1"))
        .await
        .unwrap();
    b.send_message(&id("a"), Message::new("news:2"))
        .await
        .unwrap();
    assert_eq!(
        &orders.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"order:1"
    );
    assert_eq!(
        &from_b.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"order:1"
    );
    assert_eq!(
        &from_b.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"news:2"
    );
    assert!(orders.try_recv().is_none());
    assert!(from_c.is_empty());
    assert!(matches!(
        from_c.recv(Some(Duration::from_millis(50))).await,
        Err(MessagingError::Timeout(_))
    ));
    assert!(a.unsubscribe(orders.id()));
    assert!(matches!(
        orders.recv(None).await,
        Err(MessagingError::Closed)
    ));
}

#[tokio::test]
async fn the_default_queue_steps_aside_once_a_handler_or_subscription_takes_messages() {
    let (a, b) = pair(config(), config()).await;
    // Nothing else takes messages: the default queue has them.
    b.send_message(&id("a"), Message::new("one")).await.unwrap();
    assert_eq!(&a.recv(Some(WAIT)).await.unwrap().message.data[..], b"one");

    // A subscription: the default queue takes nothing any more, not even
    // what the subscription does not match.
    let orders = a.subscribe(Subscription::matching(
        regex::bytes::Regex::new("^order:").unwrap(),
    ));
    b.send_message(&id("a"), Message::new("news:2"))
        .await
        .unwrap();
    b.send_message(&id("a"), Message::new("order:3"))
        .await
        .unwrap();
    assert_eq!(
        &orders.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"order:3"
    );
    assert!(a.default_queue().is_empty());
    assert_eq!(a.stats().unhandled, 1, "news:2 went nowhere, counted");

    // Configured to take everything always, it does.
    let mut always = config();
    always.default_queue = weft_messaging::config::DefaultQueue::Always;
    let (c, d) = pair(always, config()).await;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = seen.clone();
    c.on_message(move |_| {
        s.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    d.send_message(&id("a"), Message::new("both"))
        .await
        .unwrap();
    assert_eq!(&c.recv(Some(WAIT)).await.unwrap().message.data[..], b"both");
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_handler_holding_a_weak_handle_lets_the_instance_stop() {
    let (a, b) = pair(config(), config()).await;
    let me = a.downgrade();
    a.on_message(move |r| {
        if let Some(a) = me.upgrade() {
            let _ = a.try_send_message(&r.from, Message::new("pong"));
        }
    });
    b.send_message(&id("a"), Message::new("ping"))
        .await
        .unwrap();
    assert_eq!(&b.recv(Some(WAIT)).await.unwrap().message.data[..], b"pong");

    let weak = a.downgrade();
    drop(a);
    assert!(
        weak.upgrade().is_none(),
        "the handler kept no strong handle"
    );
    until("a's connection ended", || !b.is_connected(&id("a"))).await;
}

/// snakeMQ's tutorial: bob and jack each listen and dial the other. They
/// settle on one connection (the one the smaller identity dialled) and the
/// other connector rests instead of being refused every 20 ms.
#[tokio::test]
async fn two_peers_that_dial_each_other_keep_one_connection_and_rest_the_other_connector() {
    let bob = Messaging::new(id("bob"), config()).await.unwrap();
    let jack = Messaging::new(id("jack"), config()).await.unwrap();
    let at_bob = bob
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let at_jack = jack
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    bob.link().connect(&at_jack).unwrap();
    jack.link().connect(&at_bob).unwrap();
    bob.send_message(&id("jack"), Message::new("hi jack"))
        .await
        .unwrap();
    jack.send_message(&id("bob"), Message::new("hi bob"))
        .await
        .unwrap();
    assert_eq!(
        &jack.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"hi jack"
    );
    assert_eq!(
        &bob.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"hi bob"
    );
    until("one connection each", || {
        bob.link().connections().len() == 1 && jack.link().connections().len() == 1
    })
    .await;
    let kept = bob.link().connections()[0].info().origin;
    assert!(
        matches!(kept, weft_link::connection::Origin::Connector(_)),
        "bob < jack: the connection bob dialled is kept"
    );
    let opened = (
        bob.link().stats().connections_opened,
        jack.link().stats().connections_opened,
    );
    // A connector that did not rest would dial every 20 ms meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (
            bob.link().stats().connections_opened,
            jack.link().stats().connections_opened,
        ),
        opened,
        "a connector kept dialling"
    );
    assert!(bob.is_connected(&id("jack")) && jack.is_connected(&id("bob")));
}

#[tokio::test]
async fn handlers_see_connects_messages_and_disconnects() {
    let (a, b) = pair(config(), config()).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    a.on_message(move |r| {
        s.lock()
            .unwrap()
            .push(format!("msg {}", String::from_utf8_lossy(&r.message.data)))
    });
    let s = seen.clone();
    a.on_disconnect(move |who| s.lock().unwrap().push(format!("gone {who}")));
    b.send_message(&id("a"), Message::new("hi")).await.unwrap();
    until("message handled", || {
        seen.lock().unwrap().contains(&"msg hi".to_string())
    })
    .await;
    drop(b);
    until("disconnect handled", || {
        seen.lock().unwrap().contains(&"gone b".to_string())
    })
    .await;
}

/// Cuts the connection again and again while 5 000 messages flow: every
/// message arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_loses_nothing_and_duplicates_nothing() {
    let (a, b) = pair(config(), config()).await;
    let total = 5_000u32;
    let sender = b.clone();
    let sending = tokio::spawn(async move {
        for i in 0..total {
            sender
                .send_message(
                    &id("a"),
                    Message::new(Bytes::from(i.to_be_bytes().to_vec())),
                )
                .await
                .unwrap();
            if i % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let cutter_link = a.link().clone();
    let cutting = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            for conn in cutter_link.connections() {
                conn.abort();
            }
        }
    });
    let mut seen = HashSet::new();
    while seen.len() < total as usize {
        let got = a.recv(Some(WAIT)).await.expect("every message arrives");
        let n = u32::from_be_bytes(got.message.data[..].try_into().unwrap());
        assert!(seen.insert(n), "message {n} arrived twice");
    }
    sending.await.unwrap();
    cutting.await.unwrap();
    assert!(
        b.flush(WAIT).await,
        "the sender saw every delivery acknowledged"
    );
    assert!(
        a.default_queue().try_recv().is_none(),
        "no extra copies after all arrived"
    );
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sb.delivered, u64::from(total));
    assert_eq!(sa.received - sa.duplicates, u64::from(total));
}

#[tokio::test]
async fn persistent_messages_survive_a_restart() {
    let storage = MemoryStorage::new();
    let b = Messaging::with_storage(id("b"), config(), storage.clone())
        .await
        .unwrap();
    for i in 0..10 {
        b.send_message(&id("a"), Message::new(format!("p{i}")).persistent())
            .await
            .unwrap();
    }
    b.send_message(&id("a"), Message::new("not persistent"))
        .await
        .unwrap();
    assert_eq!(storage.len(), 10, "stored before send_message returned");
    drop(b);

    let b = Messaging::with_storage(id("b"), config(), storage.clone())
        .await
        .unwrap();
    assert_eq!(b.queue_depth(&id("a")), 10);
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let at = a.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    b.link().connect(&at).unwrap();
    for i in 0..10 {
        let got = a.recv(Some(WAIT)).await.unwrap();
        assert_eq!(got.message.data, format!("p{i}"));
    }
    until("storage emptied by acks", || storage.is_empty()).await;
}

#[tokio::test]
async fn try_send_message_refuses_a_message_that_must_be_stored_as_a_misuse() {
    let storage = MemoryStorage::new();
    let b = Messaging::with_storage(id("b"), config(), storage.clone())
        .await
        .unwrap();
    let refused = b.try_send_message(&id("a"), Message::new("p").persistent());
    assert!(matches!(
        refused,
        Err(MessagingError::Misuse(Misuse::PersistentTrySend))
    ));
    assert_eq!((storage.len(), b.queue_depth(&id("a"))), (0, 0));
    b.try_send_message(&id("a"), Message::new("plain")).unwrap();
    b.try_send_message(&id("b"), Message::new("to myself").persistent())
        .unwrap();
    assert_eq!(b.queue_depth(&id("a")), 1);
}

/// A store whose commits all fail.
struct FailingStorage;

impl Storage for FailingStorage {
    fn store(&mut self, _: &[StoredMessage]) -> Result<(), StorageError> {
        Err(StorageError::other(std::io::Error::other("disk on fire")))
    }
    fn delete(&mut self, _: &[weft_messaging::MessageId]) -> Result<(), StorageError> {
        Ok(())
    }
    fn load(&mut self) -> Result<Loaded, StorageError> {
        Ok(Loaded::default())
    }
    fn set_aside(
        &mut self,
        _: &[weft_messaging::MessageId],
        _: &StorageError,
    ) -> Result<(), StorageError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_commit_reaches_its_sender_with_the_storage_error_inside() {
    let b = Messaging::with_storage(id("b"), config(), FailingStorage)
        .await
        .unwrap();
    let failed = b
        .send_message(&id("a"), Message::new("p").persistent())
        .await;
    let Err(MessagingError::Storage(StorageError::Other(e))) = failed else {
        panic!("expected the store's own error, got {failed:?}");
    };
    let io = e.downcast_ref::<std::io::Error>().expect("an io::Error");
    assert_eq!(io.to_string(), "disk on fire");
    assert_eq!(b.queue_depth(&id("a")), 0, "not accepted, not queued");
}

#[tokio::test]
async fn purging_a_gone_identity_empties_its_queue_and_storage() {
    let storage = MemoryStorage::new();
    let b = Messaging::with_storage(id("b"), config(), storage.clone())
        .await
        .unwrap();
    for i in 0..3 {
        b.send_message(&id("gone"), Message::new(format!("p{i}")).persistent())
            .await
            .unwrap();
    }
    b.send_message(&id("kept"), Message::new("stays").persistent())
        .await
        .unwrap();
    assert_eq!(storage.len(), 4);
    assert_eq!(b.purge_queue(&id("gone")), 3);
    assert_eq!(b.queue_depth(&id("gone")), 0);
    assert_eq!(b.queue_depth(&id("kept")), 1);
    assert_eq!(b.stats().dropped, 3);
    until("storage forgot the purged", || storage.len() == 1).await;
}

#[tokio::test]
async fn a_full_queue_follows_its_policy() {
    let mut c = config();
    c.max_queue_messages = 2;
    let a = Messaging::new(id("a"), c.clone()).await.unwrap();
    a.send_message(&id("x"), Message::new("1")).await.unwrap();
    a.send_message(&id("x"), Message::new("2")).await.unwrap();
    assert!(matches!(
        a.send_message(&id("x"), Message::new("3")).await,
        Err(MessagingError::QueueFull(who)) if who.as_str() == "x"
    ));
    c.queue_policy = QueuePolicy::DropOldest;
    let d = Messaging::new(id("d"), c).await.unwrap();
    for i in 0..5 {
        d.send_message(&id("x"), Message::new(format!("{i}")))
            .await
            .unwrap();
    }
    assert_eq!(d.queue_depth(&id("x")), 2);
    assert_eq!(d.stats().dropped, 3);
}

// ---- bad input from a raw TCP peer --------------------------------------

async fn raw_peer(to: &Messaging) -> (TcpStream, Vec<u8>) {
    let at = to.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    let mut s = TcpStream::connect(at.socket_addr().unwrap()).await.unwrap();
    // Read the listener's greeting: VERSION, HELLO, IDENT (packets).
    let mut greeting = Vec::new();
    for _ in 0..3 {
        let mut len = [0u8; 4];
        timeout(WAIT, s.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.unwrap();
        greeting.push(body[0]);
    }
    (s, greeting)
}

async fn write_frame(s: &mut TcpStream, frame: &[u8]) {
    let mut packet = (frame.len() as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(frame);
    s.write_all(&packet).await.unwrap();
}

async fn write_parsed(s: &mut TcpStream, frame: &Frame) {
    let (head, body) = frame.encode();
    write_frame(s, &[head.as_slice(), &body].concat()).await;
}

/// Reads packets until the connection closes; returns the frame types seen.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut types = Vec::new();
    timeout(WAIT, async {
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut body).await.is_err() {
                return;
            }
            types.push(body.first().copied().unwrap_or(0xFF));
        }
    })
    .await
    .expect("the connection is closed");
    types
}

fn record_errors(m: &Messaging) -> std::sync::Arc<std::sync::Mutex<Vec<ProtocolError>>> {
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let e = errors.clone();
    m.on_protocol_error(move |_, err| e.lock().unwrap().push(err.clone()));
    errors
}

#[tokio::test]
async fn greeting_is_version_hello_ident() {
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let (_s, greeting) = raw_peer(&a).await;
    assert_eq!(greeting, [0, 0x80, 2]);
}

#[tokio::test]
async fn message_before_ident_closes_that_connection_only() {
    let (a, b) = pair(config(), config()).await;
    let errors = record_errors(&a);
    let (mut s, _) = raw_peer(&a).await;
    write_parsed(&mut s, &Frame::Version(PROTOCOL_VERSION)).await;
    let mut msg = vec![3u8];
    msg.extend([0u8; 24]);
    msg.extend(b"sneaky");
    write_frame(&mut s, &msg).await;
    read_until_closed(&mut s).await;
    assert!(matches!(
        errors.lock().unwrap()[0],
        ProtocolError::MessageBeforeIdent
    ));
    // The well-behaved peer is untouched.
    b.send_message(&id("a"), Message::new("still fine"))
        .await
        .unwrap();
    assert_eq!(
        &a.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"still fine"
    );
}

#[tokio::test]
async fn bad_identities_and_truncated_frames_close_with_typed_errors() {
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let errors = record_errors(&a);
    let long = [&[2u8][..], &[b'x'; 51]].concat();
    let cases: [&[u8]; 3] = [&long, b"\x02\xff\xfe", b"\x03\x01\x02"];
    for frame in cases {
        let (mut s, _) = raw_peer(&a).await;
        write_parsed(&mut s, &Frame::Ident(id("raw"))).await;
        write_frame(&mut s, frame).await;
        read_until_closed(&mut s).await;
    }
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].to_string().contains("51 characters"),
        "{}",
        errors[0]
    );
    assert!(errors[1].to_string().contains("UTF-8"), "{}", errors[1]);
    assert!(errors[2].to_string().contains("MESSAGE"), "{}", errors[2]);
    assert_eq!(a.stats().protocol_errors, 3);
}

#[tokio::test]
async fn unknown_frames_are_ignored_and_ping_is_answered() {
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let (mut s, _) = raw_peer(&a).await;
    write_parsed(&mut s, &Frame::Version(PROTOCOL_VERSION)).await;
    write_parsed(&mut s, &Frame::Ident(id("raw"))).await;
    write_frame(&mut s, b"\x42unknown to everyone").await;
    write_parsed(&mut s, &Frame::Ping).await;
    let mut len = [0u8; 4];
    timeout(WAIT, s.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(body, [5], "PONG");
    let mut msg = vec![3u8];
    msg.extend([7u8; 16]);
    msg.extend([0xFF; 4]);
    msg.extend([0; 4]);
    msg.extend(b"after the unknown frame");
    write_frame(&mut s, &msg).await;
    let got = a.recv(Some(WAIT)).await.unwrap();
    assert_eq!(got.from.as_str(), "raw");
    assert_eq!(got.message.ttl, None);
}

#[tokio::test]
async fn a_wrong_version_gets_incompatible_and_a_close() {
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let errors = record_errors(&a);
    let (mut s, _) = raw_peer(&a).await;
    write_parsed(&mut s, &Frame::Version(2)).await;
    let types = read_until_closed(&mut s).await;
    assert_eq!(types, [1], "INCOMPATIBLE, then the close");
    assert!(matches!(
        errors.lock().unwrap()[0],
        ProtocolError::IncompatibleVersion(2)
    ));
}

#[tokio::test]
async fn a_duplicate_identity_is_rejected_by_default() {
    let a = Messaging::new(id("a"), config()).await.unwrap();
    let errors = record_errors(&a);
    let (mut first, _) = raw_peer(&a).await;
    write_parsed(&mut first, &Frame::Ident(id("twin"))).await;
    until("first twin connected", || {
        a.connected().contains(&id("twin"))
    })
    .await;
    let (mut second, _) = raw_peer(&a).await;
    write_parsed(&mut second, &Frame::Ident(id("twin"))).await;
    read_until_closed(&mut second).await;
    assert!(
        matches!(&errors.lock().unwrap()[0], ProtocolError::DuplicateIdentity(t) if t.as_str() == "twin")
    );
    assert!(a.connected().contains(&id("twin")));
    drop(first);
}

#[tokio::test]
async fn a_duplicate_identity_can_replace_the_old_connection() {
    let mut c = config();
    c.duplicate_identity = DuplicateIdentity::ReplaceOld;
    let a = Messaging::new(id("a"), c).await.unwrap();
    let (mut first, _) = raw_peer(&a).await;
    write_parsed(&mut first, &Frame::Ident(id("twin"))).await;
    until("first twin connected", || {
        a.connected().contains(&id("twin"))
    })
    .await;
    let (mut second, _) = raw_peer(&a).await;
    write_parsed(&mut second, &Frame::Ident(id("twin"))).await;
    read_until_closed(&mut first).await;
    a.send_message(&id("twin"), Message::new("to the new one"))
        .await
        .unwrap();
    let mut len = [0u8; 4];
    timeout(WAIT, second.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_silent_peer_is_disconnected_by_keepalive() {
    let mut c = config();
    c.keepalive_interval = Some(Duration::from_millis(100));
    c.keepalive_wait = Duration::from_millis(100);
    let a = Messaging::new(id("a"), c).await.unwrap();
    let errors = record_errors(&a);
    let (mut s, _) = raw_peer(&a).await;
    write_parsed(&mut s, &Frame::Ident(id("mute"))).await;
    let types = read_until_closed(&mut s).await;
    assert!(
        types.contains(&4),
        "a PING was sent before giving up: {types:?}"
    );
    assert!(matches!(
        errors.lock().unwrap()[0],
        ProtocolError::KeepaliveTimeout
    ));
}

#[tokio::test]
async fn try_send_each_queues_a_copy_for_every_target_and_returns_only_the_refusals() {
    let mut small = config();
    small.max_queue_messages = 1;
    small.queue_policy = QueuePolicy::Error;
    let b = Messaging::new(id("b"), small).await.unwrap();
    // a's queue is full; c's and d's are empty.
    b.try_send_message(&id("a"), Message::new("first")).unwrap();
    let to = [id("a"), id("c"), id("d")];
    let refused = b.try_send_each(&to, Message::new("each"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, id("a"));
    assert!(matches!(refused[0].1, MessagingError::QueueFull(_)));
    let depths: Vec<usize> = to.iter().map(|t| b.queue_depth(t)).collect();
    assert_eq!(depths, [1, 1, 1]);

    // Each copy arrives whole at its target.
    for name in ["c", "d"] {
        let peer = Messaging::new(id(name), config()).await.unwrap();
        let at = peer
            .link()
            .listen("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .address;
        b.link().connect(&at).unwrap();
        let got = peer.recv(Some(WAIT)).await.unwrap();
        assert_eq!((&got.from, &got.message.data[..]), (&id("b"), &b"each"[..]));
    }

    // A message that must be stored is a misuse for every other target.
    let stored = Messaging::with_storage(id("s"), config(), MemoryStorage::new())
        .await
        .unwrap();
    let refused = stored.try_send_each(&to, Message::new("p").persistent());
    assert_eq!(refused.len(), 3);
    assert!(
        refused
            .iter()
            .all(|(_, e)| matches!(e, MessagingError::Misuse(Misuse::PersistentTrySend)))
    );
}
