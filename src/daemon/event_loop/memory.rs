//! The daemon's memory at rest: values kept by instance id in a vector rather than a hash
//! map, and what a burst (the start, a reload that adds instances) leaves behind given back
//! once the loop is about to sleep.
//!
//! A start of N instances grows the source slab to N exec pipes that are all gone a moment
//! later, grows the tables by doubling, and leaves the freed buffers as holes in the heap.
//! None of that is in use at rest, so before the first sleep after the instance table or the
//! slab grew past its previous high-water mark, the slab drops its free tail, the id tables
//! their spare capacity, the event log its buffer, and glibc's `malloc_trim` returns the free
//! pages of the heap to the kernel. A turn that grows nothing does none of it: a client's
//! connection reuses a free slot and costs no trim.

use super::{Daemon, InstId};

/// Values by instance id. The ids are the slots of the instance table (dense, reused after a
/// reload), so a vector indexed by id takes less than half the memory of a hash map of the
/// same values (no buckets left empty by the load factor, no hashes) and needs no hashing.
pub(super) struct ById<T>(Vec<Option<T>>);

impl<T> Default for ById<T> {
    fn default() -> Self {
        ById(Vec::new())
    }
}

impl<T> ById<T> {
    pub(super) fn get(&self, id: InstId) -> Option<&T> {
        self.0.get(id)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, id: InstId) -> Option<&mut T> {
        self.0.get_mut(id)?.as_mut()
    }

    /// Set the value of `id`, replacing (and dropping) the one it had.
    pub(super) fn insert(&mut self, id: InstId, value: T) {
        if id >= self.0.len() {
            self.0.resize_with(id + 1, || None);
        }
        self.0[id] = Some(value);
    }

    pub(super) fn remove(&mut self, id: InstId) -> Option<T> {
        self.0.get_mut(id)?.take()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut().flatten()
    }

    /// Drop the empty tail and the spare capacity.
    pub(super) fn compact(&mut self) {
        while matches!(self.0.last(), Some(None)) {
            self.0.pop();
        }
        self.0.shrink_to_fit();
    }
}

/// The high-water marks the last trim saw: the instance table's slots, the slab's slots.
pub(super) type Marks = (usize, usize);

impl Daemon {
    /// Before the loop sleeps: give back what a burst left, if one happened since last time.
    pub(super) fn trim_memory(&mut self) {
        let marks = (self.sup.slots(), self.sources.slots());
        if self
            .trimmed
            .is_some_and(|t| marks.0 <= t.0 && marks.1 <= t.1)
        {
            return;
        }
        self.trimmed = Some(marks);
        self.sources.compact();
        self.watches.of.compact();
        crate::logging::shrink();
        // Not memory, but due after the same bursts (see `Cgroups::flush_usage`).
        self.settings.cgroups.flush_usage();
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the
        // kernel; it takes no pointer and is safe to call at any time from the one thread.
        unsafe {
            nix::libc::malloc_trim(0);
        }
        page_out_image();
    }
}

/// Drop from memory the pages of the daemon's own executable (code and read-only data) that
/// only it maps: most were faulted in by the start (config, command line, a burst of spawns;
/// fault-around maps 64 KiB for each page read) and are not used at rest. They are clean
/// pages of the file; the loop faults back the few a later turn runs. `MADV_PAGEOUT` (Linux
/// 5.4) reclaims them at once, where the kernel would only under memory pressure; it pages
/// out a file's pages only for a process that could open the file for writing (its owner,
/// root), and never a page another process maps too. Anywhere else it does nothing.
#[cfg(target_os = "linux")]
fn page_out_image() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (start, end) in image_ranges(&maps, &exe) {
        // SAFETY: the range is a mapping of our own file with no write permission: advice
        // about its pages changes no byte of memory, only whether they are resident.
        unsafe {
            nix::libc::madvise(
                start as *mut nix::libc::c_void,
                end - start,
                nix::libc::MADV_PAGEOUT,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn page_out_image() {}

/// The address ranges of `/proc/self/maps` lines that map `exe` without write permission.
fn image_ranges(maps: &str, exe: &std::path::Path) -> Vec<(usize, usize)> {
    let exe = exe.as_os_str().as_encoded_bytes();
    maps.lines()
        .filter_map(|line| {
            let mut f = line.splitn(6, ' ');
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3)?.trim_start();
            if perms.contains('w') || path.as_bytes() != exe {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            );
            (a < b).then_some((a, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{image_ranges, ById};

    #[test]
    fn the_image_is_the_unwritable_mappings_of_the_executable() {
        let maps = "\
00400000-00401000 r--p 00000000 fd:01 123 /usr/bin/sup
00401000-00a00000 r-xp 00001000 fd:01 123 /usr/bin/sup
00a00000-00c00000 r--p 00600000 fd:01 123 /usr/bin/sup
00c00000-00c10000 rw-p 00800000 fd:01 123 /usr/bin/sup
01000000-01100000 rw-p 00000000 00:00 0                                  [heap]
7f0000000000-7f0000001000 r-xp 00000000 fd:01 456                        /usr/lib/libc.so.6
7f0000002000-7f0000003000 r-xp 00000000 fd:01 123                        /usr/bin/sup (deleted)
";
        assert_eq!(
            image_ranges(maps, std::path::Path::new("/usr/bin/sup")),
            [
                (0x40_0000, 0x40_1000),
                (0x40_1000, 0xa0_0000),
                (0xa0_0000, 0xc0_0000)
            ]
        );
    }

    #[test]
    fn by_id_keeps_values_by_id_and_drops_its_empty_tail() {
        let mut t = ById::default();
        t.insert(3, "c");
        t.insert(0, "a");
        assert_eq!(t.get(3), Some(&"c"));
        assert_eq!(t.get(1), None);
        assert_eq!(t.get(9), None);
        t.insert(3, "d");
        assert_eq!(t.get(3), Some(&"d"));
        if let Some(v) = t.get_mut(0) {
            *v = "b";
        }
        assert_eq!(t.values_mut().map(|v| *v).collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(t.remove(3), Some("d"));
        assert_eq!(t.remove(3), None);
        t.compact();
        assert_eq!(t.0.len(), 1);
        assert_eq!(t.get(0), Some(&"b"));
        t.insert(5, "e");
        assert_eq!(t.get(5), Some(&"e"));
    }
}
