//! The core's [`Transmit`] on a packeter connection: a frame is queued on
//! the connection's send queue without waiting.

use bytes::Bytes;
use weft_packeter::{PacketSender, PacketerError};

use crate::core::{Transmit, TxError};

impl Transmit for PacketSender {
    fn try_send(&self, head: &[u8], body: &Bytes) -> Result<(), TxError> {
        match self.try_send_parts(head, body) {
            Ok(()) => Ok(()),
            Err(PacketerError::Link(weft_link::LinkError::QueueFull)) => Err(TxError::Full),
            Err(_) => Err(TxError::Closed),
        }
    }

    fn close(&self) {
        PacketSender::close(self);
    }

    fn abort(&self) {
        self.connection().abort();
    }

    fn bytes_accepted(&self) -> u64 {
        self.connection().bytes_accepted()
    }

    fn bytes_written(&self) -> u64 {
        self.connection().bytes_written()
    }

    fn is_datagram(&self) -> bool {
        self.info().datagram
    }

    fn connector(&self) -> Option<weft_link::ConnectorId> {
        match self.info().origin {
            weft_link::connection::Origin::Connector(id) => Some(id),
            _ => None,
        }
    }
}
