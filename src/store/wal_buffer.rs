//! A thin VFS over SQLite's own (unix) that writes each commit's WAL frames with one
//! `pwrite` per 64 KiB instead of two per page. The writer's connection opens the database through it;
//! every other connection (readers, the checkpointer, the benchmark's raw baseline) uses
//! SQLite's VFS as it is.
//!
//! SQLite appends a commit to the WAL frame by frame, and each frame as two writes (its
//! 24-byte header, then the page), then syncs. Under load a group commit appends ~480
//! frames, so ~960 system calls, each with the kernel's per-call and per-page work: 17% of
//! the writer thread's time (docs/performance.md). Here the writes to a WAL file are
//! gathered in memory while they run on from one another, and go to the file in 64 KiB
//! calls (SQLite's VFS writes less than 128 KiB a call) before anything could need them
//! there:
//!
//! * before the sync that makes a commit durable: with `synchronous=FULL`, which every
//!   connection of this service sets, SQLite syncs the WAL at every commit before it
//!   publishes the new frames to readers, so nothing is acknowledged, and no other
//!   connection reads a frame, that is not in the file (a connection that published
//!   commits without syncing them must not use this VFS);
//! * before a read, size, truncation or file control on that WAL, and before a write that
//!   does not continue the gathered bytes (a write inside them, SQLite rewriting a frame of
//!   the same transaction, changes them in memory);
//! * when the file closes, and when 8 MiB are gathered.
//!
//! Everything else goes straight to SQLite's VFS. The bytes in the WAL, their order and the
//! syncs are SQLite's own; only the number of calls that carry them changes.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use libsqlite3_sys as ffi;

/// The name a connection asks for (`file:…?vfs=relief-wal-buffer`).
pub const NAME: &str = "relief-wal-buffer";
const NAME_C: &[u8] = b"relief-wal-buffer\0";
/// Most bytes gathered before they are written anyway.
const LIMIT: usize = 8 << 20;
/// Most bytes handed to SQLite's VFS in one write: it writes less than 128 KiB a call (it
/// masks the length to 17 bits).
const CHUNK: usize = 64 << 10;

/// SQLite's own VFS, which does all the work.
static BASE: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Registers the VFS (once), for connections that name it. False if it could not be.
pub fn install() -> bool {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        let base = ffi::sqlite3_vfs_find(std::ptr::null());
        if base.is_null() {
            return;
        }
        BASE.store(base, Ordering::SeqCst);
        let mut vfs: ffi::sqlite3_vfs = std::ptr::read(base);
        vfs.zName = NAME_C.as_ptr() as *const c_char;
        vfs.szOsFile = (HEADER + (*base).szOsFile as usize) as c_int;
        vfs.xOpen = Some(x_open);
        vfs.pNext = std::ptr::null_mut();
        // SQLite keeps the pointer for the life of the process.
        let vfs = Box::leak(Box::new(vfs));
        let rc = ffi::sqlite3_vfs_register(vfs, 0);
        if rc != ffi::SQLITE_OK {
            tracing::warn!(rc, "the WAL-buffering VFS could not be registered");
            BASE.store(std::ptr::null_mut(), Ordering::SeqCst);
        }
    });
    !BASE.load(Ordering::SeqCst).is_null()
}

/// An open file: ours, then SQLite's own file right after it. SQLite allocates `szOsFile`
/// bytes for each file it opens through this VFS, hands them to `x_open` to fill, and
/// passes the same pointer to every method until `x_close`; that is what makes the casts
/// in `file` and the `inner` pointer sound.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// A WAL file's gathered writes; null for any other file.
    wal: *mut Gathered,
}

/// Where SQLite's own file starts, after ours (aligned as SQLite aligns files).
const HEADER: usize = std::mem::size_of::<File>().next_multiple_of(16);

#[derive(Default)]
struct Gathered {
    /// The file offset of `bytes[0]`.
    start: i64,
    bytes: Vec<u8>,
}

unsafe fn file<'a>(f: *mut ffi::sqlite3_file) -> &'a mut File {
    &mut *(f as *mut File)
}

unsafe fn methods<'a>(f: &File) -> &'a ffi::sqlite3_io_methods {
    &*(*f.inner).pMethods
}

/// Writes what a WAL file has gathered, if anything.
unsafe fn flush(f: &mut File) -> c_int {
    let Some(w) = f.wal.as_mut() else {
        return ffi::SQLITE_OK;
    };
    if w.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let write = methods(f).xWrite.expect("SQLite's files write");
    let mut rc = ffi::SQLITE_OK;
    let mut at = w.start;
    for chunk in w.bytes.chunks(CHUNK) {
        rc = write(
            f.inner,
            chunk.as_ptr() as *const c_void,
            chunk.len() as c_int,
            at,
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += chunk.len() as i64;
    }
    w.bytes.clear();
    if w.bytes.capacity() > LIMIT {
        w.bytes.shrink_to(LIMIT);
    }
    rc
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    out: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = BASE.load(Ordering::SeqCst);
    let f = out as *mut File;
    let inner = (out as *mut u8).add(HEADER) as *mut ffi::sqlite3_file;
    (*f).base.pMethods = std::ptr::null();
    (*f).inner = inner;
    (*f).wal = std::ptr::null_mut();
    let open = (*base).xOpen.expect("SQLite's VFS opens files");
    let rc = open(base, name, inner, flags, out_flags);
    // SQLite closes a file whose methods are set even when opening it failed.
    if (*inner).pMethods.is_null() {
        return rc;
    }
    if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
        (*f).wal = Box::into_raw(Box::default());
    }
    (*f).base.pMethods = &METHODS;
    rc
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    let f = file(f);
    let flushed = flush(f);
    if !f.wal.is_null() {
        drop(Box::from_raw(f.wal));
        f.wal = std::ptr::null_mut();
    }
    let rc = (methods(f).xClose.expect("SQLite's files close"))(f.inner);
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        rc
    }
}

