//! REQ/REP, PUSH/PULL and PUB/SUB between weft peers on loopback.

use std::collections::HashMap;
use std::time::Duration;

use weft_messaging::error::Misuse;
use weft_messaging::{Kind, Message, Messaging, MessagingError, Subscription, TopicFilter};

mod common;
use common::{WAIT, config, id, until};

/// A hub listening, and spokes connected to it, all identified.
async fn hub_and_spokes(hub: &str, spokes: &[&str]) -> (Messaging, Vec<Messaging>) {
    let h = Messaging::new(id(hub), config()).await.unwrap();
    let at = h.link().listen("tcp://127.0.0.1:0").await.unwrap().address;
    let mut out = Vec::new();
    for s in spokes {
        let m = Messaging::new(id(s), config()).await.unwrap();
        m.link().connect(&at).unwrap();
        out.push(m);
    }
    until("all connected", || {
        spokes.iter().all(|s| h.is_connected(&id(s)))
    })
    .await;
    (h, out)
}

#[tokio::test]
async fn request_reply_matches_replies_to_requests() {
    let (server, clients) = hub_and_spokes("server", &["c1", "c2"]).await;
    let requests = server.subscribe(Subscription::all().of_kind(Kind::Request));
    let srv = server.clone();
    let serving = tokio::spawn(async move {
        for _ in 0..4 {
            let req = requests.recv(Some(WAIT)).await.unwrap();
            let answer = format!(
                "{} says {}",
                req.from,
                String::from_utf8_lossy(&req.message.data)
            );
            srv.reply(&req, answer).await.unwrap();
        }
    });
    let (a, b) = (&clients[0], &clients[1]);
    let server_id = id("server");
    let (ra, rb) = tokio::join!(
        a.request(&server_id, "one", WAIT),
        b.request(&server_id, "two", WAIT)
    );
    assert_eq!(&ra.unwrap().message.data[..], b"c1 says one");
    assert_eq!(&rb.unwrap().message.data[..], b"c2 says two");
    let (ra, rb) = tokio::join!(
        a.request(&server_id, "three", WAIT),
        a.request(&server_id, "four", WAIT)
    );
    assert_eq!(&ra.unwrap().message.data[..], b"c1 says three");
    assert_eq!(&rb.unwrap().message.data[..], b"c1 says four");
    serving.await.unwrap();
    // Replies never reach the ordinary queues.
    assert!(a.default_queue().try_recv().is_none());
}

#[tokio::test]
async fn a_request_without_reply_times_out_and_a_late_reply_is_counted() {
    let (server, clients) = hub_and_spokes("server", &["c"]).await;
    let requests = server.subscribe(Subscription::all().of_kind(Kind::Request));
    let err = clients[0]
        .request(&id("server"), "anyone?", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, MessagingError::Timeout(_)));
    let late = requests.recv(Some(WAIT)).await.unwrap();
    server.reply(&late, "too late").await.unwrap();
    until("late reply counted", || clients[0].stats().unhandled == 1).await;
    let plain = server.subscribe(Subscription::all().of_kind(Kind::Plain));
    clients[0]
        .send_message(&id("server"), Message::new("plain"))
        .await
        .unwrap();
    let not_a_request = plain.recv(Some(WAIT)).await.unwrap();
    assert!(matches!(
        server.reply(&not_a_request, "x").await,
        Err(MessagingError::Misuse(Misuse::NotARequest))
    ));
}

#[tokio::test]
async fn push_pull_round_robin_over_connected_pullers() {
    let (pusher_side, pullers) = hub_and_spokes("pusher", &["w1", "w2", "w3"]).await;
    let pusher = pusher_side.pusher([id("w1"), id("w2"), id("w3"), id("absent")]);
    let mut chosen = HashMap::<String, usize>::new();
    for i in 0..9 {
        let who = pusher.push(format!("job {i}")).unwrap();
        *chosen.entry(who.to_string()).or_default() += 1;
    }
    assert_eq!(chosen.len(), 3, "{chosen:?}");
    assert!(chosen.values().all(|&n| n == 3), "even spread: {chosen:?}");
    let mut received = 0;
    for w in &pullers {
        for _ in 0..3 {
            let got = w.recv(Some(WAIT)).await.unwrap();
            assert_eq!(got.kind(), Kind::Push);
            received += 1;
        }
    }
    assert_eq!(received, 9);
    // A named puller gets it whether or not it is connected yet.
    pusher.push_to(&id("absent"), "for later").unwrap();
    assert_eq!(pusher_side.queue_depth(&id("absent")), 1);
    let lonely = Messaging::new(id("lonely"), config()).await.unwrap();
    assert!(matches!(
        lonely.pusher([id("w1")]).push("x"),
        Err(MessagingError::NoPeer)
    ));
}

