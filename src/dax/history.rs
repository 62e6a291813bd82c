//! The catalogue of historical semantics: kernel `fs/dax.c` entry-locking bugs that the protocol
//! can reproduce on demand (docs/DESIGN.md, "Historical semantics"; the table is also
//! docs/DAX-BUGS.md).
//!
//! Each [`Bug`] is one precisely scoped deviation, named by the 12-hex-digit id of the kernel
//! commit that fixed it, and consulted at exactly one decision point in `src/dax` (the code there
//! says `bugs.is(Bug::X)` and describes the kernel code it reproduces). A [`Bugs`] value is a set
//! of them, carried by [`super::DaxOptions`]; the empty set — the default — is today's kernel
//! behaviour. Sets are selected at run time: `DAXFS_DAX_BUGS=23c84eb78375,61c30c98ef17` in the
//! environment ([`Bugs::from_env`]), the mount option `-o dax_bugs=...`, or
//! [`super::DaxOptions`] in the embedded API. `DAXFS_REGRESSION_9F32D221=1` (and the name
//! `9f32d221301c` in a list) is kept as an alias for the three bugs that switch reproduced.
//!
//! Owns: the catalogue as data ([`CATALOGUE`]: id, subject, kernel version of the fix, symptom,
//! detector test) and the parsing of bug lists. Knows nothing of how a bug is reproduced.

/// Environment variable read by [`Bugs::from_env`]: a comma-separated list of fix ids.
pub const BUGS_ENV: &str = "DAXFS_DAX_BUGS";
/// The older switch (`1` turns on [`ALIAS_9F32D221`]).
pub const REGRESSION_ENV: &str = "DAXFS_REGRESSION_9F32D221";
/// The commit whose pre-fix state the older switch reproduced.
pub const ALIAS_9F32D221_ID: &str = "9f32d221301c";
/// What the older switch turns on: the behaviours seeds (a), (b) and (c) detect.
pub const ALIAS_9F32D221: Bugs = Bugs(
    (1 << Bug::HugePageFaults as u32)
        | (1 << Bug::MappingNotNull as u32)
        | (1 << Bug::UnlockPmdPages as u32),
);

/// How a detector finds its bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// The model checker (loom) explores the interleavings and finds a schedule that hangs.
    ModelChecker,
    /// An invariant of the index, the page metadata or a scan result is checked.
    Invariant,
    /// A lifetime check (generation counters) catches the use of a freed mapping.
    Lifetime,
}

/// One reproducible bug. The discriminant is its bit in [`Bugs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Bug {
    /// 965d004af540: replacing a hole's empty entry by the zero page woke one waiter.
    DaxHoles4k,
    /// f52afc93cd01: the page-lock retry after sleeping re-took the index lock it still held.
    LockRetryHeldLock,
    /// fda490d39fc0: the page unlock rebuilt the entry without its PMD bit.
    UnlockPmdPages,
    /// 27359fd6e5f3: the page unlock rebuilt the entry from the locked (tail) page's block.
    UnlockCookie,
    /// 25bbe21bf427: the page-lock path consumed an exclusive wake-up and did not pass it on.
    LockLosesWakeup,
    /// c93db7bb6ef3: the page-lock path used the entry it saw before sleeping.
    MappingNotNull,
    /// 55e56f06ed71: the page-lock path touched the mapping after waking, before checking it
    /// was still alive.
    FreedInode,
    /// 0e40de0338d0: a PMD-order lookup saw smaller entries only in the first node's slots.
    HugePageFaults,
    /// 1571c029a2ff: a PTE fault inside a PMD entry re-associated only its own page.
    MixedAssociation,
    /// 23c84eb78375: a PMD fault waited on a smaller locked entry under the wrong key.
    PmdMissedWakeup,
    /// 61c30c98ef17: `put_unlocked_entry` tested for a conflict entry the wrong way round.
    PutUnlockedInverted,
    /// 6370740e5f8e: an unlocked smaller entry was returned to a PMD fault as its entry.
    PmdPteConflict,
    /// 237388320def: erasing an entry woke one waiter instead of all.
    InvalidateWakeOne,
    /// f4f451a16dd1: dropping several pins at once skipped the idle wake-up.
    UnpinNoWakeup,
    /// 6be3e21d25ca: the busy-page scan skipped a locked entry after waiting for it.
    ScanSkipsLocked,
    /// cee91fa13a8e: the busy-page scan returned early for a mapping without user mappings.
    ScanUnmappedBusy,
    /// dd59137bfe70: the busy-page scan's wait paused the cursor, moving it past the entry.
    ScanPauseSkips,
}

