//! A provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a
//! buffer for each multishot receive and names it in the completion; the
//! engine hands it back as soon as the data has been fed to the `Conn`.
//!
//! Registered incremental (IOU_PBUF_RING_INC, Linux 6.12) where the kernel
//! takes it: a receive then uses only the bytes it needs of the buffer at
//! the head, and the next receive goes on right behind them
//! (IORING_CQE_F_BUF_MORE says the buffer is not done), so the pages the
//! buffers touch follow the bytes received, not the count of receives. A
//! fresh worker whose first 1,000 connections each send one 46-byte request
//! touches 12 pages of buffers, not 128 (one page each, 512 KiB): 470 bytes
//! per connection less. Elsewhere each receive takes a whole buffer, and
//! every offset below stays 0.
//!
//! Quiet, the buffers give their pages back (`release`): a tick during
//! which no receive filled any of them hands them to the kernel with
//! MADV_DONTNEED, so idle connections do not keep the 128 KiB a burst of
//! traffic touched (the next receive faults in a zeroed page).
//!
//! Both the ring of descriptors and the buffers themselves are anonymous
//! mmaps owned here. The owner must unregister the ring (or drop the io_uring)
//! and have no receive in flight before this is dropped; if that cannot be
//! guaranteed, `leak` keeps the memory mapped for the life of the process.

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

pub struct BufRing {
    /// Page-aligned array of `entries` descriptors; the tail lives in the
    /// reserved field of descriptor 0.
    ring: *mut BufRingEntry,
    ring_len: usize,
    /// `entries * size` bytes of buffers; buffer `bid` starts at `bid * size`.
    data: *mut u8,
    data_len: usize,
    entries: u16,
    size: usize,
    /// Our copy of the tail (the kernel owns the head).
    tail: u16,
    /// Per buffer: the bytes earlier completions took of it (incremental
    /// mode), where the next completion's bytes start.
    used: Box<[u32]>,
    /// A completion named a buffer since the last `quiet` call.
    active: bool,
    /// One did since the last `release`: some pages may be resident.
    resident: bool,
    leaked: bool,
}

fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint has no
    // preconditions; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as *mut u8)
}

