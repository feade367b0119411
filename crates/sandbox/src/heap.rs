//! A worker's QuickJS heap in one range of address space it reserves ([`Space`]), with the
//! allocator QuickJS is given ([`SpaceAlloc`]), so that the whole heap (runtime, realm, the
//! prelude read in) is saved once, right after it is made, and put back with one copy after
//! every call ([`Space::restore`]): every call starts from the same bytes, and neither a fresh
//! realm nor the collector's pass over the last one is paid per call (they were three
//! quarters of a trivial call's work).
//!
//! The range is reserved without access (`PROT_NONE`, so it is not counted as committed
//! memory) and made readable and writable from its start as the heap grows. Blocks are
//! carved from it by a bump pointer and kept, once freed, on a list per size class (16-byte
//! steps up to 128 bytes, then eight classes per doubling: at most 1/8 of a block unused);
//! the bump pointer and the lists live at the start of the range, so they are saved and put
//! back with the heap. Once the heap is saved, a block over [`LARGE_BYTES`] gets a mapping of
//! its own, unmapped when freed or when the heap is put back, so a call's large strings and
//! arrays neither fragment the range nor stay resident. After a call that grew the heap by
//! more than [`RELEASE_ABOVE`], the pages above the saved image are given back to the system.
//!
//! QuickJS counts a block at the size it asked for (its heap limit is unchanged); QuickJS's
//! own arenas serve its blocks of up to 512 bytes from 4 KiB chunks taken here. Freed blocks
//! are not merged, so a call may carve from the range only so much beyond the image
//! ([`Space::limit`]: engine.rs gives twice the call's heap limit and 4 MiB).
//!
//! This file and `crates/cli/src/alloc.rs` are the workspace's only `unsafe` code: raw
//! memory, `mmap`, and rquickjs's `Allocator` trait. Each block carries a 16-byte header
//! (its class, or [`MAPPED`], and the size asked for) before the address QuickJS gets.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ptr;
use std::rc::Rc;

use rquickjs::allocator::Allocator;

/// The least address space a heap is given (not memory: only what the heap touches is).
const MIN_RESERVE: usize = 8 << 20;
/// The range is made writable in steps of this size.
const COMMIT_STEP: usize = 1 << 20;
/// The bump pointer and the free lists, at the start of the range.
const HEAD_BYTES: usize = 2048;
/// A block's header: its class (or [`MAPPED`]) and the size asked for.
const HEADER: usize = 16;
/// Blocks larger than this (header included) get their own mapping once the heap is saved.
const LARGE_BYTES: usize = 128 * 1024;
/// The header's class of a block with its own mapping.
const MAPPED: usize = usize::MAX;
/// Size classes: 7 of 16-byte steps (32–128 bytes), then 8 per doubling up to 2^32.
const CLASSES: usize = 7 + 25 * 8;
/// After a call that grew the heap by more than this, the pages above the image are released.
const RELEASE_ABOVE: usize = 4 << 20;

#[repr(C)]
struct Head {
    bump: usize,
    free: [usize; CLASSES],
}

const _: () = assert!(std::mem::size_of::<Head>() <= HEAD_BYTES);

