//! The messaging layer: identities, TTL, a persistent queue across a
//! restart, and each pattern.

use std::time::Duration;

use weft_messaging::storage::SqliteStorage;
use weft_messaging::{
    Identity, Kind, Message, Messaging, MessagingConfig, Subscription, TopicFilter,
};

use super::{DemoResult, WAIT};

fn id(name: &str) -> DemoResult<Identity> {
    Ok(Identity::new(name)?)
}

fn config() -> MessagingConfig {
    let mut c = MessagingConfig::default();
    c.link.reconnect = weft_link::ReconnectPolicy::fixed(Duration::from_millis(50));
    c
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> DemoResult<()> {
    tokio::time::timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .map_err(|_| format!("timed out waiting for {what}").into())
}

pub(crate) async fn run() -> DemoResult<()> {
    println!("== messaging: identities, queues, patterns ==\n");
    identities().await?;
    persistence().await?;
    patterns().await?;
    Ok(())
}

/// A message to an identity that is not there yet waits in its queue.
async fn identities() -> DemoResult<()> {
    let tag = "[identity]";
    let alice = Messaging::new(id("alice")?, config()).await?;
    let msg = Message::new("hello bob").with_ttl(Duration::from_secs(60));
    alice.send_message(&id("bob")?, msg).await?;
    println!(
        "{tag:<16} alice sends to bob, who does not exist yet: queued ({} waiting)",
        alice.queue_depth(&id("bob")?)
    );
    let bob = Messaging::new(id("bob")?, config()).await?;
    let at = bob.link().listen("tcp://127.0.0.1:0").await?.address;
    println!("{tag:<16} bob starts, listening on {at}");
    alice.link().connect(&at)?;
    let got = bob.recv(Some(WAIT)).await?;
    println!(
        "{tag:<16} bob receives {:?} from {} (TTL left: {} s, id {})",
        String::from_utf8_lossy(&got.message.data),
        got.from,
        got.message.ttl.map_or(0, |t| t.as_secs()),
        got.message.id
    );
    wait_until("the ack", || alice.stats().acked == 1).await?;
    println!("{tag:<16} alice's queue is empty once bob acknowledged it\n");
    Ok(())
}

/// Persistent messages outlive the process that queued them.
async fn persistence() -> DemoResult<()> {
    let tag = "[persistent]";
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("alice.sqlite");
    {
        let alice =
            Messaging::with_storage(id("alice")?, config(), SqliteStorage::open(&path)?).await?;
        for i in 1..=3 {
            alice
                .send_message(
                    &id("carol")?,
                    Message::new(format!("order {i}")).persistent(),
                )
                .await?;
        }
        println!(
            "{tag:<16} alice stores 3 persistent messages for carol in {}",
            path.display()
        );
        alice.close().await;
        println!("{tag:<16} alice stops");
    }
    let alice =
        Messaging::with_storage(id("alice")?, config(), SqliteStorage::open(&path)?).await?;
    println!(
        "{tag:<16} alice restarts: {} messages for carol loaded from SQLite",
        alice.queue_depth(&id("carol")?)
    );
    let carol = Messaging::new(id("carol")?, config()).await?;
    let at = carol.link().listen("tcp://127.0.0.1:0").await?.address;
    alice.link().connect(&at)?;
    for _ in 0..3 {
        let got = carol.recv(Some(WAIT)).await?;
        println!(
            "{tag:<16} carol receives {:?}",
            String::from_utf8_lossy(&got.message.data)
        );
    }
    if !alice.flush(WAIT).await {
        return Err("alice's queue did not drain".into());
    }
    println!("{tag:<16} delivered and acknowledged: removed from storage\n");
    Ok(())
}

/// REQ/REP, PUSH/PULL and PUB/SUB between a hub and two workers.
async fn patterns() -> DemoResult<()> {
    let hub = Messaging::new(id("hub")?, config()).await?;
    let at = hub.link().listen("tcp://127.0.0.1:0").await?.address;
    let mut workers = Vec::new();
    for name in ["w1", "w2"] {
        let w = Messaging::new(id(name)?, config()).await?;
        w.link().connect(&at)?;
        workers.push(w);
    }
    wait_until("the workers", || {
        workers.iter().all(|w| hub.is_connected(w.identity()))
    })
    .await?;

    let tag = "[req/rep]";
    let requests = workers[0].subscribe(Subscription::all().of_kind(Kind::Request));
    let w1 = workers[0].clone();
    let serving = tokio::spawn(async move {
        let req = requests.recv(Some(WAIT)).await?;
        let n: u64 = String::from_utf8_lossy(&req.message.data)
            .parse()
            .unwrap_or(0);
        w1.reply(&req, (n * n).to_string()).await
    });
    let reply = hub.request(workers[0].identity(), "12", WAIT).await?;
    serving.await??;
    println!(
        "{tag:<16} hub asks w1 to square 12: w1 replies {}",
        String::from_utf8_lossy(&reply.message.data)
    );

    let tag = "[push/pull]";
    let pusher = hub.pusher(workers.iter().map(|w| w.identity().clone()));
    let jobs: Vec<_> = workers
        .iter()
        .map(|w| w.subscribe(Subscription::all().of_kind(Kind::Push)))
        .collect();
    for i in 1..=4 {
        let to = pusher.push(format!("job {i}"))?;
        println!("{tag:<16} job {i} -> {to}");
    }
    for (w, q) in workers.iter().zip(&jobs) {
        for _ in 0..2 {
            let job = q.recv(Some(WAIT)).await?;
            println!(
                "{tag:<16} {} works on {:?}",
                w.identity(),
                String::from_utf8_lossy(&job.message.data)
            );
        }
    }

    let tag = "[pub/sub]";
    let weather = workers[1].subscribe_topic(TopicFilter::Prefix("weather.".into()));
    println!("{tag:<16} w2 subscribes to weather.*; the subscription travels to the hub");
    wait_until("the subscription", || {
        hub.publish("weather.probe", "")
            .map(|n| n == 1)
            .unwrap_or(false)
    })
    .await?;
    let _ = weather.recv(Some(WAIT)).await?;
    let to_w2 = hub.publish("weather.today", "sunny")?;
    let to_none = hub.publish("sport.today", "no match")?;
    println!("{tag:<16} hub publishes weather.today to {to_w2} peer(s), sport.today to {to_none}");
    let got = weather.recv(Some(WAIT)).await?;
    println!(
        "{tag:<16} w2 receives {:?} on {}",
        String::from_utf8_lossy(&got.message.data),
        got.topic.as_deref().unwrap_or("?")
    );
    println!();
    Ok(())
}
