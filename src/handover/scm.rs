//! Descriptors over a Unix stream socket (`SCM_RIGHTS`). Its unsafe code is listed in the crate docs (Safety).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::ptr;

/// The most descriptors one message may carry (Linux's `SCM_MAX_FD`).
pub(super) const MAX_FDS: usize = 253;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const RECV_FLAGS: libc::c_int = libc::MSG_CMSG_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const RECV_FLAGS: libc::c_int = 0;

/// A control buffer for `n` descriptors, aligned for `cmsghdr`.
#[allow(unsafe_code)]
fn control_buffer(n: usize) -> (Vec<u64>, usize) {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE((n * mem::size_of::<RawFd>()) as libc::c_uint) };
    let space = space as usize;
    (vec![0; space.div_ceil(mem::size_of::<u64>())], space)
}

/// One `sendmsg` of `data` with `fds` attached; returns the bytes sent (the descriptors go with
/// the first of them). Non-blocking sockets return `WouldBlock` as usual.
#[allow(unsafe_code)]
pub(super) fn send(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS && !data.is_empty());
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let (mut control, space) = control_buffer(raw.len());
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let bytes = mem::size_of_val(raw.as_slice());
        // SAFETY: msg_control points to `space` bytes, aligned for cmsghdr, which is
        // CMSG_SPACE(bytes): room for one header and `bytes` of data, so CMSG_FIRSTHDR is
        // non-null and CMSG_DATA has `bytes` writable bytes after it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as libc::c_uint) as _;
            ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), bytes);
        }
    }
    // SAFETY: msg points to live buffers (iov -> data, control) for the duration of the call;
    // the descriptors are borrowed, so they stay open until it returns.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, SEND_FLAGS) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// One `recvmsg` into `buf`; descriptors that came with it are appended to `fds`, close-on-exec.
/// Returns the bytes read (0 at end of stream).
#[allow(unsafe_code)]
pub(super) fn recv(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let (mut control, space) = control_buffer(MAX_FDS);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points to live, writable buffers of the lengths it states.
    let read = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, RECV_FLAGS) };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    let first_new = fds.len();
    // SAFETY: recvmsg filled msg_control with msg_controllen bytes of well-formed cmsghdrs,
    // which CMSG_FIRSTHDR/CMSG_NXTHDR walk within those bounds. An SCM_RIGHTS message holds
    // (cmsg_len - CMSG_LEN(0)) / size_of::<RawFd>() descriptors, read unaligned; each is a new
    // descriptor the kernel installed in this process for us, owned by nothing else.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if RECV_FLAGS == 0 {
        for fd in &fds[first_new..] {
            socket2::SockRef::from(fd).set_cloexec(true)?;
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {MAX_FDS} descriptors in one message"),
        ));
    }
    Ok(read as usize)
}
