//! What a name in a directory may be: at most [`NAME_MAX`] bytes, not empty, no `/` or NUL; a
//! new entry may not be `.` or `..`, which always exist.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use super::types::NAME_MAX;
use super::FsResult;

/// `ENAMETOOLONG` past [`NAME_MAX`], `EINVAL` for an empty name or one holding `/` or NUL.
pub(super) fn check_name(name: &OsStr) -> FsResult<()> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// A name for a new entry (create, mkdir, link, ...): a valid name, and not `.` or `..`, which
/// always exist (`EEXIST`).
pub(super) fn check_new_name(name: &OsStr) -> FsResult<()> {
    check_name(name)?;
    if is_dot(name) {
        return Err(Errno::EEXIST);
    }
    Ok(())
}

/// `.` or `..`.
pub(super) fn is_dot(name: &OsStr) -> bool {
    name.as_bytes() == b"." || name.as_bytes() == b".."
}
