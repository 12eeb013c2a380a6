//! A thin VFS over SQLite's own (unix) that writes each commit's WAL frames with one
//! `pwrite` per 64 KiB instead of two per page. The writer's connection opens the database through it;
//! every other connection (readers, the checkpointer, the benchmark's raw baseline) uses
//! SQLite's VFS as it is.
//!
//! SQLite appends a commit to the WAL frame by frame, and each frame as two writes (its
//! 24-byte header, then the page), then syncs. Under load a group commit appends ~480
//! frames, so ~960 system calls, each with the kernel's per-call and per-page work: 17% of
//! the writer thread's time (docs/performance-history.md). Here the writes to a WAL file are
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
//! * when the connection gives up the WAL's write lock (the end of a write transaction,
//!   seen as the unlock of `WAL_WRITE_LOCK` on the database file): bytes still gathered
//!   then belong to a transaction that rolled back, and go to the file while the lock is
//!   still held, as SQLite itself would have written them, never later over frames that
//!   another writer has committed meanwhile;
//! * when the file closes, and when 8 MiB are gathered.
//!
//! A failed write of gathered bytes (which SQLite was told were written) fails every later
//! operation on that WAL until it is closed, so no commit can follow it on that connection.
//!
//! Everything else goes straight to SQLite's VFS. The bytes in the WAL, their order and the
//! syncs are SQLite's own; only the number of calls that carry them changes.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

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
    /// A main database file's open WAL, or a WAL's database file (null if none).
    linked: *mut File,
}

/// Where SQLite's own file starts, after ours (aligned as SQLite aligns files).
const HEADER: usize = std::mem::size_of::<File>().next_multiple_of(16);

#[derive(Default)]
struct Gathered {
    /// The file offset of `bytes[0]`.
    start: i64,
    bytes: Vec<u8>,
    /// Set when gathered bytes could not be written: the error every later call returns.
    failed: c_int,
}

/// Open main database files by the name SQLite opened them with (its pointer: each
/// connection has its own), so that a WAL, which SQLite opens by a name in the same block
/// (`sqlite3_filename_database`), finds its database file.
static MAIN_FILES: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// SQLite's lock on the WAL for writing: the first of the shared-memory locks.
const WAL_WRITE_LOCK: c_int = 0;

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
    if w.failed != ffi::SQLITE_OK {
        return w.failed;
    }
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
    if rc != ffi::SQLITE_OK {
        // An I/O error rather than SQLITE_FULL, whatever the cause: SQLite then rolls back
        // the whole transaction, not only the statement.
        w.failed = ffi::SQLITE_IOERR_WRITE;
        return w.failed;
    }
    rc
}

/// The sticky error of a WAL whose gathered bytes could not be written.
unsafe fn failed(f: &File) -> c_int {
    f.wal.as_ref().map_or(ffi::SQLITE_OK, |w| w.failed)
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
    (*f).linked = std::ptr::null_mut();
    let open = (*base).xOpen.expect("SQLite's VFS opens files");
    let rc = open(base, name, inner, flags, out_flags);
    // SQLite closes a file whose methods are set even when opening it failed.
    if (*inner).pMethods.is_null() {
        return rc;
    }
    if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null() {
        let mut files = MAIN_FILES.lock().unwrap_or_else(|e| e.into_inner());
        files.push((name as usize, f as usize));
    }
    if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
        (*f).wal = Box::into_raw(Box::default());
        let db = ffi::sqlite3_filename_database(name) as usize;
        let files = MAIN_FILES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, main)) = files.iter().find(|(n, _)| *n == db) {
            let main = main as *mut File;
            (*main).linked = f;
            (*f).linked = main;
        }
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
    if let Some(other) = f.linked.as_mut() {
        other.linked = std::ptr::null_mut();
        f.linked = std::ptr::null_mut();
    }
    let me = f as *mut File as usize;
    MAIN_FILES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(_, main)| *main != me);
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
    if failed(f) != ffi::SQLITE_OK {
        return failed(f);
    }
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
    if w.failed != ffi::SQLITE_OK {
        return w.failed;
    }
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

