//! A PC/SC client on the system's libpcsclite (FFI): just enough to time
//! APDU round trips through pcscd (establish, list, connect, transmit).

use std::ffi::{c_char, c_long, c_ulong, c_void, CString};
use std::ptr;

type Long = c_long;
type Dword = c_ulong;
type ScardContext = c_long;
type ScardHandle = c_long;

#[repr(C)]
struct ScardIoRequest {
    protocol: Dword,
    pci_length: Dword,
}

const SCARD_S_SUCCESS: Long = 0;
const SCARD_SCOPE_SYSTEM: Dword = 2;
const SCARD_SHARE_SHARED: Dword = 2;
const SCARD_PROTOCOL_T0: Dword = 1;
const SCARD_PROTOCOL_T1: Dword = 2;
const SCARD_LEAVE_CARD: Dword = 0;

#[link(name = "pcsclite")]
extern "C" {
    fn SCardEstablishContext(
        scope: Dword,
        reserved1: *const c_void,
        reserved2: *const c_void,
        context: *mut ScardContext,
    ) -> Long;
    fn SCardReleaseContext(context: ScardContext) -> Long;
    fn SCardListReaders(
        context: ScardContext,
        groups: *const c_char,
        readers: *mut c_char,
        readers_len: *mut Dword,
    ) -> Long;
    fn SCardConnect(
        context: ScardContext,
        reader: *const c_char,
        share_mode: Dword,
        preferred_protocols: Dword,
        card: *mut ScardHandle,
        active_protocol: *mut Dword,
    ) -> Long;
    fn SCardDisconnect(card: ScardHandle, disposition: Dword) -> Long;
    fn SCardTransmit(
        card: ScardHandle,
        send_pci: *const ScardIoRequest,
        send: *const u8,
        send_len: Dword,
        recv_pci: *mut ScardIoRequest,
        recv: *mut u8,
        recv_len: *mut Dword,
    ) -> Long;
}

/// A PC/SC error code, printed in hex.
#[derive(Debug)]
pub(crate) struct Error(pub Long);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PC/SC error 0x{:08X}", self.0 as u32)
    }
}

fn check(rc: Long) -> Result<(), Error> {
    if rc == SCARD_S_SUCCESS {
        Ok(())
    } else {
        Err(Error(rc))
    }
}

/// An established PC/SC context.
pub(crate) struct Context {
    context: ScardContext,
}

impl Context {
    /// `SCardEstablishContext` (pcscd's socket comes from
    /// `PCSCLITE_CSOCK_NAME`).
    pub(crate) fn establish() -> Result<Context, Error> {
        let mut context: ScardContext = 0;
        // SAFETY: the reserved pointers may be NULL; `context` is a valid
        // out-pointer for the duration of the call.
        check(unsafe {
            SCardEstablishContext(SCARD_SCOPE_SYSTEM, ptr::null(), ptr::null(), &mut context)
        })?;
        Ok(Context { context })
    }

    /// The names of the readers pcscd knows.
    pub(crate) fn readers(&self) -> Result<Vec<String>, Error> {
        let mut buf = vec![0 as c_char; 4096];
        let mut len = buf.len() as Dword;
        // SAFETY: `buf` has room for `len` chars; pcsclite writes at most
        // that many (a multi-string ending in two NULs) and updates `len`.
        check(unsafe { SCardListReaders(self.context, ptr::null(), buf.as_mut_ptr(), &mut len) })?;
        let bytes: Vec<u8> = buf[..len as usize].iter().map(|&c| c as u8).collect();
        Ok(bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    /// Connects (shared, T=0 or T=1) to the card in `reader`.
    pub(crate) fn connect(&self, reader: &str) -> Result<Card<'_>, Error> {
        let name = CString::new(reader).unwrap();
        let mut handle: ScardHandle = 0;
        let mut protocol: Dword = 0;
        // SAFETY: `name` is NUL-terminated and outlives the call; `handle`
        // and `protocol` are valid out-pointers.
        check(unsafe {
            SCardConnect(
                self.context,
                name.as_ptr(),
                SCARD_SHARE_SHARED,
                SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                &mut handle,
                &mut protocol,
            )
        })?;
        Ok(Card {
            _context: self,
            handle,
            pci: ScardIoRequest {
                protocol,
                pci_length: std::mem::size_of::<ScardIoRequest>() as Dword,
            },
            recv: vec![0; 65_538 + 2],
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: `context` was established and is released once.
        unsafe { SCardReleaseContext(self.context) };
    }
}

/// A connected card.
pub(crate) struct Card<'c> {
    _context: &'c Context,
    handle: ScardHandle,
    pci: ScardIoRequest,
    recv: Vec<u8>,
}

impl Card<'_> {
    /// `SCardTransmit`: appends the response APDU to `response`.
    pub(crate) fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) -> Result<(), Error> {
        let mut len = self.recv.len() as Dword;
        // SAFETY: `pci` is a valid protocol header; `command` is readable
        // for its length; `recv` has room for `len` bytes and pcsclite
        // writes at most that many, updating `len`. A NULL receive PCI is
        // allowed.
        check(unsafe {
            SCardTransmit(
                self.handle,
                &self.pci,
                command.as_ptr(),
                command.len() as Dword,
                ptr::null_mut(),
                self.recv.as_mut_ptr(),
                &mut len,
            )
        })?;
        response.extend_from_slice(&self.recv[..len as usize]);
        Ok(())
    }
}

impl Drop for Card<'_> {
    fn drop(&mut self) {
        // SAFETY: `handle` came from SCardConnect and is released once.
        unsafe { SCardDisconnect(self.handle, SCARD_LEAVE_CARD) };
    }
}