impl BufRing {
    /// `entries` must be a power of two (at most 32768).
    pub fn new(entries: u16, size: usize) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two() && entries <= 32768);
        let ring_len = entries as usize * std::mem::size_of::<BufRingEntry>();
        let data_len = entries as usize * size;
        let ring = map(ring_len)? as *mut BufRingEntry;
        let data = match map(data_len) {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: `ring` was mapped just above with this length and is not used elsewhere.
                // EINVAL only, for arguments that are not what we mapped.
                let r =
                    crate::syscall!(unsafe { libc::munmap(ring as *mut libc::c_void, ring_len) });
                debug_assert!(r.is_ok(), "munmap: {r:?}");
                return Err(e);
            }
        };
        let mut br = BufRing {
            ring,
            ring_len,
            data,
            data_len,
            entries,
            size,
            tail: 0,
            used: vec![0; entries as usize].into_boxed_slice(),
            active: false,
            resident: false,
            leaked: false,
        };
        for bid in 0..entries {
            br.put(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Address to pass to `register_buf_ring_with_flags`.
    pub fn ring_addr(&self) -> u64 {
        self.ring as u64
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    pub fn buf_size(&self) -> usize {
        self.size
    }

    /// The `len` bytes a completion put in buffer `bid`: they start where
    /// the bytes of the completions before it in this buffer ended. Every
    /// completion that names a buffer comes here (or to `skip`) once, in
    /// order, and then to `finish`.
    ///
    /// # Safety
    ///
    /// `bid` must come from a completion (`cqueue::buffer_select`) and must not
    /// have been given back with `finish` yet: only then does the kernel not
    /// write into the bytes it filled. `len` is the completion's result.
    pub unsafe fn get(&mut self, bid: u16, len: usize) -> &[u8] {
        let bid = bid as usize % self.entries as usize;
        self.active = true;
        self.resident = true;
        let start = (self.used[bid] as usize).min(self.size);
        let len = len.min(self.size - start);
        self.used[bid] += len as u32;
        // SAFETY: the bytes lie inside the `data` mapping (bid < entries,
        // start + len <= size); per the contract above the kernel filled
        // them and will not touch them until the buffer is given back.
        unsafe { std::slice::from_raw_parts(self.data.add(bid * self.size + start), len) }
    }

    /// A completion put `len` bytes in buffer `bid` that nobody reads:
    /// counted, so the next one's bytes are found where they are.
    pub fn skip(&mut self, bid: u16, len: usize) {
        let bid = bid as usize % self.entries as usize;
        self.active = true;
        self.resident = true;
        self.used[bid] = (self.used[bid] as usize + len).min(self.size) as u32;
    }

    /// After a completion naming buffer `bid` was handled: unless the kernel
    /// still fills it (`more`: IORING_CQE_F_BUF_MORE), it goes back.
    pub fn finish(&mut self, bid: u16, more: bool) {
        if !more {
            self.used[bid as usize % self.entries as usize] = 0;
            self.recycle(bid);
        }
    }

    /// Give buffer `bid` back to the kernel.
    fn recycle(&mut self, bid: u16) {
        self.put(bid % self.entries);
        self.publish();
    }

    fn put(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries, so the descriptor is inside the ring mapping.
        // The kernel only reads descriptors between its head and our published
        // tail, and this one is past the published tail until `publish`.
        let e = unsafe { &mut *self.ring.add(idx) };
        // SAFETY: bid < entries, so the address is inside the data mapping.
        e.set_addr(unsafe { self.data.add(bid as usize * self.size) } as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the ring base is a valid, initialised descriptor array, so the
        // tail field address is valid; it is a naturally aligned u16 the kernel
        // reads concurrently, hence the atomic release store.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Once per timer tick: whether no completion named a buffer since the
    /// last call, while some did since the last `release`.
    pub fn quiet(&mut self) -> bool {
        !std::mem::take(&mut self.active) && self.resident
    }

    /// Some completion named a buffer since the last `release`.
    pub fn resident(&self) -> bool {
        self.resident
    }

    /// Give the buffers' pages back to the kernel (MADV_DONTNEED): they
    /// read as zeros from now on, and the kernel faults a page in again
    /// when it next fills a buffer.
    ///
    /// # Safety
    ///
    /// Nothing may be writing into the buffers while this runs, and every
    /// completion that named one must have been handled (its bytes were
    /// fed on and are not looked at again): with DEFER_TASKRUN the kernel
    /// fills them only inside this thread's `io_uring_enter`, so between two
    /// enters, once the completion queue is empty, both hold.
    pub unsafe fn release(&mut self) {
        // SAFETY: the range is exactly the `data` mapping made in `new`
        // (private, anonymous), which stays mapped: DONTNEED only drops its
        // pages, which then read as zeros. Per the contract above no write
        // into it is under way and no byte of it is still to be read.
        let r = crate::syscall!(unsafe {
            libc::madvise(
                self.data as *mut libc::c_void,
                self.data_len,
                libc::MADV_DONTNEED,
            )
        });
        debug_assert!(r.is_ok(), "madvise: {r:?}");
        self.resident = false;
    }

    /// Keep the memory mapped forever (an operation may still use it).
    pub fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: both regions were mapped in `new` with these lengths; the
        // owner guarantees the kernel no longer uses them (ring unregistered or
        // destroyed, no receive in flight), otherwise it calls `leak`.
        // munmap fails only (EINVAL) for arguments that are not what we mapped.
        let r =
            crate::syscall!(unsafe { libc::munmap(self.ring as *mut libc::c_void, self.ring_len) });
        debug_assert!(r.is_ok(), "munmap: {r:?}");
        // SAFETY: as above.
        let r =
            crate::syscall!(unsafe { libc::munmap(self.data as *mut libc::c_void, self.data_len) });
        debug_assert!(r.is_ok(), "munmap: {r:?}");
    }
}