#[tokio::test]
async fn publications_go_only_where_subscriptions_match() {
    let (publisher, subs) = hub_and_spokes("pub", &["prefix", "regex", "none"]).await;
    let news = subs[0].subscribe_topic(TopicFilter::Prefix("news.".into()));
    let weather = subs[1].subscribe_topic(TopicFilter::Regex(
        regex::Regex::new(r"\.weather$").unwrap(),
    ));
    until("interest reached the publisher", || {
        publisher.publish("probe.none", "").unwrap() == 0
            && publisher.publish("news.weather", "sunny").unwrap() == 2
    })
    .await;
    assert_eq!(publisher.publish("news.sport", "goal").unwrap(), 1);
    assert_eq!(publisher.publish("local.weather", "rain").unwrap(), 1);
    assert_eq!(publisher.publish("other", "nobody").unwrap(), 0);

    let sunny = news.recv(Some(WAIT)).await.unwrap();
    assert_eq!(
        (sunny.topic.as_deref(), &sunny.message.data[..]),
        (Some("news.weather"), &b"sunny"[..])
    );
    let got = news.recv(Some(WAIT)).await.unwrap();
    assert_eq!(got.topic.as_deref(), Some("news.sport"));
    assert!(news.try_recv().is_none());
    let got = weather.recv(Some(WAIT)).await.unwrap();
    assert_eq!(got.topic.as_deref(), Some("news.weather"));
    assert_eq!(got.message.id, sunny.message.id, "one publication, one id");
    let got = weather.recv(Some(WAIT)).await.unwrap();
    assert_eq!(got.topic.as_deref(), Some("local.weather"));
    // The peer without subscriptions was never sent anything.
    assert_eq!(subs[2].stats().received, 0);

    assert!(subs[0].unsubscribe_topic(&news));
    until("unsubscription reached the publisher", || {
        publisher.publish("news.sport", "again").unwrap() == 0
    })
    .await;
}

#[tokio::test]
async fn publication_targets_follow_our_own_subscriptions_and_departed_peers() {
    // Targets are worked out once per topic and kept: every change must
    // show in the very next publication.
    let (publisher, subs) = hub_and_spokes("pub", &["sub"]).await;
    assert_eq!(publisher.publish("t.a", "nobody yet").unwrap(), 0);
    let mine = publisher.subscribe_topic(TopicFilter::Prefix("t.".into()));
    assert_eq!(publisher.publish("t.a", "to us").unwrap(), 1);
    let remote = subs[0].subscribe_topic(TopicFilter::Prefix(String::new()));
    until("interest reached the publisher", || {
        publisher.publish("u.probe", "probe").unwrap() == 1
    })
    .await;
    assert_eq!(publisher.publish("t.a", "to both").unwrap(), 2);
    // Local deliveries go through the I/O task: received before the queue
    // is unsubscribed.
    for expected in [&b"to us"[..], b"to both"] {
        assert_eq!(
            &mine.recv(Some(WAIT)).await.unwrap().message.data[..],
            expected
        );
    }
    assert!(publisher.unsubscribe_topic(&mine));
    assert_eq!(publisher.publish("t.a", "to the peer").unwrap(), 1);
    assert_eq!(
        &remote.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"probe"
    );
    subs[0].close().await;
    until("the departed peer is no target", || {
        publisher.publish("t.a", "after").unwrap() == 0
    })
    .await;
}

#[tokio::test]
async fn subscriptions_are_sent_again_after_a_reconnect() {
    let publisher = Messaging::new(id("pub"), config()).await.unwrap();
    let at = publisher
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let sub = Messaging::new(id("sub"), config()).await.unwrap();
    let topic = sub.subscribe_topic(TopicFilter::Prefix(String::new()));
    sub.link().connect(&at).unwrap();
    until("interest", || publisher.publish("t", "1").unwrap() == 1).await;
    for c in publisher.link().connections() {
        c.abort();
    }
    until("interest again after reconnecting", || {
        publisher.is_connected(&id("sub")) && publisher.publish("t", "2").unwrap() == 1
    })
    .await;
    assert_eq!(
        &topic.recv(Some(WAIT)).await.unwrap().message.data[..],
        b"1"
    );
}

#[tokio::test]
async fn a_snakemq_style_peer_gets_plain_messages_only() {
    // Messages with pattern flags are still ordinary MESSAGE frames.
    let (a, b) = hub_and_spokes("a", &["b"]).await;
    let mut m = Message::new("plain");
    m.flags = weft_messaging::message::Flags(0);
    b[0].send_message(&id("a"), m).await.unwrap();
    assert_eq!(a.recv(Some(WAIT)).await.unwrap().kind(), Kind::Plain);
}
