//! Allocators for the prefix arrays: fixed-size indices (rules, trie nodes)
//! and variable-size blocks (a node's runs of slots).
//!
//! The XDP program may still be reading what user space has just freed, so
//! a freed index or block waits in quarantine: for [`GRACE`], or until
//! [`synchronize`] shows that every program run that could hold it is over.

use std::{
    collections::VecDeque,
    thread,
    time::{Duration, Instant},
};

/// How long a freed index or block stays unused. An XDP program run lasts
/// microseconds; this leaves orders of magnitude to spare.
pub const GRACE: Duration = Duration::from_millis(100);

/// `MEMBARRIER_CMD_GLOBAL` (include/uapi/linux/membarrier.h, Linux 4.16).
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;

/// Waits until every XDP program run that began before the call has ended.
///
/// `membarrier(MEMBARRIER_CMD_GLOBAL)` runs `synchronize_rcu()`
/// (kernel/sched/membarrier.c), and XDP programs run inside RCU read-side
/// sections: the driver's NAPI poll with bottom halves off, or
/// `rcu_read_lock()` under BPF_PROG_TEST_RUN. Since the RCU flavours were
/// merged (Linux 4.20) one grace period covers both. Where the call is
/// refused (it is with nohz_full), sleeping [`GRACE`] does.
pub fn synchronize() {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r != 0 {
        thread::sleep(GRACE);
    }
}

/// Indices handed out once and returned through quarantine.
pub struct Pool {
    first: u32,
    next: u32,
    limit: u32,
    free: Vec<u32>,
    quarantine: VecDeque<(Instant, u32)>,
}