unsafe extern "C" fn x_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    let f = file(f);
    if let Some(w) = f.wal.as_ref() {
        let end = w.start + w.bytes.len() as i64;
        if !w.bytes.is_empty() && off < end && off + amt as i64 > w.start {
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
    }
    (methods(f).xRead.expect("SQLite's files read"))(f.inner, buf, amt, off)
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    let f = file(f);
    let Some(w) = f.wal.as_mut() else {
        return (methods(f).xWrite.expect("SQLite's files write"))(f.inner, buf, amt, off);
    };
    let data = std::slice::from_raw_parts(buf as *const u8, amt as usize);
    let end = w.start + w.bytes.len() as i64;
    if !w.bytes.is_empty() {
        if off >= w.start && off + amt as i64 <= end {
            // A frame rewritten within the same transaction.
            let at = (off - w.start) as usize;
            w.bytes[at..at + data.len()].copy_from_slice(data);
            return ffi::SQLITE_OK;
        }
        if off == end && w.bytes.len() + data.len() <= LIMIT {
            w.bytes.extend_from_slice(data);
            return ffi::SQLITE_OK;
        }
        let rc = flush(f);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    let w = &mut *f.wal;
    if data.len() > CHUNK {
        // Larger than SQLite itself writes at once: pass it on as it came.
        return (methods(f).xWrite.expect("SQLite's files write"))(f.inner, buf, amt, off);
    }
    w.start = off;
    w.bytes.extend_from_slice(data);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let f = file(f);
    let rc = flush(f);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    (methods(f).xTruncate.expect("SQLite's files truncate"))(f.inner, size)
}

unsafe extern "C" fn x_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let f = file(f);
    let rc = flush(f);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    (methods(f).xSync.expect("SQLite's files sync"))(f.inner, flags)
}

unsafe extern "C" fn x_file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let f = file(f);
    let rc = flush(f);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    (methods(f).xFileSize.expect("SQLite's files have a size"))(f.inner, size)
}

unsafe extern "C" fn x_lock(f: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    let f = file(f);
    (methods(f).xLock.expect("SQLite's files lock"))(f.inner, lock)
}

unsafe extern "C" fn x_unlock(f: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    let f = file(f);
    (methods(f).xUnlock.expect("SQLite's files unlock"))(f.inner, lock)
}

unsafe extern "C" fn x_check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let f = file(f);
    (methods(f).xCheckReservedLock.expect("SQLite's files lock"))(f.inner, out)
}

unsafe extern "C" fn x_file_control(
    f: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    let f = file(f);
    let rc = flush(f);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    (methods(f)
        .xFileControl
        .expect("SQLite's files take controls"))(f.inner, op, arg)
}

unsafe extern "C" fn x_sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    let f = file(f);
    (methods(f).xSectorSize.expect("SQLite's files have sectors"))(f.inner)
}

unsafe extern "C" fn x_device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    let f = file(f);
    (methods(f)
        .xDeviceCharacteristics
        .expect("SQLite's files have a device"))(f.inner)
}

unsafe extern "C" fn x_shm_map(
    f: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let f = file(f);
    match methods(f).xShmMap {
        Some(m) => m(f.inner, page, size, extend, out),
        None => ffi::SQLITE_IOERR,
    }
}

unsafe extern "C" fn x_shm_lock(
    f: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let f = file(f);
    match methods(f).xShmLock {
        Some(m) => m(f.inner, offset, n, flags),
        None => ffi::SQLITE_IOERR,
    }
}

unsafe extern "C" fn x_shm_barrier(f: *mut ffi::sqlite3_file) {
    let f = file(f);
    if let Some(m) = methods(f).xShmBarrier {
        m(f.inner)
    }
}

unsafe extern "C" fn x_shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let f = file(f);
    match methods(f).xShmUnmap {
        Some(m) => m(f.inner, delete),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_fetch(
    f: *mut ffi::sqlite3_file,
    off: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let f = file(f);
    match methods(f).xFetch {
        Some(m) => m(f.inner, off, amt, out),
        None => {
            *out = std::ptr::null_mut();
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn x_unfetch(f: *mut ffi::sqlite3_file, off: i64, p: *mut c_void) -> c_int {
    let f = file(f);
    match methods(f).xUnfetch {
        Some(m) => m(f.inner, off, p),
        None => ffi::SQLITE_OK,
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};
