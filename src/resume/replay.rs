//! The replay buffer: bytes written but not yet acknowledged by the peer, kept to send again
//! after a reconnect.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Owned writes shorter than this are copied (into the blocks borrowed writes go to); longer
/// ones are kept as they are, without a copy.
const COPY_BELOW: usize = 4 * 1024;

/// The size of the blocks borrowed writes are copied into (smaller for a smaller buffer).
pub(crate) const BLOCK: usize = 64 * 1024;

/// Written bytes from `base` (the first the peer has not acknowledged) to `end`: those sent on
/// the current transport (`base..sent`), then those not sent yet (`sent..end`).
///
/// The bytes are held as [`Bytes`] segments: a borrowed write is copied into `tail` (frozen
/// into a segment when the block is full or an owned write follows), an owned one is kept as it
/// came, so sending it costs no copy at all. Bytes are sent from the tail in place, so small
/// writes sent one by one cost no segment each: what the buffer holds stays within its blocks
/// (a segment per write cost some 50 bytes of bookkeeping per 1-byte write). Acknowledged
/// segments are dropped; a reconnect moves the unacknowledged ones back to the queue to send.
///
/// The blocks copies go into are reused, most recently freed first: allocating and freeing one
/// per frame made the allocator hand memory back to the kernel and fault it in again, a page
/// fault every few kilobytes.
#[derive(Debug)]
pub(crate) struct Replay {
    /// Sent on this transport, not acknowledged: `base..sent`.
    in_flight: VecDeque<Segment>,
    /// Not sent yet: `sent..` up to `tail`.
    unsent: VecDeque<Segment>,
    /// Copied bytes after `unsent`, at most one block.
    tail: BytesMut,
    /// The first bytes of `tail` that were sent on this transport (then `unsent` is empty).
    tail_sent: usize,
    /// Emptied blocks for `tail`.
    spare: Vec<BytesMut>,
    /// The size of a block: `BLOCK`, or the capacity if smaller.
    block: usize,
    base: u64,
    sent: u64,
    end: u64,
    capacity: usize,
}

#[derive(Debug)]
struct Segment {
    bytes: Bytes,
    /// Cut from one of this buffer's own blocks (not an owned write): its block may be reused.
    copied: bool,
}

