//! The libzmq baseline for case 1: PUSH/PULL over loopback TCP with the
//! `zmq` crate, shaped like the weft measurement (a fresh pair per round,
//! warm-up, then `count` messages timed from the first send to the last
//! receive).
//!
//! Each side has its own context, so libzmq runs its usual I/O thread per
//! side besides the application thread; that is how libzmq works and it is
//! counted. The sender uses `send(&[u8], 0)`, the receiver `recv_into` a
//! reused buffer (libzmq's cheapest receive). The high-water marks are set
//! high enough never to throttle the sender below what the receiver takes.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{self, LIMIT, ctx};
use crate::throughput::Load;

/// How long one blocking libzmq call may wait before the deadline is
/// checked again.
const STEP_MS: i32 = 1000;

/// The high-water mark (in messages, on both sockets) for `size`-byte
/// messages: enough to hold 256 MiB, between 1 000 (libzmq's default) and
/// 100 000.
fn hwm_for(size: usize) -> i32 {
    ((256usize << 20) / size.max(1)).clamp(1_000, 100_000) as i32
}

/// One measurement; the time from the first timed send to the last receive.
pub(crate) fn once(load: Load) -> Result<Duration, String> {
    let (addr_tx, addr_rx) = mpsc::channel::<String>();
    let (warm_tx, warm_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let hwm = hwm_for(load.size);
    let receiver = move || -> Result<Instant, String> {
        let deadline = Instant::now() + LIMIT;
        let context = zmq::Context::new();
        let pull = context.socket(zmq::PULL).map_err(ctx("PULL socket"))?;
        pull.set_rcvhwm(hwm).map_err(ctx("ZMQ_RCVHWM"))?;
        pull.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
        pull.set_rcvtimeo(STEP_MS).map_err(ctx("ZMQ_RCVTIMEO"))?;
        pull.bind("tcp://127.0.0.1:*").map_err(ctx("binding"))?;
        let endpoint = pull
            .get_last_endpoint()
            .map_err(ctx("reading the endpoint"))?
            .map_err(|_| "the endpoint is not UTF-8")?;
        addr_tx
            .send(endpoint)
            .map_err(|_| "sender gone before connecting")?;
        let mut buf = vec![0u8; load.size.max(1)];
        receive(&pull, &mut buf, load, load.warm, deadline)?;
        let _ = warm_tx.send(());
        receive(&pull, &mut buf, load, load.count, deadline)?;
        let end = Instant::now();
        let _ = done_tx.send(());
        Ok(end)
    };
    let sender = move || -> Result<Instant, String> {
        let deadline = Instant::now() + LIMIT;
        let endpoint = addr_rx
            .recv_timeout(LIMIT)
            .map_err(|_| "receiver gone before binding")?;
        let context = zmq::Context::new();
        let push = context.socket(zmq::PUSH).map_err(ctx("PUSH socket"))?;
        push.set_sndhwm(hwm).map_err(ctx("ZMQ_SNDHWM"))?;
        // Only dropped after the receiver has everything (or failed).
        push.set_linger(0).map_err(ctx("ZMQ_LINGER"))?;
        push.set_sndtimeo(STEP_MS).map_err(ctx("ZMQ_SNDTIMEO"))?;
        push.connect(&endpoint).map_err(ctx("connecting"))?;
        let payload = vec![0xA5u8; load.size];
        send(&push, &payload, load.warm, deadline)?;
        let left = deadline.saturating_duration_since(Instant::now());
        warm_rx
            .recv_timeout(left)
            .map_err(|_| "receiver failed during warm-up")?;
        let start = Instant::now();
        send(&push, &payload, load.count, deadline)?;
        let left = deadline.saturating_duration_since(Instant::now());
        done_rx.recv_timeout(left).map_err(|_| "receiver failed")?;
        Ok(start)
    };
    let (end, start) = harness::pair(("zmq-pull", receiver), ("zmq-push", sender))?;
    Ok(end.saturating_duration_since(start))
}

fn send(push: &zmq::Socket, payload: &[u8], count: u64, deadline: Instant) -> Result<(), String> {
    let mut sent = 0;
    while sent < count {
        match push.send(payload, 0) {
            Ok(()) => sent += 1,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                if Instant::now() > deadline {
                    return Err(format!("timed out after sending {sent} of {count}"));
                }
            }
            Err(e) => return Err(format!("sending: {e}")),
        }
    }
    Ok(())
}

fn receive(
    pull: &zmq::Socket,
    buf: &mut [u8],
    load: Load,
    count: u64,
    deadline: Instant,
) -> Result<(), String> {
    let mut got = 0u64;
    while got < count {
        match pull.recv_into(buf, 0) {
            Ok(n) if n == load.size => {
                got += 1;
                if got % 65_536 != 0 {
                    continue;
                }
            }
            Ok(n) => return Err(format!("got a message of {n} bytes, sent {}", load.size)),
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(format!("receiving: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after receiving {got} of {count}"));
        }
    }
    Ok(())
}
