//! Who may change poison: the permission rule of inject and clear (docs/DESIGN.md, "Memory
//! failure", rule 6). The argument checks (range, alignment, file kind) are made by the inject
//! and clear entry points themselves (`handler::region_blocks`, `handler::file_pages`), so the
//! control ioctl decodes only and nothing is checked twice.

use crate::fs::{Errno, FsResult};

/// Whether a caller running as `uid` may inject or clear poison on a mount whose daemon runs as
/// `owner_uid`: root or the mount's owner. Return: `EPERM` for anyone else.
///
/// Context: pure; called by the control ioctl before the request is handled (embedded users
/// own the region and call the entry points directly).
pub fn check_caller(uid: u32, owner_uid: u32) -> FsResult<()> {
    if uid == 0 || uid == owner_uid {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

#[cfg(test)]
mod tests {
    use super::check_caller;
    use crate::fs::Errno;

    #[test]
    fn root_and_the_owner_only() {
        assert_eq!(check_caller(0, 1000), Ok(()));
        assert_eq!(check_caller(1000, 1000), Ok(()));
        assert_eq!(check_caller(65534, 0), Err(Errno::EPERM));
        assert_eq!(check_caller(1001, 1000), Err(Errno::EPERM));
    }
}
