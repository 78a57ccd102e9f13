//! Which directories hold no precompressed file at all, so that a file
//! in one is answered without looking for its siblings (`x.css.br`,
//! `x.css.zst`, `x.css.gz`: a failed open each, a path walk each, a third
//! of the CPU of an uncached request for a small file).
//!
//! A worker learns it by reading the directory's names (getdents, no stat)
//! the first time a file in it is asked for, and trusts what it learned
//! for `cache_revalidate`, the interval within which the cache, too, sees
//! a change on disk: a sibling added to a directory that had none is
//! served within that interval, and so is the `Vary` it brings. A
//! directory that holds one, or more names than it reads, or that it
//! cannot read, is probed file by file as before. Bounded: `MAX_DIRS`
//! directories per worker, and `MAX_NAMES` names read per directory.
//! Owned by the worker with its cache (`release::Local`), forgotten when
//! the root directory is swapped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::os::RootDir;
use crate::config::Encoding;

/// Directories remembered per worker.
const MAX_DIRS: usize = 4096;
/// Names read in a directory before giving up (then it is probed).
const MAX_NAMES: usize = 4096;

/// A worker's knowledge of which directories may hold precompressed files.
#[derive(Debug, Default)]
pub struct Dirs {
    /// Directory (beneath the root, no trailing '/') -> what it held.
    known: RefCell<HashMap<Box<[u8]>, Known>>,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    /// It may hold a name with one of the suffixes.
    variants: bool,
    until: Instant,
}

impl Dirs {
    /// Whether `dir` (beneath `root`, "" for the root itself) may hold a
    /// sibling of one of the codings `encs` (a name ending in its suffix,
    /// and longer than it): read once per `every`. With `every` zero
    /// nothing is remembered: always true. Opened as `open_beneath` opens,
    /// so one that no longer opens under the symlink and dotfile rules
    /// may (the caches revalidate by this, with no codings too).
    pub fn may_hold(
        &self,
        root: &RootDir,
        dir: &[u8],
        encs: &[Encoding],
        now: Instant,
        every: Duration,
    ) -> bool {
        if every.is_zero() {
            return true;
        }
        let mut known = self.known.borrow_mut();
        if let Some(k) = known.get(dir)
            && now < k.until
        {
            return k.variants;
        }
        let variant = |name: &[u8]| {
            encs.iter().any(|e| {
                let s = e.suffix().as_bytes();
                name.len() > s.len() && name.ends_with(s)
            })
        };
        let variants = !matches!(root.holds_name(dir, MAX_NAMES, variant), Ok(Some(false)));
        if known.len() >= MAX_DIRS && !known.contains_key(dir) {
            known.retain(|_, k| now < k.until);
            if known.len() >= MAX_DIRS {
                known.clear();
            }
        }
        let until = crate::http::later(now, every);
        known.insert(dir.into(), Known { variants, until });
        variants
    }

    /// Forget everything (another root directory is served now).
    pub fn clear(&self) {
        self.known.borrow_mut().clear();
    }

    /// Directories remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.known.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Symlinks;

    const SUFFIXES: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

    /// Learned once per interval by reading names; a directory with a
    /// variant, or one that cannot be read, may hold them.
    #[test]
    fn learned_per_directory_and_interval() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plain/sub")).unwrap();
        std::fs::create_dir(dir.path().join("coded")).unwrap();
        std::fs::write(dir.path().join("plain/a.css"), b"a").unwrap();
        // A name that is only a suffix is no sibling of anything.
        std::fs::write(dir.path().join("plain/.gz"), b"a").unwrap();
        std::fs::write(dir.path().join("coded/a.css.zst"), b"z").unwrap();
        let root = RootDir::open(dir.path(), Symlinks::WithinRoot, false).unwrap();
        let d = Dirs::default();
        let t = Instant::now();
        let every = Duration::from_secs(1);
        assert!(!d.may_hold(&root, b"plain", &SUFFIXES, t, every));
        assert!(!d.may_hold(&root, b"plain/sub", &SUFFIXES, t, every));
        assert!(d.may_hold(&root, b"coded", &SUFFIXES, t, every));
        assert!(d.may_hold(&root, b"missing", &SUFFIXES, t, every));
        assert!(!d.may_hold(&root, b"", &SUFFIXES, t, every));
        assert_eq!(d.remembered(), 5);
        // A sibling added: seen once the interval is over.
        std::fs::write(dir.path().join("plain/a.css.br"), b"b").unwrap();
        let t1 = t + Duration::from_millis(999);
        assert!(!d.may_hold(&root, b"plain", &SUFFIXES, t1, every));
        assert!(d.may_hold(&root, b"plain", &SUFFIXES, t + every, every));
        // Nothing remembered with a zero interval; forgotten on clear.
        assert!(d.may_hold(&root, b"plain/sub", &SUFFIXES, t, Duration::ZERO));
        d.clear();
        assert_eq!(d.remembered(), 0);
    }

    /// A directory with more names than are read is probed file by file.
    #[test]
    fn a_large_directory_is_probed() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..MAX_NAMES + 10 {
            std::fs::write(dir.path().join(format!("{i}.txt")), b"").unwrap();
        }
        let root = RootDir::open(dir.path(), Symlinks::WithinRoot, false).unwrap();
        let d = Dirs::default();
        let t = Instant::now();
        assert!(d.may_hold(&root, b"", &SUFFIXES, t, Duration::from_secs(1)));
    }
}
