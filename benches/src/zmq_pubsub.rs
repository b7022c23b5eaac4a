//! The libzmq baseline of the participants' fan-out row: one PUB socket
//! and ten SUB sockets over loopback TCP with the `zmq` crate, shaped like
//! the weft measurement in `participants.rs` (a fresh set per round, the
//! same payloads, markers, sequence checks and shared [`Progress`]).
//!
//! - The publisher's thread has its own context (one I/O thread) and a
//!   PUB socket bound to `tcp://127.0.0.1:*`. It sends one frame per
//!   publication, the topic followed by the 64-byte payload, with
//!   `send(&[u8], 0)`.
//! - The subscribers' thread has one context (one I/O thread) with the ten
//!   SUB sockets, each subscribed to the prefix and connected to the PUB.
//!   It waits in `zmq_poll` on all ten and drains every readable one with
//!   `recv_into` a reused buffer and `DONTWAIT` (libzmq's cheapest
//!   receive), as weft's subscribers' thread drains its ten queues.
//!
//! Lossless like weft's side: the PUB has `ZMQ_XPUB_NODROP` (which libzmq
//! accepts on PUB sockets: a PUB is an XPUB that hides subscriptions), so
//! `send` waits while any subscriber's pipe holds the high-water mark,
//! [`HWM`], instead of dropping; the SUBs' receive high-water mark is the
//! same. The `zmq` crate has no setter for that option, so it is set with
//! `zmq_setsockopt` of the libzmq the crate links.
//!
//! Each SUB connects before the publisher knows it, so (libzmq's "slow
//! joiner") the publisher sends warm-up publications every [`POLL`] until
//! every subscriber has received one; only then does it send the counted
//! warm-up, the sync publication and the timed ones.

use std::os::raw::{c_int, c_void};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{self, LIMIT, ctx};
use crate::participants::{
    HWM, POLL, PREFIX, Progress, SIZE, SUBSCRIBERS, SYNC, TIMED, TOPIC, Tally, WARM, payload,
};
use crate::throughput::Load;

/// How long one blocking libzmq call may wait before the deadline and the
/// other side are checked again.
const STEP_MS: i32 = 1000;

/// `ZMQ_XPUB_NODROP` from `zmq.h` (libzmq 4.1 and later).
const ZMQ_XPUB_NODROP: c_int = 69;

unsafe extern "C" {
    /// libzmq's `zmq_setsockopt`, for the option the `zmq` crate has no
    /// setter for.
    fn zmq_setsockopt(
        socket: *mut c_void,
        option: c_int,
        value: *const c_void,
        len: usize,
    ) -> c_int;
}