/// Writes what is gathered, then passes the call on to SQLite's file: for the calls that
/// must find the file as SQLite believes it to be.
unsafe fn flushed(
    f: *mut ffi::sqlite3_file,
    call: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    let f = file(f);
    match flush(f) {
        ffi::SQLITE_OK => call(methods(f), f.inner),
        failed => failed,
    }
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flushed(f, |m, inner| {
        (m.xTruncate.expect("SQLite's files truncate"))(inner, size)
    })
}

unsafe extern "C" fn x_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flushed(f, |m, inner| {
        (m.xSync.expect("SQLite's files sync"))(inner, flags)
    })
}

unsafe extern "C" fn x_file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flushed(f, |m, inner| {
        (m.xFileSize.expect("SQLite's files have a size"))(inner, size)
    })
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
    flushed(f, |m, inner| {
        (m.xFileControl.expect("SQLite's files take controls"))(inner, op, arg)
    })
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
    // The end of a write transaction: what a rollback left gathered goes to the file while
    // the lock is still held.
    let mut flushed = ffi::SQLITE_OK;
    if offset == WAL_WRITE_LOCK && flags == ffi::SQLITE_SHM_UNLOCK | ffi::SQLITE_SHM_EXCLUSIVE {
        if let Some(wal) = f.linked.as_mut() {
            flushed = flush(wal);
        }
    }
    if flushed != ffi::SQLITE_OK {
        // The lock is still given up (SQLite does not retry an unlock); the WAL refuses
        // everything from now on.
        if let Some(m) = methods(f).xShmLock {
            m(f.inner, offset, n, flags);
        }
        return flushed;
    }
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

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = Text)]
        integrity_check: String,
    }

    fn count(c: &mut SqliteConnection) -> i64 {
        diesel::sql_query("SELECT count(*) AS n FROM t")
            .get_result::<Count>(c)
            .unwrap()
            .n
    }

    /// A transaction through this VFS spills frames to the WAL (a tiny page cache) and rolls
    /// back; another connection, through SQLite's own VFS, then commits frames at the same
    /// offsets; the first reads and commits again. What the rollback left gathered must
    /// have gone to the file before the other writer's frames, not after over them.
    #[test]
    fn a_rollback_leaves_nothing_to_overwrite_another_writers_frames() {
        assert!(super::install());
        let dir = std::env::temp_dir().join(format!("wal-buffer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db").to_str().unwrap().to_string();
        let pragmas = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;";
        let mut other = SqliteConnection::establish(&path).unwrap();
        other
            .batch_execute(&format!(
                "{pragmas} CREATE TABLE t (x INTEGER PRIMARY KEY, pad TEXT NOT NULL);"
            ))
            .unwrap();
        let mut ours =
            SqliteConnection::establish(&super::super::with_vfs(&path, super::NAME)).unwrap();
        ours.batch_execute(&format!("{pragmas} PRAGMA cache_size = 10;"))
            .unwrap();

        ours.batch_execute(
            "BEGIN IMMEDIATE;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT i, printf('%.500c', 'x') FROM n;
             ROLLBACK;",
        )
        .unwrap();
        other
            .batch_execute(
                "BEGIN IMMEDIATE;
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
                 INSERT INTO t SELECT 100000 + i, printf('%.500c', 'y') FROM n;
                 COMMIT;",
            )
            .unwrap();
        assert_eq!(count(&mut ours), 100);
        ours.batch_execute("INSERT INTO t VALUES (1, 'ours');")
            .unwrap();
        drop(ours);
        drop(other);

        let mut fresh = SqliteConnection::establish(&path).unwrap();
        let check: Check = diesel::sql_query("PRAGMA integrity_check")
            .get_result(&mut fresh)
            .unwrap();
        assert_eq!(check.integrity_check, "ok");
        assert_eq!(count(&mut fresh), 101);
        drop(fresh);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
