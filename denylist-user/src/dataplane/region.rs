//! Shared memory the trie writes through: an mmapped BPF array in
//! production, a heap buffer in unit tests.
//!
//! The XDP program reads trie slots and rule words while user space changes
//! them, so every field is written with one aligned atomic store: a packet
//! sees the old value or the new one, never a torn mix.

use std::{
    io,
    ops::Deref,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64},
};

/// A rule as user space writes it: the layout of `denylist_common::Rule`.
#[repr(C)]
#[derive(Default)]
pub struct RuleCell {
    pub word: AtomicU64,
    pub id: AtomicU32,
    pub up_deny: AtomicU32,
    pub up_allow: AtomicU32,
    pub pad: AtomicU32,
}

const _: () = assert!(size_of::<RuleCell>() == size_of::<denylist_common::Rule>());

/// A compressed trie node as user space writes it: the layout of
/// `denylist_common::Node`, with `before`'s four bytes in one word.
#[repr(C)]
#[derive(Default)]
pub struct NodeCell {
    pub bits: [AtomicU64; 4],
    pub base: AtomicU32,
    pub before: AtomicU32,
    pub inline: [AtomicU32; denylist_common::INLINE_RUNS],
    pub plain: AtomicU32,
}

const _: () = assert!(size_of::<NodeCell>() == size_of::<denylist_common::Node>());

/// `len` values of `T`, zeroed when created.
pub struct Region<T> {
    ptr: NonNull<T>,
    len: usize,
    owner: Owner<T>,
}

enum Owner<T> {
    Mmap {
        bytes: usize,
    },
    /// Owns the memory `ptr` points into.
    Heap {
        _buffer: Vec<T>,
    },
}

// SAFETY: the memory is only reached through atomics (T is AtomicU32,
// AtomicU64, RuleCell or NodeCell), so sharing or sending the region is as safe as for Vec<T>.
unsafe impl<T: Sync> Send for Region<T> {}
// SAFETY: as for Send.
unsafe impl<T: Sync> Sync for Region<T> {}

impl<T: Default> Region<T> {
    /// A heap region, for tests of the trie without a kernel.
    pub fn heap(len: usize) -> Self {
        let mut v: Vec<T> = (0..len).map(|_| T::default()).collect();
        let ptr = NonNull::new(v.as_mut_ptr()).expect("Vec pointers are never null");
        Self {
            ptr,
            len,
            owner: Owner::Heap { _buffer: v },
        }
    }
}

impl<T> Region<T> {
    /// Maps a BPF array created with BPF_F_MMAPABLE whose `len` values are
    /// `size_of::<T>()` bytes each (a multiple of 8, so no gaps).
    pub fn mmap(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        let page = page_size();
        let bytes = (len * size_of::<T>()).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's value area; the kernel
        // checks the length against the map's size.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self {
            ptr,
            len,
            owner: Owner::Mmap { bytes },
        })
    }
}

impl<T> Deref for Region<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: ptr points at len initialised values that live as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for Region<T> {
    fn drop(&mut self) {
        if let Owner::Mmap { bytes } = self.owner {
            // SAFETY: unmapping exactly what mmap returned.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), bytes) };
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}