/// The class of a block of `total` bytes (header included) and the block's size.
fn class_of(total: usize) -> (usize, usize) {
    let total = total.max(32);
    if total <= 128 {
        let size = total.div_ceil(16) * 16;
        return (size / 16 - 2, size);
    }
    // 2^k < total <= 2^(k+1), k >= 7: eight steps of 2^(k-3) (at least 16 bytes).
    let k = (usize::BITS - 1 - (total - 1).leading_zeros()) as usize;
    let step = 1usize << (k - 3);
    let q = (total - (1 << k)).div_ceil(step);
    (7 + (k - 7) * 8 + (q - 1), (1 << k) + q * step)
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// A reserved range of address space holding one QuickJS runtime's heap.
pub(crate) struct Space {
    base: *mut u8,
    /// Bytes reserved from `base`.
    reserved: usize,
    page: usize,
    /// Bytes from `base` that are readable and writable.
    committed: Cell<usize>,
    /// Blocks with their own mapping, made since the heap was saved: header address → the
    /// mapping's length (kept here: a block shrunk in place keeps its whole mapping).
    mapped: RefCell<HashMap<usize, usize>>,
    /// The furthest the bump pointer may go during a call (see [`Space::limit`]).
    end: Cell<usize>,
    /// The heap's bytes as saved (from `base` to the bump pointer then).
    image: RefCell<Option<Box<[u8]>>>,
}

impl Space {
    /// Reserves a range of `want` bytes, or of half that, a quarter… when the system refuses
    /// (a process whose address space is limited, `ulimit -v`), down to [`MIN_RESERVE`]; `None`
    /// when it refuses even that. A smaller range only means that a call can allocate less.
    pub(crate) fn new(want: usize) -> Option<Rc<Space>> {
        let sizes = std::iter::successors(Some(want.max(MIN_RESERVE)), |&s| {
            (s / 2 >= MIN_RESERVE).then_some(s / 2)
        });
        let (base, reserved) = sizes.into_iter().find_map(|size| {
            // SAFETY: a new private anonymous mapping, touching no existing memory.
            let base = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    size,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            (base != libc::MAP_FAILED).then_some((base, size))
        })?;
        let space = Space {
            base: base.cast(),
            reserved,
            page: page_size(),
            committed: Cell::new(0),
            mapped: RefCell::new(HashMap::new()),
            end: Cell::new(reserved),
            image: RefCell::new(None),
        };
        if !space.commit(HEAD_BYTES) {
            return None;
        }
        // SAFETY: `base` is committed, writable and aligned for `Head` (page-aligned).
        unsafe {
            space.head().write(Head {
                bump: HEAD_BYTES,
                free: [0; CLASSES],
            })
        };
        Some(Rc::new(space))
    }

    fn head(&self) -> *mut Head {
        self.base.cast()
    }

    /// Makes the range writable up to `end` bytes from its start.
    fn commit(&self, end: usize) -> bool {
        let have = self.committed.get();
        if end <= have {
            return true;
        }
        if end > self.reserved {
            return false;
        }
        let want = end
            .div_ceil(COMMIT_STEP)
            .saturating_mul(COMMIT_STEP)
            .min(self.reserved);
        // SAFETY: [have, want) lies inside the reserved range.
        let done = unsafe {
            libc::mprotect(
                self.base.add(have).cast(),
                want - have,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } == 0;
        if done {
            self.committed.set(want);
        }
        done
    }

    /// Saves the heap as it is now: what [`Space::restore`] puts back.
    pub(crate) fn save(&self) {
        // SAFETY: the head is committed; [base, bump) is committed (blocks are carved below it).
        let image = unsafe {
            let used = (*self.head()).bump;
            std::slice::from_raw_parts(self.base, used).to_vec()
        };
        *self.image.borrow_mut() = Some(image.into_boxed_slice());
    }

    /// Puts the saved heap back: the blocks with their own mapping are unmapped, the saved
    /// bytes copied over the range, and, after a call that grew the heap much, the pages above
    /// them released. Nothing may hold or use a block of the heap across this.
    pub(crate) fn restore(&self) {
        let image = self.image.borrow();
        let Some(image) = image.as_ref() else { return };
        for (header, len) in self.mapped.borrow_mut().drain() {
            // SAFETY: a mapping this space made, of that length, not yet unmapped.
            unsafe { libc::munmap(header as *mut libc::c_void, len) };
        }
        // SAFETY: [base, image.len()) was committed when the image was taken and stays so.
        let high = unsafe {
            let high = (*self.head()).bump;
            ptr::copy_nonoverlapping(image.as_ptr(), self.base, image.len());
            high
        };
        let from = image.len().div_ceil(self.page) * self.page;
        if high > from + RELEASE_ABOVE {
            // SAFETY: [from, high) is committed, above the image, and holds no live block now.
            unsafe {
                libc::madvise(self.base.add(from).cast(), high - from, libc::MADV_DONTNEED);
            }
        }
    }

    /// Bounds what a call may carve from the range beyond the saved image to `bytes` (the
    /// call's heap limit and room for its blocks' classes and free lists): blocks freed to
    /// one class's list are not reused by another, so without it a script could cycle through
    /// the classes and touch the whole range while QuickJS counts it under its limit. Past it
    /// an allocation fails (QuickJS's out of memory).
    pub(crate) fn limit(&self, bytes: usize) {
        let from = self.image_bytes();
        self.end.set(from.saturating_add(bytes).min(self.reserved));
    }

    /// Bytes reserved.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    /// Bytes of the saved image, or 0.
    pub(crate) fn image_bytes(&self) -> usize {
        self.image.borrow().as_ref().map_or(0, |i| i.len())
    }

    fn alloc(&self, size: usize) -> *mut u8 {
        let Some(total) = size.checked_add(HEADER).filter(|_| size > 0) else {
            return ptr::null_mut();
        };
        if total > LARGE_BYTES && self.image.borrow().is_some() {
            return self.map(size, total);
        }
        if total > self.reserved {
            return ptr::null_mut();
        }
        let (class, bytes) = class_of(total);
        if class >= CLASSES {
            return ptr::null_mut();
        }
        let head = self.head();
        // SAFETY: the head is committed; free-list entries are offsets of freed blocks of this
        // class in the committed range, each holding the next entry in its first word.
        unsafe {
            let free = (*head).free[class];
            let offset = if free != 0 {
                (*head).free[class] = self.base.add(free + HEADER).cast::<usize>().read();
                free
            } else {
                let offset = (*head).bump;
                if offset
                    .checked_add(bytes)
                    .is_none_or(|end| end > self.end.get() || !self.commit(end))
                {
                    return ptr::null_mut();
                }
                (*head).bump = offset + bytes;
                offset
            };
            let block = self.base.add(offset);
            block.cast::<usize>().write(class);
            block.add(8).cast::<usize>().write(size);
            block.add(HEADER)
        }
    }

    /// A block with its own mapping.
    fn map(&self, size: usize, total: usize) -> *mut u8 {
        let len = total.div_ceil(self.page) * self.page;
        // SAFETY: a new private anonymous mapping.
        let block = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if block == libc::MAP_FAILED {
            return ptr::null_mut();
        }
        let block: *mut u8 = block.cast();
        // SAFETY: the mapping is writable and at least a page long.
        unsafe {
            block.cast::<usize>().write(MAPPED);
            block.add(8).cast::<usize>().write(size);
        }
        self.mapped.borrow_mut().insert(block as usize, len);
        // SAFETY: within the mapping.
        unsafe { block.add(HEADER) }
    }

    /// SAFETY: `ptr` was returned by [`Space::alloc`] of this space and not freed since.
    unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: per the contract, the header precedes `ptr`; a class block lies in the
        // committed range and is at least 32 bytes, room for the free list's link.
        unsafe {
            let block = ptr.sub(HEADER);
            let class = block.cast::<usize>().read();
            if class == MAPPED {
                if let Some(len) = self.mapped.borrow_mut().remove(&(block as usize)) {
                    libc::munmap(block.cast(), len);
                }
                return;
            }
            let head = self.head();
            ptr.cast::<usize>().write((*head).free[class]);
            (*head).free[class] = block.offset_from(self.base) as usize;
        }
    }

    /// SAFETY: as [`Space::free`].
    unsafe fn realloc(&self, ptr: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: per the contract, the header precedes `ptr`.
        unsafe {
            let block = ptr.sub(HEADER);
            let class = block.cast::<usize>().read();
            let old = block.add(8).cast::<usize>().read();
            let room = if class == MAPPED {
                self.mapped
                    .borrow()
                    .get(&(block as usize))
                    .copied()
                    .unwrap_or(0)
            } else {
                class_bytes(class)
            };
            if size > 0 && size.checked_add(HEADER).is_some_and(|t| t <= room) {
                block.add(8).cast::<usize>().write(size);
                return ptr;
            }
            let new = self.alloc(size);
            if new.is_null() {
                return new;
            }
            ptr::copy_nonoverlapping(ptr, new, old.min(size));
            self.free(ptr);
            new
        }
    }
}

/// The size of a block of `class`.
fn class_bytes(class: usize) -> usize {
    if class < 7 {
        return (class + 2) * 16;
    }
    let k = 7 + (class - 7) / 8;
    let q = (class - 7) % 8 + 1;
    (1 << k) + q * (1 << (k - 3))
}

impl Drop for Space {
    fn drop(&mut self) {
        for (header, len) in self.mapped.get_mut().drain() {
            // SAFETY: a live mapping this space made, of that length.
            unsafe { libc::munmap(header as *mut libc::c_void, len) };
        }
        // SAFETY: the reserved range, unmapped once; nothing uses it any more (the runtime
        // that allocated from it holds an `Rc` of this space and is gone).
        unsafe { libc::munmap(self.base.cast(), self.reserved) };
    }
}

/// The allocator a runtime in a [`Space`] is made with.
pub(crate) struct SpaceAlloc(pub(crate) Rc<Space>);

// SAFETY: blocks are 16-byte aligned, at least as large as asked, and stay valid until freed
// (or until `Space::restore`, which is called only between calls, with the runtime's state
// put back to the moment every live block was allocated).
unsafe impl Allocator for SpaceAlloc {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        self.0.alloc(size)
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(bytes) = count.checked_mul(size) else {
            return ptr::null_mut();
        };
        let block = self.0.alloc(bytes);
        // SAFETY: a block of `bytes` bytes, writable, its header before it. A fresh mapping
        // is zero already (writing it would make every page resident); a block of the range
        // may hold an earlier block's bytes.
        unsafe {
            if !block.is_null() && block.sub(HEADER).cast::<usize>().read() != MAPPED {
                ptr::write_bytes(block, 0, bytes);
            }
        }
        block
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: QuickJS frees only blocks this allocator gave it.
        unsafe { self.0.free(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`.
        unsafe { self.0.realloc(ptr, new_size) }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: `ptr` is a live block of this allocator: its header holds the size asked for.
        unsafe { ptr.sub(HEADER).add(8).cast::<usize>().read() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_with_at_most_an_eighth_unused_above_128_bytes() {
        let mut last = 0;
        for total in 1..200_000usize {
            let (class, bytes) = class_of(total);
            assert!(bytes >= total.max(32), "{total}");
            assert_eq!(bytes % 16, 0);
            assert_eq!(class_bytes(class), bytes, "{total}");
            assert!(class >= last);
            last = class;
            if total > 128 {
                assert!(bytes - total <= bytes / 8, "{total} -> {bytes}");
            }
        }
        assert!(class_of(1 << 32).0 < CLASSES);
    }

    #[test]
    fn a_restored_space_gives_the_same_blocks_again_and_unmaps_large_ones() {
        let space = Space::new(MIN_RESERVE).expect("reserve");
        assert_eq!(space.reserved(), MIN_RESERVE);
        let mut a = SpaceAlloc(space.clone());
        let kept = a.alloc(100);
        assert!(!kept.is_null());
        space.save();
        let first = a.alloc(4112);
        let large = a.alloc(1 << 20);
        assert!(!large.is_null());
        assert_eq!(space.mapped.borrow().len(), 1);
        // Shrunk in place, it keeps its whole mapping (unmapped whole by the restore below).
        // SAFETY: a block of this allocator.
        let shrunk = unsafe { a.realloc(large, 200 * 1024) };
        assert_eq!(shrunk, large);
        let whole = ((1 << 20) + HEADER).div_ceil(space.page) * space.page;
        assert_eq!(
            space.mapped.borrow().get(&(large as usize - HEADER)),
            Some(&whole)
        );
        let other = a.calloc(1, 300 * 1024);
        // SAFETY: a block of this allocator, freed once.
        unsafe { a.dealloc(other) };
        assert_eq!(space.mapped.borrow().len(), 1, "freed, unmapped");
        // SAFETY: blocks of this allocator, freed once.
        unsafe {
            assert_eq!(SpaceAlloc::usable_size(large), 200 * 1024);
            let grown = a.realloc(first, 9000);
            assert!(!grown.is_null());
            a.dealloc(grown);
        }
        space.restore();
        assert!(space.mapped.borrow().is_empty());
        // A call may carve only so much beyond the image.
        space.limit(64 * 1024);
        assert!(!a.alloc(40 * 1024).is_null());
        assert!(a.alloc(40 * 1024).is_null(), "past the call's bound");
        space.restore();
        space.limit(usize::MAX);
        assert_eq!(a.alloc(4112), first, "the same block again after a restore");
        let zeroed = a.calloc(10, 10);
        // SAFETY: 100 bytes just allocated.
        assert!(
            unsafe { std::slice::from_raw_parts(zeroed, 100) }
                .iter()
                .all(|b| *b == 0)
        );
    }
}
