//! POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`): the xattr format, the
//! mode they imply, `chmod` on an ACL and inheritance at create (the kernel's `posix_acl.c`
//! rules, which a FUSE server keeps itself under `FUSE_POSIX_ACL`).
//!
//! Owns: parsing and validating the xattr value (version 2, `{tag u16, perm u16, id u32}`
//! entries), the mode bits an access ACL stands for, and the create-time masking. Rules kept:
//! an access ACL that the mode alone expresses (only the three base entries) is not stored —
//! the mode says it (as ext4 and xfs do); the group class of the mode is the mask entry when
//! there is one, the owning group's entry otherwise; a default ACL exists only on directories;
//! the umask applies only when the parent has no default ACL. Pure functions: no locks, no I/O.

use nix::errno::Errno;

use super::FsResult;

/// Name of the access ACL xattr.
pub const ACCESS: &[u8] = b"system.posix_acl_access";
/// Name of the default ACL xattr (directories).
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// `POSIX_ACL_XATTR_VERSION`.
const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// Size of the header and of one entry.
const HEADER: usize = 4;
const ENTRY: usize = 8;

/// Whether `name` is one of the two ACL xattrs.
pub fn is_acl_name(name: &[u8]) -> bool {
    name == ACCESS || name == DEFAULT
}

/// One ACL entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `ACL_USER_OBJ`, `ACL_USER`, `ACL_GROUP_OBJ`, `ACL_GROUP`, `ACL_MASK` or `ACL_OTHER`.
    pub tag: u16,
    /// Read, write, execute bits (4, 2, 1).
    pub perm: u16,
    /// The uid or gid of a named entry.
    pub id: u32,
}

/// A parsed, valid ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Entries in the order of the xattr.
    pub entries: Vec<Entry>,
}

impl Acl {
    /// Parses an xattr value; `EINVAL` for a wrong version, a ragged length, an unknown tag, a
    /// permission above 7 or a set of entries `posix_acl_valid` rejects.
    pub fn parse(value: &[u8]) -> FsResult<Acl> {
        if value.len() < HEADER || (value.len() - HEADER) % ENTRY != 0 {
            return Err(Errno::EINVAL);
        }
        let version = u32::from_le_bytes(value[..4].try_into().unwrap());
        if version != VERSION {
            return Err(Errno::EOPNOTSUPP);
        }
        let entries = value[HEADER..]
            .chunks_exact(ENTRY)
            .map(|c| Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let acl = Acl { entries };
        acl.validate()?;
        Ok(acl)
    }

    /// Exactly one owner, owning-group and other entry, at most one mask, a mask whenever
    /// there are named entries, permissions within `rwx`, named ids unique per tag.
    fn validate(&self) -> FsResult<()> {
        let count = |t: u16| self.entries.iter().filter(|e| e.tag == t).count();
        let named = count(USER) + count(GROUP);
        let ok_tags = self
            .entries
            .iter()
            .all(|e| matches!(e.tag, USER_OBJ | USER | GROUP_OBJ | GROUP | MASK | OTHER));
        if !ok_tags
            || self.entries.iter().any(|e| e.perm & !7 != 0)
            || count(USER_OBJ) != 1
            || count(GROUP_OBJ) != 1
            || count(OTHER) != 1
            || count(MASK) > 1
            || (named > 0 && count(MASK) == 0)
        {
            return Err(Errno::EINVAL);
        }
        for t in [USER, GROUP] {
            let mut ids: Vec<u32> = self
                .entries
                .iter()
                .filter(|e| e.tag == t)
                .map(|e| e.id)
                .collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != n {
                return Err(Errno::EINVAL);
            }
        }
        Ok(())
    }

    /// The xattr value (entries in their order).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    fn perm_of(&self, tag: u16) -> u32 {
        self.entries
            .iter()
            .find(|e| e.tag == tag)
            .map_or(0, |e| e.perm as u32)
    }

    /// The entry holding the mode's group class: the mask, or the owning group's without one.
    fn group_class(&mut self) -> &mut Entry {
        let tag = if self.entries.iter().any(|e| e.tag == MASK) {
            MASK
        } else {
            GROUP_OBJ
        };
        self.entries.iter_mut().find(|e| e.tag == tag).unwrap()
    }