/// What the catalogue records of a bug.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct BugInfo {
    /// The bug.
    #[serde(skip)]
    pub bug: Bug,
    /// The fixing commit, 12 hex digits.
    pub id: &'static str,
    /// The fixing commit's subject line.
    pub subject: &'static str,
    /// Other commits of the same fix (id and subject), if it took more than one.
    pub related: &'static [(&'static str, &'static str)],
    /// The first kernel release containing the fix (`git describe --contains`).
    pub fixed_in: &'static str,
    /// What goes wrong with the bug.
    pub symptom: &'static str,
    /// How the detector finds it.
    pub detection: Detection,
    /// The detector: a test function (in `tests/dax_museum.rs` or `tests/dax_museum_loom.rs`)
    /// that passes with the fix and fails with the bug; the same scenario runs from
    /// `daxfs bugs replay`.
    pub detector: &'static str,
    /// Other detectors that also fail with this bug on, because the bug breaks a code path their
    /// scenario cannot avoid (the reason is in the detector's comment).
    pub also_fails: &'static [&'static str],
}

impl Bug {
    /// Every bug, in catalogue order.
    pub const ALL: [Bug; 17] = [
        Bug::DaxHoles4k,
        Bug::LockRetryHeldLock,
        Bug::UnlockPmdPages,
        Bug::UnlockCookie,
        Bug::LockLosesWakeup,
        Bug::MappingNotNull,
        Bug::FreedInode,
        Bug::HugePageFaults,
        Bug::MixedAssociation,
        Bug::PmdMissedWakeup,
        Bug::PutUnlockedInverted,
        Bug::PmdPteConflict,
        Bug::InvalidateWakeOne,
        Bug::UnpinNoWakeup,
        Bug::ScanSkipsLocked,
        Bug::ScanUnmappedBusy,
        Bug::ScanPauseSkips,
    ];

    /// The bug's catalogue record.
    pub fn info(self) -> &'static BugInfo {
        &CATALOGUE[self as usize]
    }

    /// The fix's commit id (12 hex digits).
    pub fn id(self) -> &'static str {
        self.info().id
    }

    /// The bug whose fix has commit id `id` (12 hex digits, or any unique prefix of at least 7).
    pub fn from_id(id: &str) -> Option<Bug> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < 7 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut found = Bug::ALL.iter().filter(|b| b.id().starts_with(&id));
        let first = *found.next()?;
        found.next().is_none().then_some(first)
    }
}

impl std::fmt::Display for Bug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (\"{}\")", self.id(), self.info().subject)
    }
}

/// A set of [`Bug`]s (a bitset over the catalogue). The empty set is today's kernel behaviour.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Bugs(u32);

/// A bug list that names something that is not in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a fix in the DAX bug catalogue: give 12-hex-digit commit ids separated by \
     commas (see `daxfs bugs list`), 'none', or '9f32d221301c' for the 2018 regression"
)]
pub struct UnknownBug(pub String);

impl Bugs {
    /// No bug: today's kernel behaviour.
    pub const NONE: Bugs = Bugs(0);

    /// The set holding just `bug`.
    pub const fn only(bug: Bug) -> Bugs {
        Bugs(1 << bug as u32)
    }

    /// This set plus `bug`.
    pub const fn with(self, bug: Bug) -> Bugs {
        Bugs(self.0 | 1 << bug as u32)
    }

    /// The union of two sets.
    pub const fn union(self, other: Bugs) -> Bugs {
        Bugs(self.0 | other.0)
    }

    /// Whether `bug`'s historical behaviour is on (the consultation at a decision point).
    #[inline]
    pub const fn is(self, bug: Bug) -> bool {
        self.0 & (1 << bug as u32) != 0
    }

    /// Whether no bug is on.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bugs in the set, in catalogue order.
    pub fn iter(self) -> impl Iterator<Item = Bug> {
        Bug::ALL.into_iter().filter(move |b| self.is(*b))
    }

    /// Parses a comma-separated list of fix ids (`none` or an empty list is the empty set;
    /// `9f32d221301c` is [`ALIAS_9F32D221`]).
    ///
    /// Return: the set, or the first name that is not in the catalogue.
    pub fn parse(list: &str) -> Result<Bugs, UnknownBug> {
        let mut set = Bugs::NONE;
        for name in list.split([',', ' ', ':']).map(str::trim) {
            if name.is_empty() || name.eq_ignore_ascii_case("none") {
                continue;
            }
            if ALIAS_9F32D221_ID.starts_with(&name.to_ascii_lowercase()) && name.len() >= 7 {
                set = set.union(ALIAS_9F32D221);
                continue;
            }
            set = set.with(Bug::from_id(name).ok_or_else(|| UnknownBug(name.to_string()))?);
        }
        Ok(set)
    }

