//! The sans-I/O RPC core: the caller's table of calls ([`calls`]) and the
//! server's admission of calls and signals ([`serving`]). Each is driven
//! with `handle_*` (input) and drained with `poll_*` (output); time is a
//! `std::time::Instant` passed in as `now`, never read here. No tokio: the
//! shell (`client.rs`, `server.rs`) owns the tasks, timers, channels and
//! the messaging instance, and only moves what the core decides.

pub(crate) mod calls;
pub(crate) mod serving;

#[cfg(test)]
mod tests {
    //! Both cores together, the network in between played by hand: no
    //! sockets, no sleeps, chosen instants.

    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use weft_messaging::Identity;

    use super::calls::{Calls, NewCall, TransmitKind};
    use super::serving::{Action, Reply, Serving};
    use crate::wire::{self, Body, Frame, REPLY_HEADROOM};

    const SEC: Duration = Duration::from_secs(1);

    /// The server's side of one CALL frame: what it decides, running the
    /// handler (counted in `runs`) when told to.
    fn serve(
        serving: &mut Serving<()>,
        from: &Identity,
        frame: &Bytes,
        runs: &mut Vec<u64>,
    ) -> Bytes {
        let Ok(Frame::Call(call)) = Frame::parse(frame) else {
            panic!("not a CALL");
        };
        let key = (from.clone(), call.id);
        match serving.handle_call(&key, Ok(())) {
            Action::Run(()) => {
                runs.push(call.id);
                let result = wire::ok_frame(call.id, Body::raw(REPLY_HEADROOM, call.args));
                serving.handle_finished(&key, result.clone());
                result
            }
            Action::Reply(frame, Reply::Cached) => frame,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn after_a_broken_connection_each_call_runs_once_and_every_caller_gets_its_result() {
        let t0 = Instant::now();
        let (client, server) = (
            Identity::new("client").unwrap(),
            Identity::new("server").unwrap(),
        );
        let mut calls = Calls::new();
        let mut serving = Serving::new(8, 16, 1 << 20);
        let mut runs = Vec::new();
        let mut frames = Vec::new();
        for id in [1, 2] {
            let frame = wire::call_frame(
                id,
                "echo",
                "say",
                10_000,
                Body::raw(wire::call_headroom("echo", "say"), &[id as u8]),
            );
            frames.push(frame.clone());
            calls.start(
                NewCall {
                    id,
                    to: server.clone(),
                    frame,
                    deadline: t0 + 10 * SEC,
                    timeout: 10 * SEC,
                    connected: true,
                },
                id,
            );
        }
        // Call 1 reaches the server and runs; its result is lost with the
        // connection, and so is call 2.
        serve(&mut serving, &client, &frames[0], &mut runs);

        calls.handle_connected(&server, t0 + SEC);
        let mut resent: Vec<_> = std::iter::from_fn(|| calls.poll_transmit()).collect();
        resent.sort_by_key(|t| wire::peek(&t.frame).and_then(|(_, id)| id));
        assert!(resent.iter().all(|t| t.kind == TransmitKind::Resend));
        assert_eq!(
            resent.iter().map(|t| &t.frame).collect::<Vec<_>>(),
            [&frames[0], &frames[1]]
        );

        for t in resent {
            let result = serve(&mut serving, &client, &t.frame, &mut runs);
            let Ok(Frame::Result(reply)) = Frame::parse(&result) else {
                panic!("not a RESULT");
            };
            assert_eq!(calls.handle_result(&server, reply.id), Some(reply.id));
        }
        assert_eq!(runs, [1, 2]);
        assert_eq!(calls.poll_timeout(), None);
    }
}