impl Replay {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            in_flight: VecDeque::new(),
            unsent: VecDeque::new(),
            tail: BytesMut::new(),
            tail_sent: 0,
            spare: Vec::new(),
            block: capacity.min(BLOCK),
            base: 0,
            sent: 0,
            end: 0,
            capacity,
        }
    }

    /// The position after the last byte written.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        (self.end - self.base) as usize
    }

    /// The most bytes held at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Room left, in bytes.
    pub(crate) fn free(&self) -> usize {
        self.capacity - self.len()
    }

    /// Copy as much of `buf` as there is room for; returns how much.
    pub(crate) fn push(&mut self, buf: &[u8]) -> usize {
        let n = buf.len().min(self.free());
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if self.tail.len() >= self.block || self.tail.capacity() == self.tail.len() {
                self.freeze_tail();
                if self.tail.capacity() == 0 {
                    // The tail is empty: a spare block (or a new one), never a copy of what
                    // the tail held.
                    self.tail = self.spare.pop().unwrap_or_default();
                    self.tail.reserve(self.block);
                }
            }
            let k = rest
                .len()
                .min(self.tail.capacity() - self.tail.len())
                .min(self.block - self.tail.len());
            self.tail.extend_from_slice(&rest[..k]);
            rest = &rest[k..];
        }
        self.end += n as u64;
        n
    }

    /// Take as much of `bytes` as there is room for, without copying it (unless it is short);
    /// what is taken is split off its front.
    pub(crate) fn push_bytes(&mut self, bytes: &mut Bytes) -> usize {
        let n = bytes.len().min(self.free());
        if n < COPY_BELOW {
            let taken = self.push(&bytes[..n]);
            let _ = bytes.split_to(taken);
            return taken;
        }
        self.freeze_tail();
        self.unsent.push_back(Segment {
            bytes: bytes.split_to(n),
            copied: false,
        });
        self.end += n as u64;
        n
    }

    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            let mut bytes = self.tail.split().freeze();
            if self.tail_sent > 0 {
                let sent = bytes.split_to(std::mem::take(&mut self.tail_sent));
                self.in_flight.push_back(Segment {
                    bytes: sent,
                    copied: true,
                });
            }
            if !bytes.is_empty() {
                self.unsent.push_back(Segment {
                    bytes,
                    copied: true,
                });
            }
            if self.tail.capacity() == 0 {
                // Let go of the full block, so that it can be reused once acknowledged.
                self.tail = BytesMut::new();
            }
        }
    }

    /// Keep the block of an acknowledged segment for reuse, if nothing else holds it.
    fn recycle(&mut self, segment: Segment) {
        if !segment.copied {
            return;
        }
        if let Ok(block) = segment.bytes.try_into_mut() {
            self.keep_spare(block);
        }
    }

    /// Keep `block` for reuse while the blocks kept and the bytes held fit in the capacity.
    fn keep_spare(&mut self, mut block: BytesMut) {
        if (self.spare.len() + 1) * self.block + self.len() <= self.capacity {
            block.clear();
            self.spare.push(block);
        }
    }

    /// The position after the last byte sent on this transport.
    pub(crate) fn sent_position(&self) -> u64 {
        self.sent
    }

    /// Bytes not sent yet.
    pub(crate) fn unsent_len(&self) -> usize {
        (self.end - self.sent) as usize
    }

    /// The next unsent bytes, at most `max`, as slices into `slices` (as many as fit); returns
    /// how many slices were filled.
    pub(crate) fn unsent_slices<'a>(&'a self, max: usize, slices: &mut [IoSlice<'a>]) -> usize {
        let tail = &self.tail[self.tail_sent..];
        let segments = self.unsent.iter().map(|segment| &segment.bytes[..]);
        let mut left = max;
        let mut filled = 0;
        for (slot, bytes) in slices
            .iter_mut()
            .zip(segments.chain(Some(tail).filter(|t| !t.is_empty())))
        {
            if left == 0 {
                break;
            }
            let k = bytes.len().min(left);
            *slot = IoSlice::new(&bytes[..k]);
            left -= k;
            filled += 1;
        }
        filled
    }

    /// `n` of the [unsent](Self::unsent_slices) bytes went out.
    pub(crate) fn sent(&mut self, mut n: usize) {
        self.sent += n as u64;
        while n > 0 {
            let Some(front) = self.unsent.front_mut() else {
                // The rest went out from the tail, which stays as it is.
                debug_assert!(self.tail_sent + n <= self.tail.len());
                self.tail_sent += n;
                return;
            };
            if n >= front.bytes.len() {
                n -= front.bytes.len();
                let whole = self.unsent.pop_front().expect("checked above");
                self.in_flight.push_back(whole);
            } else {
                let bytes = front.bytes.split_to(n);
                let copied = front.copied;
                self.in_flight.push_back(Segment { bytes, copied });
                n = 0;
            }
        }
    }

    /// The peer has every byte before `position` (at most what was sent): drop them.
    pub(crate) fn ack(&mut self, position: u64) {
        debug_assert!(position <= self.sent);
        while self.base < position {
            let Some(front) = self.in_flight.front_mut() else {
                // Sent from the tail.
                let k = self.tail_sent.min((position - self.base) as usize);
                debug_assert!(k > 0, "acknowledged bytes were sent");
                self.tail.advance(k);
                self.tail_sent -= k;
                self.base += k as u64;
                if self.tail.capacity() == 0 {
                    // A full block, all acknowledged.
                    let block = std::mem::take(&mut self.tail);
                    self.keep_spare(block);
                }
                continue;
            };
            let k = front.bytes.len().min((position - self.base) as usize);
            if k == front.bytes.len() {
                let done = self.in_flight.pop_front().expect("checked above");
                self.recycle(done);
            } else {
                let _ = front.bytes.split_to(k);
            }
            self.base += k as u64;
        }
    }

    /// A new transport, whose peer has every byte before `position` (at least `base`, at most
    /// what was sent): everything after it is to be sent again.
    pub(crate) fn rewind(&mut self, position: u64) {
        debug_assert!(self.base <= position && position <= self.sent);
        self.ack(position);
        while let Some(segment) = self.in_flight.pop_back() {
            self.unsent.push_front(segment);
        }
        self.tail_sent = 0;
        self.sent = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unsent bytes as slices, at most `max` of them.
    fn unsent(replay: &mut Replay, max: usize) -> Vec<Vec<u8>> {
        let mut slices = [IoSlice::new(&[]); 16];
        let n = replay.unsent_slices(max, &mut slices);
        slices[..n].iter().map(|s| s.to_vec()).collect()
    }

    /// Send everything unsent, at most `most` bytes at a time.
    fn send_all(replay: &mut Replay, most: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let chunk = unsent(replay, most).concat();
            if chunk.is_empty() {
                return out;
            }
            assert!(chunk.len() <= most);
            out.extend_from_slice(&chunk);
            replay.sent(chunk.len());
        }
    }

    #[test]
    fn copied_and_owned_writes_are_sent_in_order_and_again_after_a_rewind() {
        let mut replay = Replay::new(1 << 20);
        let mut written = Vec::new();
        for (i, len) in [10, 70_000, 3, 5_000, 200_000, 1].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            if i % 2 == 0 {
                assert_eq!(replay.push(&data), len);
            } else {
                let mut owned = Bytes::from(data.clone());
                assert_eq!(replay.push_bytes(&mut owned), len);
                assert!(owned.is_empty());
            }
            written.extend_from_slice(&data);
        }
        assert_eq!(replay.end(), written.len() as u64);
        assert_eq!(replay.unsent_len(), written.len());
        assert_eq!(send_all(&mut replay, 30_000), written);
        // The peer got the first 12,345 bytes; the rest goes out again.
        replay.rewind(12_345);
        assert_eq!(replay.len(), written.len() - 12_345);
        assert_eq!(send_all(&mut replay, 100_000), written[12_345..]);
        replay.ack(written.len() as u64);
        assert_eq!((replay.len(), replay.free()), (0, 1 << 20));
    }

    #[test]
    fn writes_wait_for_room_and_partial_acks_free_it() {
        let mut replay = Replay::new(10);
        assert_eq!(replay.push(b"0123456"), 7);
        let mut owned = Bytes::from_static(b"789abc");
        assert_eq!(replay.push_bytes(&mut owned), 3);
        assert_eq!(&owned[..], b"abc");
        assert_eq!(replay.push(b"x"), 0);
        assert_eq!(send_all(&mut replay, 4), b"0123456789");
        replay.ack(4);
        assert_eq!(replay.free(), 4);
        assert_eq!(replay.push_bytes(&mut owned), 3);
        replay.rewind(5);
        assert_eq!(send_all(&mut replay, 100), b"56789abc");
    }

    #[test]
    fn small_writes_go_out_from_the_tail_and_again_after_a_rewind() {
        let mut replay = Replay::new(10_000);
        let mut written = Vec::new();
        for i in 0..300u32 {
            let byte = [(i % 251) as u8];
            replay.push(&byte);
            written.push(byte[0]);
            assert_eq!(
                send_all(&mut replay, 7),
                byte,
                "each write goes out as it comes"
            );
        }
        assert!(
            replay.in_flight.is_empty() && replay.unsent.is_empty(),
            "no segment per write"
        );
        replay.ack(120);
        assert_eq!(replay.len(), 180);
        // An owned write after them, then a reconnect: the peer has 150.
        let owned = Bytes::from(vec![9; 5000]);
        written.extend_from_slice(&owned);
        assert_eq!(replay.push_bytes(&mut owned.clone()), 5000);
        replay.rewind(150);
        assert_eq!(send_all(&mut replay, 64), written[150..]);
        replay.ack(written.len() as u64);
        assert_eq!(replay.free(), 10_000);
    }

    #[test]
    fn long_owned_writes_are_not_copied() {
        let mut replay = Replay::new(1 << 20);
        let data = Bytes::from(vec![7; 100_000]);
        replay.push_bytes(&mut data.clone());
        let mut slices = [IoSlice::new(&[])];
        replay.unsent_slices(usize::MAX, &mut slices);
        assert_eq!(
            slices[0].as_ptr(),
            data.as_ptr(),
            "the same memory, not a copy"
        );
    }

    #[test]
    fn copied_bytes_are_kept_in_blocks_and_sent_across_them() {
        let mut replay = Replay::new(1 << 20);
        replay.push(&vec![1; 3 * BLOCK + 10]);
        let sizes: Vec<usize> = unsent(&mut replay, usize::MAX)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [BLOCK, BLOCK, BLOCK, 10]);
        // One send may end inside a block, the next one goes on from there.
        replay.sent(BLOCK + 5);
        let sizes: Vec<usize> = unsent(&mut replay, BLOCK).iter().map(Vec::len).collect();
        assert_eq!(sizes, [BLOCK - 5, 5]);
    }

    #[test]
    fn a_small_buffer_takes_small_blocks() {
        let mut replay = Replay::new(1000);
        assert_eq!(replay.push(&[1; 600]), 600);
        assert_eq!(replay.push(&[2; 600]), 400);
        let sizes: Vec<usize> = unsent(&mut replay, usize::MAX)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [1000]);
        assert!(replay.spare.is_empty() && replay.tail.capacity() < BLOCK);
    }

    #[test]
    fn blocks_are_reused_once_acknowledged() {
        let mut replay = Replay::new(4 * BLOCK);
        replay.push(&vec![1; 2 * BLOCK]);
        let mut slices = [IoSlice::new(&[]); 2];
        replay.unsent_slices(usize::MAX, &mut slices);
        let second = slices[1].as_ptr();
        send_all(&mut replay, BLOCK);
        replay.ack(2 * BLOCK as u64);
        assert_eq!(replay.spare.len(), 2);
        replay.push(&[2; 10]);
        let mut slices = [IoSlice::new(&[])];
        replay.unsent_slices(usize::MAX, &mut slices);
        assert_eq!(&*slices[0], [2; 10]);
        assert_eq!(
            slices[0].as_ptr(),
            second,
            "the block freed last comes back first"
        );
        assert_eq!(replay.spare.len(), 1);
        // An owned write's memory is never taken over.
        let mut owned = Bytes::from(vec![3; BLOCK]);
        replay.push_bytes(&mut owned);
        send_all(&mut replay, BLOCK);
        replay.ack(replay.end());
        assert_eq!(replay.spare.len(), 1);
    }
}