    /// The set the environment asks for: [`BUGS_ENV`] plus, when [`REGRESSION_ENV`] is `1`,
    /// [`ALIAS_9F32D221`]. An unknown name in [`BUGS_ENV`] is an error.
    pub fn from_env() -> Result<Bugs, UnknownBug> {
        let mut set = match std::env::var(BUGS_ENV) {
            Ok(list) => Bugs::parse(&list)?,
            Err(_) => Bugs::NONE,
        };
        if std::env::var(REGRESSION_ENV).is_ok_and(|v| v == "1") {
            set = set.union(ALIAS_9F32D221);
        }
        Ok(set)
    }
}

impl std::fmt::Debug for Bugs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter().map(Bug::id)).finish()
    }
}

impl std::fmt::Display for Bugs {
    /// The comma-separated ids (`none` for the empty set): what [`Bugs::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return write!(f, "none");
        }
        let ids: Vec<&str> = self.iter().map(Bug::id).collect();
        write!(f, "{}", ids.join(","))
    }
}

impl std::str::FromStr for Bugs {
    type Err = UnknownBug;
    fn from_str(s: &str) -> Result<Bugs, UnknownBug> {
        Bugs::parse(s)
    }
}

/// The catalogue, indexed by [`Bug`] discriminant.
pub static CATALOGUE: [BugInfo; 17] = [
    BugInfo {
        bug: Bug::DaxHoles4k,
        id: "965d004af540",
        subject: "dax: fix deadlock with DAX 4k holes",
        related: &[],
        fixed_in: "v4.10-rc4",
        symptom: "a hole's read fault replaced the empty entry by the zero page and woke only one \
                  of several sleeping read faults; the woken one used the zero page without the \
                  entry lock and woke nobody: the others sleep forever",
        detection: Detection::ModelChecker,
        detector: "bug_965d004af540_zero_page_wakes_all_hole_readers",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::LockRetryHeldLock,
        id: "f52afc93cd01",
        subject: "dax: Fix deadlock in dax_lock_mapping_entry()",
        related: &[],
        fixed_in: "v4.20-rc4",
        symptom: "when the memory-failure page lock slept and the page had moved meanwhile, its \
                  retry took the index (i_pages) lock again while still holding it: the thread \
                  deadlocks against itself",
        detection: Detection::ModelChecker,
        detector: "bug_f52afc93cd01_page_lock_retry_drops_the_index_lock",
        // Every page lock that sleeps deadlocks: the scenarios of the other bugs of this path
        // must let it sleep.
        also_fails: &[
            "bug_25bbe21bf427_page_lock_passes_the_wakeup_on",
            "bug_c93db7bb6ef3_page_lock_rechecks_after_sleeping",
            "bug_55e56f06ed71_woken_page_lock_never_touches_a_freed_mapping",
        ],
    },
    BugInfo {
        bug: Bug::UnlockPmdPages,
        id: "fda490d39fc0",
        subject: "dax: Fix dax_unlock_mapping_entry for PMD pages",
        related: &[],
        fixed_in: "v4.20-rc3",
        symptom: "the memory-failure page unlock rebuilt the entry from its block without the PMD \
                  bit (device-DAX PMD pages are not compound pages): a 2 MiB entry became a PTE \
                  value in a PMD slot (seed (c))",
        detection: Detection::Invariant,
        detector: "bug_fda490d39fc0_page_unlock_keeps_the_pmd_order",
        // The unlock rebuilt the whole entry from the page, pfn included: a tail page's unlock
        // (the scenario of 27359fd6e5f3) also gets a misaligned block.
        also_fails: &["bug_27359fd6e5f3_page_unlock_restores_the_locked_entry"],
    },
    BugInfo {
        bug: Bug::UnlockCookie,
        id: "27359fd6e5f3",
        subject: "dax: Fix unlock mismatch with updated API",
        related: &[],
        fixed_in: "v4.20-rc6",
        symptom:
            "the page unlock rebuilt the entry from the pfn of the page it was asked to lock, \
                  a tail page of the PMD entry, instead of the entry it locked: the PMD entry now \
                  maps a misaligned block",
        detection: Detection::Invariant,
        detector: "bug_27359fd6e5f3_page_unlock_restores_the_locked_entry",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::LockLosesWakeup,
        id: "25bbe21bf427",
        subject: "dax: Avoid losing wakeup in dax_lock_mapping_entry",
        related: &[(
            "d8a706414af4",
            "dax: Use non-exclusive wait in wait_entry_unlocked()",
        )],
        fixed_in: "v4.20-rc6",
        symptom: "the memory-failure page lock slept exclusively like a fault, was handed the one \
                  wake-up of an unlock, found the page moved and retried without passing the \
                  wake-up on: a fault sleeping on the same entry is never woken",
        detection: Detection::ModelChecker,
        detector: "bug_25bbe21bf427_page_lock_passes_the_wakeup_on",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::MappingNotNull,
        id: "c93db7bb6ef3",
        subject: "dax: Check page->mapping isn't NULL",
        related: &[],
        fixed_in: "v4.20-rc5",
        symptom: "after sleeping, the memory-failure page lock used what it saw before the sleep \
                  although the page had been truncated meanwhile (the kernel dereferenced the now \
                  NULL page->mapping; here the stale entry is locked and stored back: a deleted \
                  entry is resurrected, seed (b))",
        detection: Detection::Invariant,
        detector: "bug_c93db7bb6ef3_page_lock_rechecks_after_sleeping",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::FreedInode,
        id: "55e56f06ed71",
        subject: "dax: Don't access a freed inode",
        related: &[],
        fixed_in: "v4.20-rc5",
        symptom: "after waking, the memory-failure page lock took the mapping's index lock before \
                  checking that the inode was still alive; an inode evicted and freed while it \
                  slept is used after free",
        detection: Detection::Lifetime,
        detector: "bug_55e56f06ed71_woken_page_lock_never_touches_a_freed_mapping",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::HugePageFaults,
        id: "0e40de0338d0",
        subject: "dax: Fix huge page faults",
        related: &[],
        fixed_in: "v4.20-rc2",
        symptom:
            "a PMD-order lookup was a plain load that saw PTE entries only in the first node's \
                  slots: a PTE entry at 1023 was missed and a PMD fault at 512 stored over it, \
                  even while it was locked (seed (a))",
        detection: Detection::Invariant,
        detector: "bug_0e40de0338d0_pmd_fault_keeps_pte_entries",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::MixedAssociation,
        id: "1571c029a2ff",
        subject: "dax: Fix xarray entry association for mixed mappings",
        related: &[],
        fixed_in: "v5.2-rc8",
        symptom: "a PTE fault inside a mapped PMD entry disassociated all 512 pages from their \
                  (mapping, index) and associated only its own: memory failure then finds no \
                  owner for the other 511 and kills nobody",
        detection: Detection::Invariant,
        detector: "bug_1571c029a2ff_pte_fault_keeps_pmd_pages_associated",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::PmdMissedWakeup,
        id: "23c84eb78375",
        subject: "dax: Fix missed wakeup with PMD faults",
        related: &[],
        fixed_in: "v5.3-rc1",
        symptom: "a PMD fault at 512 that found a locked PTE entry at 1023 slept on the wait \
                  queue of 512 while the unlock woke the queue of 1023: the fault sleeps forever \
                  (RocksDB hangs)",
        detection: Detection::ModelChecker,
        detector: "bug_23c84eb78375_pmd_fault_never_waits_for_a_pte_entry",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::PutUnlockedInverted,
        id: "61c30c98ef17",
        subject: "dax: Fix missed wakeup in put_unlocked_entry()",
        related: &[],
        fixed_in: "v5.3-rc3",
        symptom: "23c84eb78375 was applied with the test in put_unlocked_entry inverted: it woke \
                  the next waiter only for a conflict entry, so a thread that was handed the \
                  wake-up and did not lock the entry never passed it on",
        detection: Detection::ModelChecker,
        detector: "bug_61c30c98ef17_put_unlocked_entry_wakes_the_next_waiter",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::PmdPteConflict,
        id: "6370740e5f8e",
        subject: "fs/dax: Fix pmd vs pte conflict detection",
        related: &[],
        fixed_in: "v5.4-rc5",
        symptom:
            "the order test of get_unlocked_entry (added by 23c84eb78375) came after the lock \
                  test, so an unlocked PTE entry in a PMD fault's range was returned as the \
                  fault's entry instead of a conflict: the fault took a PTE entry elsewhere and \
                  no huge page was mapped (a silent v5.3 performance regression)",
        detection: Detection::Invariant,
        detector: "bug_6370740e5f8e_pmd_fault_over_a_pte_entry_falls_back",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::InvalidateWakeOne,
        id: "237388320def",
        subject: "dax: Wake up all waiters after invalidating dax entry",
        related: &[],
        fixed_in: "v5.13-rc2",
        symptom: "erasing an entry woke one of the invalidations sleeping on it; that one found \
                  nothing to erase and woke nobody: the third sleeps forever (virtiofs make -j)",
        detection: Detection::ModelChecker,
        detector: "bug_237388320def_erase_wakes_every_invalidation",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::UnpinNoWakeup,
        id: "f4f451a16dd1",
        subject: "mm: fix missing wake-up event for FSDAX pages",
        related: &[],
        fixed_in: "v5.19-rc8",
        symptom: "unpinning several references of a DAX page at once skipped the idle wake-up \
                  that break-layouts (truncate waiting for DMA) sleeps for: it sleeps forever",
        detection: Detection::ModelChecker,
        detector: "bug_f4f451a16dd1_unpinning_wakes_break_layouts",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::ScanSkipsLocked,
        id: "6be3e21d25ca",
        subject: "fs/dax: don't skip locked entries when scanning entries",
        related: &[],
        fixed_in: "v6.15-rc1",
        symptom: "the busy-page scan waited for a locked entry with get_unlocked_entry, which \
                  returned the next entry: the locked one, pinned for DMA, was never checked and \
                  its blocks were freed under DMA",
        detection: Detection::Invariant,
        detector: "bug_6be3e21d25ca_busy_scan_checks_a_locked_entry",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::ScanUnmappedBusy,
        id: "cee91fa13a8e",
        subject: "fs/dax: return unmapped busy pages from dax_layout_busy_page_range()",
        related: &[],
        fixed_in: "v6.15-rc1",
        symptom: "the busy-page scan returned at once when no process had the file mapped, but a \
                  page unmapped from user space can still be pinned for DMA: its blocks were \
                  freed under DMA",
        detection: Detection::Invariant,
        detector: "bug_cee91fa13a8e_busy_scan_checks_an_unmapped_file",
        also_fails: &[],
    },
    BugInfo {
        bug: Bug::ScanPauseSkips,
        id: "dd59137bfe70",
        subject: "fs/dax: Fix \"don't skip locked entries when scanning entries\"",
        related: &[],
        fixed_in: "v6.16-rc1",
        symptom: "the scan's new wait (wait_entry_unlocked_exclusive) paused the cursor before \
                  sleeping, which moved it past the locked entry: the entry was skipped again",
        detection: Detection::Invariant,
        // The same scenario as 6be3e21d25ca: the fix of the fix restored its symptom.
        detector: "bug_6be3e21d25ca_busy_scan_checks_a_locked_entry",
        also_fails: &[],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_indexed_by_discriminant_and_ids_are_unique() {
        for (i, b) in Bug::ALL.iter().enumerate() {
            assert_eq!(*b as usize, i);
            assert_eq!(CATALOGUE[i].bug, *b);
            assert_eq!(b.id().len(), 12, "{b:?}");
            assert_eq!(Bug::from_id(b.id()), Some(*b));
        }
        let ids: std::collections::HashSet<_> = Bug::ALL.iter().map(|b| b.id()).collect();
        assert_eq!(ids.len(), Bug::ALL.len());
    }

    #[test]
    fn parse_lists_aliases_and_refusals() {
        assert_eq!(Bugs::parse("").unwrap(), Bugs::NONE);
        assert_eq!(Bugs::parse("none").unwrap(), Bugs::NONE);
        let s = Bugs::parse("23c84eb78375,61c30c98ef17").unwrap();
        assert!(s.is(Bug::PmdMissedWakeup) && s.is(Bug::PutUnlockedInverted));
        assert_eq!(s.iter().count(), 2);
        assert_eq!(s.to_string().parse::<Bugs>().unwrap(), s);
        assert_eq!(Bugs::parse("9f32d221301c").unwrap(), ALIAS_9F32D221);
        assert_eq!(
            Bugs::parse("23c84eb").unwrap(),
            Bugs::only(Bug::PmdMissedWakeup)
        );
        let e = Bugs::parse("23c84eb78375,deadbeef0000").unwrap_err();
        assert_eq!(e, UnknownBug("deadbeef0000".into()));
        assert!(e.to_string().contains("daxfs bugs list"));
        assert!(Bugs::parse("23c").is_err(), "too short a prefix");
        assert_eq!(Bugs::NONE.to_string(), "none");
    }
}
