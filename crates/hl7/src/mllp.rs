//! MLLP framing (HL7 v2 over TCP): `<VT> message <FS><CR>`. Framing only; the caller owns
//! the socket.

use crate::error::Error;

/// Start block: vertical tab.
pub const START: u8 = 0x0b;
/// End block: file separator then carriage return.
pub const END: &[u8] = &[0x1c, 0x0d];

const FILE_SEPARATOR: u8 = 0x1c;
const CARRIAGE_RETURN: u8 = 0x0d;

/// Wraps one message in an MLLP frame.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(END);
    out
}

/// Reassembles messages from a byte stream fed in pieces of any size.
///
/// Bytes outside a frame (noise before a start block, stray CR/LF between frames) are skipped.
/// A start block inside an unfinished frame abandons the unfinished one: the sender gave up on
/// it and started over. A frame longer than the limit is reported once as
/// [`Error::FrameTooLarge`] and the rest of it is skipped, so one oversized message cannot hold
/// the connection's memory or stop the messages after it.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_message_size: usize,
    /// Bytes received but not yet scanned.
    pending: Vec<u8>,
    /// The payload of the frame being read, if inside one.
    current: Option<Vec<u8>>,
    /// Inside an oversized frame whose bytes are being thrown away.
    discarding: bool,
}

impl Decoder {
    /// A decoder that refuses payloads longer than `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Decoder {
        Decoder { max_message_size, pending: Vec::new(), current: None, discarding: false }
    }

    /// Adds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete payload, `Ok(None)` when more bytes are needed, or an error for an
    /// oversized frame (after which decoding carries on with the next frame).
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut consumed = 0;
        let result = self.scan(&mut consumed);
        self.pending.drain(..consumed.min(self.pending.len()));
        result
    }

    /// Whether a frame is partly received (useful to tell a clean close from a cut one).
    pub fn in_frame(&self) -> bool {
        self.current.is_some() || self.discarding
    }

    fn scan(&mut self, consumed: &mut usize) -> Result<Option<Vec<u8>>, Error> {
        while let Some(&byte) = self.pending.get(*consumed) {
            let inside = self.current.is_some() || self.discarding;
            if byte == START {
                // A new frame starts, whatever state an unfinished one was in.
                *consumed += 1;
                self.current = Some(Vec::new());
                self.discarding = false;
                continue;
            }
            if !inside {
                *consumed += 1;
                continue;
            }
            if byte == FILE_SEPARATOR {
                // The end block is FS CR; wait for the CR if it has not arrived. An FS followed
                // by anything else still ends the frame, and that byte is left for the next scan.
                match self.pending.get(*consumed + 1) {
                    None => return Ok(None),
                    Some(&CARRIAGE_RETURN) => *consumed += 2,
                    Some(_) => *consumed += 1,
                }
                if self.discarding {
                    self.discarding = false;
                    continue;
                }
                return Ok(self.current.take());
            }
            *consumed += 1;
            if self.discarding {
                continue;
            }
            if let Some(current) = self.current.as_mut() {
                if current.len() >= self.max_message_size {
                    self.current = None;
                    self.discarding = true;
                    return Err(Error::FrameTooLarge { limit: self.max_message_size });
                }
                current.push(byte);
            }
        }
        Ok(None)
    }
}