/// Turns on `ZMQ_XPUB_NODROP`: `send` waits at the high-water mark
/// instead of dropping.
fn set_nodrop(socket: &mut zmq::Socket) -> Result<(), String> {
    let on: c_int = 1;
    // SAFETY: the socket pointer is live (we hold the socket), and libzmq
    // reads exactly `size_of::<c_int>()` bytes from `value` during the call.
    let rc = unsafe {
        zmq_setsockopt(
            socket.as_mut_ptr(),
            ZMQ_XPUB_NODROP,
            (&raw const on).cast::<c_void>(),
            size_of::<c_int>(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "ZMQ_XPUB_NODROP: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// One measurement; the time from the first timed send to the last
/// subscriber's last receive.
pub(crate) fn once(load: Load) -> Result<Duration, String> {
    let (addr_tx, addr_rx) = mpsc::channel::<String>();
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    let subscribing = move || {
        let result = subscribers(addr_rx, load.count, &shared);
        shared.guard(result)
    };
    let publishing = move || {
        let result = publisher(addr_tx, load, &progress);
        progress.guard(result)
    };
    let (end, start) = harness::pair(("zmq-subs", subscribing), ("zmq-pub", publishing))?;
    Ok(end.saturating_duration_since(start))
}

/// The subscribers' side; when the last timed publication arrived.
fn subscribers(
    addr_rx: mpsc::Receiver<String>,
    count: u64,
    progress: &Progress,
) -> Result<Instant, String> {
    let deadline = Instant::now() + LIMIT;
    let endpoint = addr_rx
        .recv_timeout(LIMIT)
        .map_err(|_| "publisher gone before binding")?;
    let context = zmq::Context::new();
    let mut sockets = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        let sub = context.socket(zmq::SUB).map_err(ctx("SUB socket"))?;
        sub.set_rcvhwm(HWM as i32).map_err(ctx("ZMQ_RCVHWM"))?;
        sub.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
        sub.set_subscribe(PREFIX.as_bytes())
            .map_err(ctx("ZMQ_SUBSCRIBE"))?;
        sub.connect(&endpoint).map_err(ctx("connecting"))?;
        sockets.push(sub);
    }
    let mut tallies: Vec<Tally> = (0..SUBSCRIBERS).map(|_| Tally::new(count)).collect();
    let mut ends: Vec<Option<Instant>> = vec![None; SUBSCRIBERS];
    let mut buf = vec![0u8; TOPIC.len() + SIZE];
    let mut items: Vec<zmq::PollItem<'_>> = sockets
        .iter()
        .map(|s| s.as_poll_item(zmq::POLLIN))
        .collect();
    while ends.iter().any(Option::is_none) {
        progress.check(deadline, "waiting for publications")?;
        match zmq::poll(&mut items, i64::from(STEP_MS)) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(format!("zmq_poll: {e}")),
        }
        for (k, socket) in sockets.iter().enumerate() {
            if !items[k].is_readable() || ends[k].is_some() {
                continue;
            }
            loop {
                match socket.recv_into(&mut buf, zmq::DONTWAIT) {
                    Ok(n) if n == buf.len() && buf.starts_with(TOPIC.as_bytes()) => {
                        if tallies[k].take(&buf[TOPIC.len()..], progress)? {
                            ends[k] = Some(Instant::now());
                            break;
                        }
                    }
                    Ok(n) => {
                        return Err(format!(
                            "a frame of {n} bytes, sent {} (`{TOPIC}` and {SIZE} B)",
                            buf.len()
                        ));
                    }
                    Err(zmq::Error::EAGAIN) => break,
                    Err(zmq::Error::EINTR) => {}
                    Err(e) => return Err(format!("receiving: {e}")),
                }
            }
        }
    }
    ends.into_iter()
        .flatten()
        .max()
        .ok_or_else(|| "no subscribers".into())
}

/// The publisher's side; when the first timed publication was sent.
fn publisher(
    addr_tx: mpsc::Sender<String>,
    load: Load,
    progress: &Progress,
) -> Result<Instant, String> {
    let deadline = Instant::now() + LIMIT;
    let context = zmq::Context::new();
    let mut publisher = context.socket(zmq::PUB).map_err(ctx("PUB socket"))?;
    publisher
        .set_sndhwm(HWM as i32)
        .map_err(ctx("ZMQ_SNDHWM"))?;
    set_nodrop(&mut publisher)?;
    // Only closed after every subscriber has everything (or a side failed).
    publisher.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
    publisher
        .set_sndtimeo(STEP_MS)
        .map_err(ctx("ZMQ_SNDTIMEO"))?;
    publisher
        .bind("tcp://127.0.0.1:*")
        .map_err(ctx("binding"))?;
    let endpoint = publisher
        .get_last_endpoint()
        .map_err(ctx("reading the endpoint"))?
        .map_err(|_| "the endpoint is not UTF-8")?;
    addr_tx
        .send(endpoint)
        .map_err(|_| "subscribers gone before connecting")?;
    let mut frame = [0u8; TOPIC.len() + SIZE];
    frame[..TOPIC.len()].copy_from_slice(TOPIC.as_bytes());
    let mut send = |marker: u8, count: u64| -> Result<(), String> {
        for seq in 0..count {
            frame[TOPIC.len()..].copy_from_slice(&payload(marker, seq));
            loop {
                match publisher.send(&frame[..], 0) {
                    Ok(()) => break,
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                        progress.check(deadline, "sending")?;
                    }
                    Err(e) => return Err(format!("sending: {e}")),
                }
            }
        }
        Ok(())
    };
    // The slow joiners: until every subscriber has received something.
    while !Progress::all(&progress.ready) {
        progress.check(deadline, "waiting for the subscribers to join")?;
        send(WARM, 1)?;
        std::thread::sleep(POLL);
    }
    send(WARM, load.warm)?;
    send(SYNC, 1)?;
    while !Progress::all(&progress.synced) {
        progress.check(deadline, "waiting for the subscribers to warm up")?;
        std::thread::sleep(POLL);
    }
    let start = Instant::now();
    send(TIMED, load.count)?;
    // Keep the socket (and its queued messages) until all arrived.
    while !Progress::all(&progress.done) {
        progress.check(deadline, "waiting for the subscribers to finish")?;
        std::thread::sleep(POLL);
    }
    Ok(start)
}
