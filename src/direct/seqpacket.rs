//! `AF_UNIX` `SOCK_SEQPACKET` sockets with abstract names, carrying [`Msg`]s: the little of the
//! socket API the lease protocol needs, for the daemon and for the preload library.
//!
//! Rules: every descriptor is close-on-exec (a lease connection must not survive `exec`: the
//! new program has no mappings); sends never raise `SIGPIPE`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::wire::{Msg, MSG_SIZE};
use crate::ioctl::Pod;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The `sockaddr_un` of `name` (raw `sun_path` bytes; an abstract name starts with NUL) and its
/// length.
fn addr(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() > a.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, &s) in a.sun_path.iter_mut().zip(name) {
        *d = s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    Ok((a, len as libc::socklen_t))
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned at once.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A listening socket bound to `name`.
pub fn listen(name: &[u8]) -> io::Result<OwnedFd> {
    let s = socket()?;
    let (a, len) = addr(name)?;
    // SAFETY: `a` is a valid sockaddr_un of `len` bytes.
    cvt(unsafe { libc::bind(s.as_raw_fd(), &a as *const _ as *const libc::sockaddr, len) })?;
    // SAFETY: plain syscall on our descriptor.
    cvt(unsafe { libc::listen(s.as_raw_fd(), 64) })?;
    Ok(s)
}

/// Accepts one connection (blocking).
pub fn accept(listener: RawFd) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: plain syscall; no address is asked for.
        let r = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        match cvt(r) {
            // SAFETY: a fresh descriptor nobody else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Connects to `name`.
pub fn connect(name: &[u8]) -> io::Result<OwnedFd> {
    let s = socket()?;
    let (a, len) = addr(name)?;
    loop {
        // SAFETY: `a` is a valid sockaddr_un of `len` bytes.
        let r =
            unsafe { libc::connect(s.as_raw_fd(), &a as *const _ as *const libc::sockaddr, len) };
        match cvt(r) {
            Ok(_) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends one message; with `nonblock` fails with `WouldBlock` instead of waiting.
pub fn send(fd: RawFd, m: &Msg, nonblock: bool) -> io::Result<()> {
    let flags = libc::MSG_NOSIGNAL | if nonblock { libc::MSG_DONTWAIT } else { 0 };
    loop {
        let b = m.as_bytes();
        // SAFETY: `b` is MSG_SIZE readable bytes.
        let r = unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), flags) };
        if r == MSG_SIZE as isize {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if r < 0 && e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Err(if r < 0 {
            e
        } else {
            io::ErrorKind::WriteZero.into()
        });
    }
}

/// Receives one message (blocking). Return: `None` at end of stream (the peer closed).
pub fn recv(fd: RawFd) -> io::Result<Option<Msg>> {
    let mut buf = [0u8; MSG_SIZE + 1];
    loop {
        // SAFETY: `buf` is writable for its length.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Msg::decode(&buf[..r as usize])
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed lease message"));
    }
}

/// The peer's `(pid, uid, gid)` (`SO_PEERCRED`, as of connect).
pub fn peer_cred(fd: RawFd) -> io::Result<(u32, u32, u32)> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `c` is a writable ucred of `len` bytes.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut c as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok((c.pid as u32, c.uid, c.gid))
}

/// The peer's supplementary groups (`SO_PEERGROUPS`).
pub fn peer_groups(fd: RawFd) -> io::Result<Vec<u32>> {
    let mut v: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (v.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `v` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                v.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            v.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
            return Ok(v);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && v.len() < 1 << 16 {
            v.resize(
                (len as usize / std::mem::size_of::<libc::gid_t>()).max(v.len() * 2),
                0,
            );
            continue;
        }
        return Err(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_send_recv_and_credentials() {
        let name = super::super::wire::socket_name(std::process::id(), 0x5eed_0001);
        let l = listen(&name).unwrap();
        let c = connect(&name).unwrap();
        let s = accept(l.as_raw_fd()).unwrap();
        let (pid, uid, _gid) = peer_cred(s.as_raw_fd()).unwrap();
        assert_eq!(pid, std::process::id());
        // SAFETY: plain syscall.
        assert_eq!(uid, unsafe { libc::geteuid() });
        assert!(peer_groups(s.as_raw_fd()).is_ok());
        let mut m = Msg::new(super::super::wire::ACK);
        m.seq = 42;
        send(c.as_raw_fd(), &m, true).unwrap();
        assert_eq!(recv(s.as_raw_fd()).unwrap(), Some(m));
        drop(c);
        assert_eq!(
            recv(s.as_raw_fd()).unwrap(),
            None,
            "EOF once the peer closed"
        );
        assert!(addr(&[]).is_err());
        assert!(addr(&[1u8; 200]).is_err());
    }
}