    /// Whether the mode alone says everything (only the three base entries).
    pub fn is_equiv_to_mode(&self) -> bool {
        self.entries
            .iter()
            .all(|e| matches!(e.tag, USER_OBJ | GROUP_OBJ | OTHER))
    }

    /// The permission bits (`0o777`) this ACL stands for.
    pub fn mode_bits(&mut self) -> u32 {
        let g = self.group_class().perm as u32;
        (self.perm_of(USER_OBJ) << 6) | (g << 3) | self.perm_of(OTHER)
    }

    /// `chmod`: the owner, group-class and other entries take the bits of `mode`.
    pub fn chmod(&mut self, mode: u32) {
        for e in self.entries.iter_mut() {
            match e.tag {
                USER_OBJ => e.perm = ((mode >> 6) & 7) as u16,
                OTHER => e.perm = (mode & 7) as u16,
                _ => {}
            }
        }
        self.group_class().perm = ((mode >> 3) & 7) as u16;
    }

    /// `posix_acl_create_masq`: masks this (inherited) ACL by the `mode` asked for and returns
    /// the mode narrowed by the ACL (bits outside `0o777` kept).
    pub fn create_masq(&mut self, mode: u32) -> u32 {
        let mut m = mode;
        for e in self.entries.iter_mut() {
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((m >> 6) & 7) as u16;
                    m = (m & !0o700) | ((e.perm as u32) << 6);
                }
                OTHER => {
                    e.perm &= (m & 7) as u16;
                    m = (m & !0o007) | e.perm as u32;
                }
                _ => {}
            }
        }
        let g = self.group_class();
        g.perm &= ((m >> 3) & 7) as u16;
        (m & !0o070) | ((g.perm as u32) << 3)
    }
}

/// What a new inode starts with: its mode and the ACL xattrs it inherits.
#[derive(Debug, PartialEq, Eq)]
pub struct Inherited {
    /// File type and permission bits.
    pub mode: u32,
    /// `(name, value)` pairs to store with it.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Mode and ACLs of a new inode of `mode` (type bits included) asked with `umask`, created in a
/// directory whose default ACL is `parent_default` (`posix_acl_create`): without one the umask
/// applies; with one it replaces the umask — the new inode's access ACL is the default masked
/// by `mode` (stored only if the mode alone cannot say it) and a new directory inherits the
/// default itself. Symlinks take neither. An unreadable default counts as none.
pub fn inherit(parent_default: Option<&[u8]>, mode: u32, umask: u32) -> Inherited {
    let is_link = mode & libc::S_IFMT == libc::S_IFLNK;
    let default = parent_default.and_then(|d| Acl::parse(d).ok());
    let Some(default) = default.filter(|_| !is_link) else {
        let mode = if is_link {
            mode
        } else {
            mode & !(umask & 0o777)
        };
        return Inherited {
            mode,
            xattrs: Vec::new(),
        };
    };
    let mut xattrs = Vec::new();
    if mode & libc::S_IFMT == libc::S_IFDIR {
        xattrs.push((DEFAULT.to_vec(), default.encode()));
    }
    let mut access = default;
    let mode = access.create_masq(mode);
    if !access.is_equiv_to_mode() {
        xattrs.push((ACCESS.to_vec(), access.encode()));
    }
    Inherited { mode, xattrs }
}

#[cfg(test)]
mod tests {
    use super::{inherit, Acl, Entry, ACCESS, DEFAULT, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ};
    use nix::errno::Errno;

    fn e(tag: u16, perm: u16, id: u32) -> Entry {
        Entry { tag, perm, id }
    }

    fn acl(entries: &[Entry]) -> Acl {
        Acl {
            entries: entries.to_vec(),
        }
    }

    const U: u32 = u32::MAX;

    fn base(u: u16, g: u16, o: u16) -> Vec<Entry> {
        vec![e(USER_OBJ, u, U), e(GROUP_OBJ, g, U), e(OTHER, o, U)]
    }

    fn named() -> Acl {
        acl(&[
            e(USER_OBJ, 7, U),
            e(USER, 6, 1000),
            e(GROUP_OBJ, 5, U),
            e(MASK, 7, U),
            e(OTHER, 4, U),
        ])
    }

