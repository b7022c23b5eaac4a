//! REQ/REP: a request carries [`Flags::REQUEST`]; its reply carries
//! [`Flags::REPLY`] and starts with the request's 16-byte id.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::error::Misuse;
use crate::message::Flags;
use crate::{Identity, Message, MessageId, Messaging, MessagingError, Received};

/// Removes a pending request when its caller stops waiting.
struct PendingGuard<'a> {
    messaging: &'a Messaging,
    id: MessageId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.messaging.pending().remove(&self.id);
    }
}

impl Messaging {
    /// Sends a request to `to` and waits for its reply, at most `timeout`
    /// (which is also the request's TTL). Fails with
    /// [`MessagingError::Timeout`] when no reply comes.
    ///
    /// Cancel-safe: dropping the future forgets the request; a late reply is
    /// counted as unhandled.
    pub async fn request(
        &self,
        to: &Identity,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Received, MessagingError> {
        let mut message = Message::new(data).with_ttl(timeout);
        message.flags = Flags::REQUEST;
        let id = message.id;
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        let _guard = PendingGuard {
            messaging: self,
            id,
        };
        self.send_message(to, message).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(MessagingError::Closed),
            Err(_) => Err(MessagingError::Timeout(timeout)),
        }
    }

    /// Answers a request received from a peer. Fails with
    /// [`Misuse::NotARequest`] when `request` is not a request.
    ///
    /// Cancel-safe: a reply is never stored, so it is queued at the first
    /// poll, or not at all if the future is dropped before.
    pub async fn reply(
        &self,
        request: &Received,
        data: impl Into<Bytes>,
    ) -> Result<(), MessagingError> {
        if request.kind() != crate::Kind::Request {
            return Err(Misuse::NotARequest.into());
        }
        let data = data.into();
        let mut body = BytesMut::with_capacity(16 + data.len());
        body.put_slice(&request.message.id.0);
        body.put_slice(&data);
        let mut message = Message::new(body.freeze());
        message.ttl = request.message.ttl;
        message.flags = Flags::REPLY;
        self.send_message(&request.from, message).await
    }
}

/// Splits a reply's body into the request id and, left in `data`, the
/// payload. `data` is unchanged when it is too short.
pub(crate) fn split_reply(data: &mut Bytes) -> Option<MessageId> {
    let id: [u8; 16] = data.get(..16)?.try_into().ok()?;
    data.advance(16);
    Some(MessageId(id))
}