impl Pool {
    /// Indices `first..limit`.
    pub fn new(first: u32, limit: u32) -> Self {
        Self {
            first,
            next: first,
            limit,
            free: Vec::new(),
            quarantine: VecDeque::new(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Indices not in use, quarantined ones included.
    pub fn available(&self) -> u64 {
        u64::from(self.limit - self.next) + self.free.len() as u64 + self.quarantine.len() as u64
    }

    pub fn in_use(&self) -> u32 {
        self.next - self.first - (self.free.len() + self.quarantine.len()) as u32
    }

    pub fn alloc(&mut self) -> Option<u32> {
        self.reclaim(false);
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.next < self.limit {
            self.next += 1;
            return Some(self.next - 1);
        }
        // Only quarantined indices are left: end their quarantine at once.
        if self.quarantine.is_empty() {
            return None;
        }
        synchronize();
        self.reclaim(true);
        self.free.pop()
    }

    pub fn release(&mut self, i: u32) {
        self.quarantine.push_back((Instant::now(), i));
    }

    fn reclaim(&mut self, all: bool) {
        while let Some(&(freed, i)) = self.quarantine.front() {
            if !all && freed.elapsed() < GRACE {
                break;
            }
            self.quarantine.pop_front();
            self.free.push(i);
        }
    }
}

/// Block sizes: a block of `n` slots takes the smallest class that holds
/// it, at most a third more.
const CLASSES: [u32; 16] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256];

/// Slots a page: every class divides it, so a page holds blocks of one
/// class with nothing left over.
pub const PAGE: u32 = 768;

/// The fewest slots that always hold a change: a page for each class.
pub const MIN_SLOTS: u32 = (CLASSES.len() as u32 + 1) * PAGE;

/// The class of a block of `len` slots (at most 256).
fn class(len: u32) -> usize {
    CLASSES.partition_point(|&c| c < len)
}

#[derive(Clone, Copy, Default)]
struct Page {
    class: Option<usize>,
    /// Blocks handed out and not yet back from quarantine.
    live: u32,
}

/// Blocks of consecutive slots, in pages of one size class each.
///
/// A node grows a run at a time and is copied on every change, so blocks
/// of the exact size would splinter the array into holes each a little
/// too small for the next copy. Pages of one class each, given back once
/// empty, keep every freed block reusable by the next block of its class.
pub struct Blocks {
    pages: Vec<Page>,
    next_page: usize,
    free_pages: Vec<usize>,
    free: [Vec<u32>; CLASSES.len()],
    used: u64,
    quarantine: VecDeque<(Instant, u32, usize)>,
}

impl Blocks {
    /// Blocks within `0..limit` (whole pages only).
    pub fn new(limit: u32) -> Self {
        Self {
            pages: vec![Page::default(); (limit / PAGE) as usize],
            next_page: 0,
            free_pages: Vec::new(),
            free: Default::default(),
            used: 0,
            quarantine: VecDeque::new(),
        }
    }

    /// The slots a block of `len` slots takes.
    pub fn size(len: u32) -> u32 {
        CLASSES[class(len)]
    }

    /// Slots in blocks handed out and not released.
    pub fn in_use(&self) -> u64 {
        self.used
    }

    /// Slots not in use, quarantined ones included.
    pub fn available(&self) -> u64 {
        self.pages.len() as u64 * u64::from(PAGE) - self.used
    }

    /// The start of a free block of `len` (1–256) slots.
    pub fn alloc(&mut self, len: u32) -> Option<u32> {
        let c = class(len);
        self.reclaim(false);
        let found = self.take(c).or_else(|| {
            if !self.quarantine.is_empty() {
                synchronize();
                self.reclaim(true);
            }
            self.give_back_empty_pages();
            self.take(c)
        });
        if found.is_some() {
            self.used += u64::from(CLASSES[c]);
        }
        found
    }

    /// Returns a block `alloc(len)` gave.
    pub fn release(&mut self, start: u32, len: u32) {
        let c = class(len);
        self.used -= u64::from(CLASSES[c]);
        self.quarantine.push_back((Instant::now(), start, c));
    }

    /// A block of class `c`: a free one, a fresh page, or else a free
    /// block of a larger class, whose rest stays unused until its page
    /// empties. Nodes grow through the classes during a bulk load, so the
    /// pages of the classes they left empty only slowly.
    fn take(&mut self, c: usize) -> Option<u32> {
        let start = self.free[c]
            .pop()
            .or_else(|| self.fresh_page().map(|page| self.carve(page, c)))
            .or_else(|| {
                let larger = (c + 1..CLASSES.len()).find(|&l| !self.free[l].is_empty())?;
                self.free[larger].pop()
            })?;
        self.pages[(start / PAGE) as usize].live += 1;
        Some(start)
    }

    /// An empty page: one whose blocks all came back, or one never used.
    fn fresh_page(&mut self) -> Option<usize> {
        self.free_pages.pop().or_else(|| {
            (self.next_page < self.pages.len()).then(|| {
                self.next_page += 1;
                self.next_page - 1
            })
        })
    }

    /// Gives `page` to class `c`: its first block, the rest free.
    fn carve(&mut self, page: usize, c: usize) -> u32 {
        self.pages[page].class = Some(c);
        let first = page as u32 * PAGE;
        let blocks = (first..first + PAGE).step_by(CLASSES[c] as usize);
        // Popped from the end: the page fills from its start.
        self.free[c].extend(blocks.skip(1).rev());
        first
    }

    fn reclaim(&mut self, all: bool) {
        while let Some(&(freed, start, c)) = self.quarantine.front() {
            if !all && freed.elapsed() < GRACE {
                break;
            }
            self.quarantine.pop_front();
            self.free[c].push(start);
            self.pages[(start / PAGE) as usize].live -= 1;
        }
    }

    /// Pages whose blocks are all free go back to serve any class.
    fn give_back_empty_pages(&mut self) {
        let mut any = false;
        for (i, p) in self.pages.iter_mut().enumerate() {
            if p.class.is_some() && p.live == 0 {
                p.class = None;
                self.free_pages.push(i);
                any = true;
            }
        }
        if any {
            let pages = &self.pages;
            for list in &mut self.free {
                list.retain(|&s| pages[(s / PAGE) as usize].class.is_some());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_in_classes_and_empty_pages_change_class() {
        assert_eq!(
            [1, 5, 6, 7, 129, 256].map(Blocks::size),
            [1, 6, 6, 8, 192, 256]
        );
        assert!(CLASSES.iter().all(|c| PAGE.is_multiple_of(*c)));
        let mut b = Blocks::new(2 * PAGE + 10);
        let a = b.alloc(10).unwrap();
        let a2 = b.alloc(12).unwrap();
        let c = b.alloc(200).unwrap();
        assert_eq!((a, a2, c, b.in_use()), (0, 12, PAGE, 12 + 12 + 256));
        assert_eq!(
            b.alloc(100),
            Some(PAGE + 256),
            "no page left: a free block of a larger class"
        );
        assert_eq!(b.alloc(100), Some(PAGE + 512));
        b.release(a, 10);
        b.release(a2, 12);
        // The first page is empty once its blocks are back from quarantine:
        // it serves another class.
        assert_eq!(b.alloc(100), Some(0));
        assert_eq!(b.available(), u64::from(2 * PAGE) - 256 - 3 * 128);
    }

    #[test]
    fn pools_reuse_an_index_only_after_its_quarantine() {
        let mut p = Pool::new(256, 258);
        let (x, y) = (p.alloc().unwrap(), p.alloc().unwrap());
        assert_eq!((x, y, p.in_use()), (256, 257, 2));
        p.release(x);
        assert_eq!(p.in_use(), 1);
        assert_eq!(p.available(), 1);
        assert_eq!(p.alloc(), Some(x), "synchronized, then reused");
        assert_eq!(p.alloc(), None);
    }
}