    #[test]
    fn round_trip_and_validation() {
        let a = named();
        assert_eq!(Acl::parse(&a.encode()).unwrap(), a);
        let bad = |entries: &[Entry]| Acl::parse(&acl(entries).encode()).unwrap_err();
        // Named entry without a mask; no other; two owners; a bad perm; an unknown tag.
        assert_eq!(
            bad(&[
                e(USER_OBJ, 7, U),
                e(USER, 6, 1),
                e(GROUP_OBJ, 5, U),
                e(OTHER, 0, U)
            ]),
            Errno::EINVAL
        );
        assert_eq!(bad(&[e(USER_OBJ, 7, U), e(GROUP_OBJ, 5, U)]), Errno::EINVAL);
        let mut two = base(7, 5, 5);
        two.push(e(USER_OBJ, 1, U));
        assert_eq!(bad(&two), Errno::EINVAL);
        assert_eq!(bad(&base(8, 5, 5)), Errno::EINVAL);
        let mut unknown = base(7, 5, 5);
        unknown.push(e(0x40, 1, U));
        assert_eq!(bad(&unknown), Errno::EINVAL);
        let mut dup = named().entries;
        dup.insert(2, e(USER, 1, 1000));
        assert_eq!(bad(&dup), Errno::EINVAL);
        assert_eq!(Acl::parse(&[2, 0, 0]).unwrap_err(), Errno::EINVAL);
        let mut v1 = named().encode();
        v1[0] = 1;
        assert_eq!(Acl::parse(&v1).unwrap_err(), Errno::EOPNOTSUPP);
    }

    #[test]
    fn mode_comes_from_the_mask_when_there_is_one() {
        let mut a = acl(&base(6, 4, 0));
        assert!(a.is_equiv_to_mode());
        assert_eq!(a.mode_bits(), 0o640);
        let mut n = named();
        assert!(!n.is_equiv_to_mode());
        assert_eq!(n.mode_bits(), 0o774);
    }

    #[test]
    fn chmod_sets_owner_mask_and_other_but_keeps_owning_group() {
        let mut n = named();
        n.chmod(0o750);
        assert_eq!(n.mode_bits(), 0o750);
        assert_eq!(n.perm_of(GROUP_OBJ), 5, "owning group entry untouched");
        assert_eq!(n.perm_of(USER), 6, "named entries untouched");
        let mut b = acl(&base(7, 7, 7));
        b.chmod(0o421);
        assert_eq!(b.entries, base(4, 2, 1));
    }

    #[test]
    fn create_masks_the_default_by_the_mode() {
        let mut n = named();
        // open(O_CREAT, 0666) in a directory with that default: mask 7 & 6.
        assert_eq!(n.create_masq(libc::S_IFREG | 0o666), libc::S_IFREG | 0o664);
        assert_eq!(n.perm_of(MASK), 6);
        assert_eq!(n.perm_of(USER_OBJ), 6);
        assert_eq!(n.perm_of(OTHER), 4);
        let mut b = acl(&base(7, 5, 0));
        assert_eq!(b.create_masq(0o4777), 0o4750);
    }

    #[test]
    fn inherit_ignores_umask_under_a_default_acl() {
        let none = inherit(None, libc::S_IFREG | 0o666, 0o022);
        assert_eq!(none.mode, libc::S_IFREG | 0o644);
        assert!(none.xattrs.is_empty());
        let d = named().encode();
        let file = inherit(Some(&d), libc::S_IFREG | 0o666, 0o077);
        assert_eq!(file.mode, libc::S_IFREG | 0o664);
        assert_eq!(file.xattrs.len(), 1);
        assert_eq!(file.xattrs[0].0, ACCESS);
        let dir = inherit(Some(&d), libc::S_IFDIR | 0o777, 0o077);
        assert_eq!(dir.mode, libc::S_IFDIR | 0o774);
        let names: Vec<_> = dir.xattrs.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, vec![DEFAULT, ACCESS]);
        assert_eq!(dir.xattrs[0].1, d, "a directory inherits the default as is");
        // A base-only default: the mode says it all, no access ACL stored.
        let plain = acl(&base(7, 5, 0)).encode();
        let f = inherit(Some(&plain), libc::S_IFREG | 0o666, 0o000);
        assert_eq!((f.mode, f.xattrs.len()), (libc::S_IFREG | 0o640, 0));
        let link = inherit(Some(&d), libc::S_IFLNK | 0o777, 0o022);
        assert_eq!((link.mode, link.xattrs.len()), (libc::S_IFLNK | 0o777, 0));
    }
}
