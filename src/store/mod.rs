//! Storage: the only module that speaks SQL. One binary serves SQLite (the default, embedded)
//! and PostgreSQL, chosen by the database URL; queries are written once against diesel's
//! `MultiConnection`, and only connection setup and transaction start differ per backend.

/// Runs diesel code on the concrete connection behind a `DbConn`, once per backend. The hot
/// paths (a write's reads and inserts, authentication) go through it because diesel's
/// `MultiConnection` writes every query out as SQL text on every run, even when its
/// prepared statement is cached (7% of the server's CPU under write load, with the
/// allocations on top, docs/performance-history.md); the concrete connections find a cached
/// statement by its type, without building its text.
macro_rules! on {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::DbConn::Sqlite($c) => $body,
            $crate::store::DbConn::Postgres($c) => $body,
        }
    };
}

pub mod audit;
mod batch;
mod group;
pub mod ledger;
pub mod master;
pub mod periods;
pub mod schema;
pub mod users;
mod wal_buffer;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::{Error, Result};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Key of the PostgreSQL advisory lock that orders writers (see `Db::write`).
const PG_WRITE_LOCK: i64 = 0x7265_6c69_6566; // "relief"

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Opens connections for the pool. Written out rather than diesel's `ConnectionManager`,
/// which would try each backend in turn and could quietly create a SQLite file named after
/// a PostgreSQL URL whose server is down.
#[derive(Debug, Clone)]
pub struct Manager {
    backend: Backend,
    url: String,
}

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

pub fn connect(url: &str) -> Result<DbConn, diesel::ConnectionError> {
    match Backend::of_url(url) {
        Backend::Postgres => Ok(DbConn::Postgres(PgConnection::establish(url)?)),
        Backend::Sqlite => {
            configure_sqlite();
            let mut conn = SqliteConnection::establish(sqlite_path(url))?;
            // synchronous=FULL: an acknowledged commit survives power loss, not just a crash.
            // No automatic checkpoints: they would run inside a writer's COMMIT, with every
            // queued writer waiting on the copy and its fsync. A server's `checkpointer`
            // thread does them beside the writers; the last connection to close does one too.
            conn.batch_execute(
                "PRAGMA busy_timeout = 10000;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA wal_autocheckpoint = 0;",
            )
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Sqlite(conn))
        }
    }
}

/// SQLite's process-wide settings, made once before its first connection (SQLite takes them
/// only before it initializes). Both spare every call into SQLite a mutex that this service
/// does not need (taking and releasing them was ~6% of the writer thread's samples under load,
/// docs/performance-history.md):
///
/// * multi-thread mode: no lock on each connection, which SQLite's default (serialized)
///   takes for every call. A connection here is only ever used by one thread at a time
///   (diesel's connections are not `Sync`, and the pool lends each to one caller).
/// * no memory statistics: SQLite's default counts every allocation under a global lock,
///   for `sqlite3_memory_used`, which nothing here reads.
///
/// If SQLite was initialized first (by another library in the same process), the calls are
/// refused and it runs as it would have; nothing depends on them.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use libsqlite3_sys as ffi;
        // Safety: sqlite3_config is safe to call before sqlite3_initialize, and returns
        // SQLITE_MISUSE (changing nothing) after it.
        let rc = unsafe {
            [
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MULTITHREAD),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int),
            ]
        };
        if rc.iter().any(|&rc| rc != ffi::SQLITE_OK) {
            tracing::warn!(?rc, "SQLite was initialized before it could be configured");
        }
    });
}

impl diesel::r2d2::ManageConnection for Manager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        debug_assert_eq!(Backend::of_url(&self.url), self.backend);
        connect(&self.url).map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        false
    }
}

/// The database handle shared by all requests: a connection pool for reads and the
/// writer's group commit.
#[derive(Clone)]
pub struct Db {
    pool: diesel::r2d2::Pool<Manager>,
    pub backend: Backend,
    /// Where writes are sent (see `Writer`).
    writer: Arc<Writer>,
}

/// Group commit. One thread owns the write connection and runs the writes sent to it one
/// after another in a shared transaction; when none is waiting (or `MAX_GROUP` have run) it
/// commits for the whole group and only then answers each of them. Every write is still its
/// own unit (a failing one leaves nothing behind and does not fail its neighbours), still
/// audited, and acknowledged only after the COMMIT that made it durable; the group shares
/// the fsync. Under no contention a group is one write. On PostgreSQL the group's
/// transaction also holds the advisory lock, so groups from several API nodes still run
/// one at a time.
///
/// A failing write must leave nothing behind, and a savepoint around each write would cost
/// what it is there for almost never: on SQLite it copies every page a write changes before
/// changing it (9% of the writer's time), on PostgreSQL it is a round trip of its own, one of
/// three a document (docs/performance-history.md). Writes check everything before they write, so a
/// failure nearly always leaves the transaction untouched, and the writer confirms it by the
/// database's own count of rows written: SQLite's change counter; on PostgreSQL, where any
/// error aborts the whole transaction, a failed write is checked (one query, only when a
/// write fails) that the transaction is not aborted and that the connection's count of
/// rows written is where the group began plus what the writes since said they wrote
/// (`group::wrote`).
/// If a write did fail after writing, or the counts differ for any reason, the group starts
/// over without it: the transaction is rolled back and the writes before it are run again.
/// So a write may run more than once before it is committed; it must do nothing outside the
/// database.
///
/// A thread rather than a lock that writers take in turn: handing a lock from thread to
/// thread costs a wake-up per write (and the writers already answered queued for the same
/// lock on their way out), time in which nothing is written; the thread goes from one write
/// to the next without waiting for anyone.
struct Writer {
    jobs: std::sync::mpsc::Sender<Box<dyn Pending>>,
    shared: Arc<WriterState>,
}

#[derive(Default)]
struct WriterState {
    /// Writes counted by `Db::write` (just before it sends them) and not yet taken by the
    /// writer: its signal that more are coming, even one still on its way into the channel.
    queued: std::sync::atomic::AtomicUsize,
    /// Groups committed so far, for the checkpointer to see whether the WAL has grown.
    commits: std::sync::atomic::AtomicU64,
    /// Groups rolled back and run again because a write in them failed having written, or
    /// their postings kept together failed or were passed by a statement (`batch`).
    restarts: std::sync::atomic::AtomicU64,
    /// Postings committed that were kept and sent together (`batch`), and the statements.
    kept: std::sync::atomic::AtomicU64,
    kept_statements: std::sync::atomic::AtomicU64,
    /// Set by the checkpointer after it has copied the bulk of a long WAL: the writer
    /// finishes the checkpoint after its next commit (see `checkpointer`).
    checkpoint_due: std::sync::atomic::AtomicBool,
}

/// A write as the writer thread holds it until its group commits.
trait Pending: Send {
    /// Runs the write (again, if its group started over) and keeps its result: whether it
    /// succeeded.
    fn run(&mut self, conn: &mut DbConn) -> bool;
    /// Answers the caller, once the group's COMMIT succeeded or failed.
    fn answer(self: Box<Self>, committed: std::result::Result<(), &str>);
}

struct Job<T, F> {
    f: F,
    result: Option<Result<T>>,
    tx: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T, F> Pending for Job<T, F>
where
    T: Send,
    F: FnMut(&mut DbConn) -> Result<T> + Send,
{
    fn run(&mut self, conn: &mut DbConn) -> bool {
        let result = (self.f)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: std::result::Result<(), &str>) {
        let result = match (self.result, committed) {
            (None, Err(why)) => Err(Error::Internal(why.to_string())),
            (None, Ok(())) => Err(Error::Internal("the write did not run".into())),
            (Some(Ok(v)), Ok(())) => Ok(v),
            // Nothing of a failed write is in the transaction, but its error may rest on
            // what the group wrote before it (an Idempotency-Key replay of a write in the
            // same group): it stands only once the group has committed.
            (Some(Err(e)), Ok(())) => Err(e),
            (Some(_), Err(why)) => Err(Error::Internal(why.to_string())),
        };
        let _ = self.tx.send(result);
    }
}

diesel::define_sql_function! {
    /// SQLite: rows inserted, changed or deleted on this connection since it opened.
    fn total_changes() -> diesel::sql_types::BigInt;
}

/// The rows written so far on the writer's connection: SQLite's own count; on PostgreSQL
/// what this transaction's writes said they wrote (`group::wrote`), which `left_clean`
/// checks against PostgreSQL's count when a write fails.
fn changes(conn: &mut DbConn) -> std::result::Result<i64, String> {
    match conn {
        DbConn::Sqlite(c) => diesel::select(total_changes())
            .get_result(c)
            .map_err(|e| format!("cannot read the change count: {e}")),
        DbConn::Postgres(_) => Ok(group::written()),
    }
}

/// PostgreSQL's count of rows inserted, changed and deleted on this connection, in every
/// table of the service (not their TOAST tables): the current transaction's, and those of
/// earlier ones not yet reported to the statistics (which happens only between
/// transactions, so the count moves within one only with its own writes). -1 while the
/// server does not count (`track_counts` off, which a reload can do at any time): a failed
/// write is then never taken to have written nothing.
const PG_ROWS_WRITTEN: &str = "(SELECT CASE WHEN current_setting('track_counts')::bool \
     THEN COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint ELSE -1 END \
     FROM pg_stat_xact_user_tables)";

/// Runs a write, catching a panic (a bug in the write): `None`.
fn run_caught(job: &mut Box<dyn Pending>, conn: &mut DbConn) -> Option<bool> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(conn))).ok()
}

/// Whether the writer's SQLite transaction is still open and usable. SQLite ends it by
/// itself on some errors (I/O, disk full, out of memory), and the statements after would
/// then each commit on their own. `BEGIN` inside an open transaction is refused, which is the
/// answer wanted; if it is accepted, the transaction had been lost and this one is rolled
/// back at once. (diesel does not expose `sqlite3_get_autocommit`.)
fn transaction_open(c: &mut SqliteConnection) -> bool {
    match c.batch_execute("BEGIN") {
        Err(e) => e.to_string().contains("within a transaction"),
        Ok(()) => {
            let _ = c.batch_execute("ROLLBACK");
            false
        }
    }
}

/// Commits a group.
///
/// PostgreSQL keeps a transaction open after an error but aborted: it refuses every
/// statement, and answers COMMIT by rolling back, without an error. A statement that
/// failed inside a write that did not report it would then have its group acknowledged
/// unwritten. So the COMMIT follows a `SELECT 1` in the same round trip: in an aborted
/// transaction the `SELECT 1` fails and the batch stops before the COMMIT. diesel follows
/// libpq's transaction status after every statement, so it knows whether the COMMIT ran:
/// if the transaction is still open, it did not, and nothing was written.
///
/// A COMMIT that fails may still have reached the disk (its fsync failed, or a connection
/// dropped on the way back): the answer says so, rather than "nothing".
fn commit_group(conn: &mut DbConn) -> std::result::Result<(), String> {
    let unknown = |e: diesel::result::Error| {
        format!(
            "the group's COMMIT failed ({e}): whether these writes were saved is \
             unknown; retry with the same Idempotency-Key"
        )
    };
    let DbConn::Postgres(c) = conn else {
        return commit(conn).map_err(unknown);
    };
    let open = |c: &mut PgConnection| {
        <AnsiTransactionManager as TransactionManager<PgConnection>>::transaction_manager_status_mut(c)
            .transaction_depth()
            .is_ok_and(|d| d.is_some())
    };
    match c.batch_execute("SELECT 1; COMMIT") {
        // Should diesel not have followed the COMMIT, it ends the transaction its own way (a
        // COMMIT outside a transaction is only a warning).
        Ok(()) if open(c) => commit(conn).map_err(unknown),
        Ok(()) => Ok(()),
        Err(_) if open(c) => Err(
            "the group's transaction was aborted by an error that no write reported; \
             nothing was written"
                .into(),
        ),
        Err(e) => Err(unknown(e)),
    }
}

/// Whether a write that failed left the transaction as it found it: the count of rows
/// written is where it was before the write (`before`, see `changes`), and the transaction
/// is still open (SQLite) or not aborted (PostgreSQL, whose count query fails if it is).
/// `Ok(false)`: it had written, or its error aborted the transaction (the group must start
/// over without it); `Err`: the transaction is gone.
fn left_clean(conn: &mut DbConn, before: i64) -> std::result::Result<bool, String> {
    if let DbConn::Postgres(c) = conn {
        return Ok(
            diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                PG_ROWS_WRITTEN,
            ))
            .get_result::<i64>(c)
            .is_ok_and(|n| n == before),
        );
    }
    if changes(conn)? != before {
        return Ok(false);
    }
    if let DbConn::Sqlite(c) = conn {
        if !transaction_open(c) {
            return Err("the transaction ended on an error; nothing was written".into());
        }
    }
    Ok(true)
}

/// Starts the group over after a write failed having written (or, on PostgreSQL, aborted the
/// transaction, or the postings kept for the group's one statement failed there, `batch`):
/// rolls back and runs the group's writes again, each posting sent as it comes. A write that
/// now fails without writing moves to `failed`; one that fails having written moves there
/// too, and the rest start over once more without it (each round drops one, so this ends).
/// A write that panics, or any error of the database, gives up the group. Returns the change
/// count to compare the next write against.
fn start_over(
    conn: &mut DbConn,
    group: &mut Vec<Box<dyn Pending>>,
    failed: &mut Vec<Box<dyn Pending>>,
) -> std::result::Result<i64, String> {
    let give_up =
        |why: String| format!("the group could not be started over ({why}); nothing was written");
    loop {
        rollback(conn).map_err(|e| format!("cannot roll back: {e}"))?;
        begin_with_retry(conn).map_err(|e| format!("cannot start a write: {e}"))?;
        group::begin(conn).map_err(|e| format!("cannot start a write: {e}"))?;
        batch::off();
        let mut count = changes(conn)?;
        let mut jobs = std::mem::take(group).into_iter();
        let mut again = false;
        while let Some(mut job) = jobs.next() {
            match run_caught(&mut job, conn) {
                Some(true) => match changes(conn) {
                    Ok(c) => count = c,
                    Err(e) => {
                        group.push(job);
                        group.extend(jobs);
                        return Err(give_up(e));
                    }
                },
                Some(false) => match left_clean(conn, count) {
                    Ok(true) => {
                        failed.push(job);
                        continue;
                    }
                    Ok(false) => {
                        failed.push(job);
                        group.extend(jobs);
                        again = true;
                        break;
                    }
                    Err(e) => {
                        failed.push(job);
                        group.extend(jobs);
                        return Err(give_up(e));
                    }
                },
                None => {
                    group.push(job);
                    group.extend(jobs);
                    return Err(give_up(
                        "a write panicked when its group started over".into(),
                    ));
                }
            }
            group.push(job);
        }
        if !again {
            return Ok(count);
        }
    }
}

/// Most writes one commit covers, so the first of a long queue is not kept waiting.
const MAX_GROUP: usize = 64;

/// A group's writes and how its COMMIT went.
type Answers = (Vec<Box<dyn Pending>>, std::result::Result<(), String>);

fn answer_all(jobs: Vec<Box<dyn Pending>>, settled: std::result::Result<(), String>) {
    for job in jobs {
        job.answer(settled.as_ref().map(|_| ()).map_err(String::as_str));
    }
}

/// The writer thread: runs until every `Db` handle is gone, then closes its connection
/// (on SQLite the last connection to close checkpoints the WAL).
fn writer(
    url: String,
    jobs: std::sync::mpsc::Receiver<Box<dyn Pending>>,
    shared: Arc<WriterState>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    // A group's answers are sent by a thread of their own: waking each caller, and freeing
    // what its write held, took ~4 % of the writer's time on the CPU (perf, 20k), time in
    // which the next group could not start. One hand-over a group instead of ~35 wake-ups.
    // Nothing is answered before its group's COMMIT returned, as before.
    let (answers, to_answer) = std::sync::mpsc::channel::<Answers>();
    let _ = std::thread::Builder::new()
        .name("answers".into())
        .spawn(move || {
            while let Ok((jobs, settled)) = to_answer.recv() {
                answer_all(jobs, settled);
            }
        });
    let mut idle: Option<DbConn> = None;
    while let Ok(first) = jobs.recv() {
        shared.queued.fetch_sub(1, SeqCst);
        // An idle connection may have been broken meanwhile (a database server restarted):
        // it gets one fresh try before the write is refused.
        let reused = idle.is_some();
        let open_and_begin = |c: Option<DbConn>| {
            let mut c = match c {
                Some(c) => c,
                None => writer_connection(&url).map_err(|e| e.to_string())?,
            };
            begin_with_retry(&mut c).map_err(|e| format!("cannot start a write: {e}"))?;
            if let Err(e) = group::begin(&mut c) {
                let _ = rollback(&mut c);
                return Err(format!("cannot start a write: {e}"));
            }
            Ok::<_, String>(c)
        };
        let opened = match open_and_begin(idle.take()) {
            Err(_) if reused => open_and_begin(None),
            other => other,
        };
        let mut conn = match opened {
            Ok(c) => c,
            Err(why) => {
                tracing::error!(error = %why, "write refused");
                first.answer(Err(&why));
                continue;
            }
        };
        let mut group: Vec<Box<dyn Pending>> = Vec::with_capacity(MAX_GROUP);
        let mut failed: Vec<Box<dyn Pending>> = vec![];
        let mut taken = 1;
        let mut given_up: Option<String> = None;
        let mut count = changes(&mut conn).unwrap_or_else(|e| {
            given_up = Some(e);
            0
        });
        let mut next = Some(first).filter(|_| given_up.is_none());
        while let Some(mut job) = next.take() {
            let mark = group::mark();
            batch::arm(true);
            let ran = run_caught(&mut job, &mut conn);
            batch::arm(false);
            if batch::stale() {
                // The write ran a statement without the postings kept before it (`batch`):
                // what it read may be wrong. The group starts over, and its postings go as
                // they come.
                group.push(job);
                shared.restarts.fetch_add(1, SeqCst);
                match start_over(&mut conn, &mut group, &mut failed) {
                    Ok(c) => count = c,
                    Err(e) => given_up = Some(e),
                }
            } else {
                match ran {
                    Some(true) => {
                        group.push(job);
                        match changes(&mut conn) {
                            Ok(c) => count = c,
                            Err(e) => given_up = Some(e),
                        }
                    }
                    Some(false) => {
                        // Postings earlier writes kept, which this one sent
                        // (`batch::settle`), are theirs.
                        let before = count + batch::earlier_sent();
                        let restarted = match left_clean(&mut conn, before) {
                            Ok(true) => {
                                group::write_undone(mark);
                                Ok(before)
                            }
                            // What the group remembered goes with its transaction: the group
                            // starts over (`group::begin`) or is given up (`group::end`).
                            Ok(false) => {
                                shared.restarts.fetch_add(1, SeqCst);
                                start_over(&mut conn, &mut group, &mut failed)
                            }
                            Err(e) => Err(e),
                        };
                        // Nothing of it is in the transaction either way; it is answered with
                        // the others.
                        failed.push(job);
                        match restarted {
                            Ok(c) => count = c,
                            Err(e) => given_up = Some(e),
                        }
                    }
                    None => {
                        // A bug in a write (its caller hears of it when its answer is dropped):
                        // give up the group rather than commit around an unknown state.
                        given_up = Some(
                            "a write in the same group failed unexpectedly; nothing was written"
                                .into(),
                        );
                    }
                }
            }
            if given_up.is_none() && taken < MAX_GROUP {
                next = match jobs.try_recv() {
                    Ok(job) => Some(job),
                    // Counted but not sent yet (`Db::write` counts first): it joins this group.
                    Err(_) if shared.queued.load(SeqCst) > 0 => jobs.recv().ok(),
                    Err(_) => None,
                };
                if next.is_some() {
                    shared.queued.fetch_sub(1, SeqCst);
                    taken += 1;
                }
            }
        }
        // The postings kept (`batch`) go first; if their statement fails, nothing of the
        // group stands, and it starts over with each posting sent as it comes.
        if given_up.is_none() && batch::settle(&mut conn).is_err() {
            shared.restarts.fetch_add(1, SeqCst);
            if let Err(e) = start_over(&mut conn, &mut group, &mut failed) {
                given_up = Some(e);
            }
        }
        let (postings, statements) = batch::sent();
        let outcome = match given_up {
            Some(why) => Err(why),
            None => commit_group(&mut conn),
        };
        if outcome.is_ok() {
            shared.kept.fetch_add(postings, SeqCst);
            shared.kept_statements.fetch_add(statements, SeqCst);
        }
        if let Err(why) = &outcome {
            tracing::error!(error = %why, "group commit failed");
            let _ = rollback(&mut conn);
        }
        group::end(outcome.is_ok());
        if outcome.is_ok() {
            // Counted before anyone is answered, so a caller that has its answer sees it.
            shared.commits.fetch_add(1, SeqCst);
        }
        let answered: Vec<Box<dyn Pending>> = group.into_iter().chain(failed).collect();
        let settled = outcome.as_ref().map(|_| ()).map_err(String::clone);
        if let Err(std::sync::mpsc::SendError((jobs, settled))) = answers.send((answered, settled))
        {
            answer_all(jobs, settled);
        }
        if outcome.is_ok() {
            // After the answers, which do not depend on it: this copies what was committed
            // since the checkpointer's last pass, ~30 ms under load, that the group's
            // writers would otherwise have waited for too.
            if shared.checkpoint_due.swap(false, SeqCst) {
                if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                }
            }
            idle = Some(conn);
        }
        // After a failed COMMIT the connection may be broken: the next group opens a new one.
    }
}

impl Db {
    /// Connects, runs pending migrations, and returns the pool.
    pub fn open(url: &str, pool_size: u32) -> Result<Db> {
        let backend = Backend::of_url(url);
        if backend == Backend::Sqlite && sqlite_path(url).contains(":memory:") {
            return Err(Error::Internal(
                "an in-memory SQLite database cannot be shared by a pool; give a file path".into(),
            ));
        }
        // Migrate on one connection first, so the pool's connections open on the final schema.
        let mut conn = connect(url)
            .map_err(|e| Error::Internal(format!("cannot open {}: {e}", redact(url))))?;
        run_migrations(&mut conn)?;
        drop(conn);
        let pool = diesel::r2d2::Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(30))
            .build(Manager {
                backend,
                url: url.to_string(),
            })?;
        let shared = Arc::new(WriterState::default());
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn Pending>>();
        {
            let (url, shared) = (url.to_string(), shared.clone());
            std::thread::Builder::new()
                .name("writer".into())
                .spawn(move || writer(url, queue, shared))
                .map_err(|e| Error::Internal(format!("cannot start the writer: {e}")))?;
        }
        if backend == Backend::Sqlite {
            checkpointer(url, Arc::downgrade(&shared))?;
        }
        Ok(Db {
            pool,
            backend,
            writer: Arc::new(Writer { jobs, shared }),
        })
    }

    /// Writers waiting for the writer's turn, and groups committed so far: what a test
    /// needs to see a group form, and what a metrics endpoint would show.
    pub fn queued_writers(&self) -> usize {
        self.writer
            .shared
            .queued
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn groups_committed(&self) -> u64 {
        self.writer
            .shared
            .commits
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Postings committed that went to PostgreSQL kept together (`batch`), and the
    /// statements that carried them.
    pub fn postings_kept(&self) -> (u64, u64) {
        let s = &self.writer.shared;
        (
            s.kept.load(std::sync::atomic::Ordering::SeqCst),
            s.kept_statements.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    /// Groups rolled back and run again (`WriterState::restarts`).
    pub fn groups_started_over(&self) -> u64 {
        self.writer
            .shared
            .restarts
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections in the pool for reads: how many reads can run at once.
    pub fn pool_size(&self) -> u32 {
        self.pool.max_size()
    }

    pub fn conn(&self) -> Result<diesel::r2d2::PooledConnection<Manager>> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` on a pooled connection outside any explicit transaction (reads).
    pub fn read<T>(&self, f: impl FnOnce(&mut DbConn) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        f(&mut conn)
    }

    /// Runs `f` in a read-only transaction, so everything it reads (a report and the audit
    /// head it cites) comes from one consistent state of the database.
    pub fn snapshot<T>(&self, f: impl FnOnce(&mut DbConn) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        match &mut *conn {
            DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN")?,
            DbConn::Postgres(c) => AnsiTransactionManager::begin_transaction_sql(
                c,
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            )?,
        }
        let mut tx = OpenTx(Some(&mut conn));
        let out = f(tx.conn());
        drop(tx); // rolls back: nothing was written
        out
    }

    /// Runs `f` as one write in its group's transaction (see `Writer`), committed durably
    /// before this returns `Ok`; an `Err` from `f` leaves nothing of it written. A request
    /// awaits it without holding a thread (a blocking thread each used to wait, a third of
    /// the server's threads under the benchmark's writes). `f` may run more than once (when
    /// a write in its group fails after writing, the group starts over), so it must act only
    /// on the database.
    ///
    /// Writes are serialised: the writer thread runs one at a time, and its transaction holds
    /// the write lock (SQLite's `BEGIN IMMEDIATE`, so no lock upgrade can fail half-way;
    /// PostgreSQL's transaction-scoped advisory lock). Every write therefore reads the state
    /// left by the one before it, which is what keeps the audit chain from forking and what
    /// later checks (stock) rely on.
    ///
    /// Dropping the future does not withdraw the write: once sent, it commits or fails on the
    /// writer as if awaited.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConn) -> Result<T> + Send + 'static,
    {
        answered(self.send(f)?.await)
    }

    /// `write` for a caller that is on a thread of its own (the CLI, token bookkeeping
    /// inside a read, tests): blocks it until the write's answer. Not for an async task.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConn) -> Result<T> + Send + 'static,
    {
        answered(self.send(f)?.blocking_recv())
    }

    fn send<T, F>(&self, f: F) -> Result<tokio::sync::oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConn) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Box<dyn Pending> = Box::new(Job {
            f,
            result: None,
            tx,
        });
        let shared = &self.writer.shared;
        shared
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.writer.jobs.send(job).is_err() {
            shared
                .queued
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            return Err(Error::Internal("the writer has stopped".into()));
        }
        Ok(rx)
    }
}

/// The writer dropped a write without answering it: it panicked, and its group rolled back.
fn answered<T>(
    answer: std::result::Result<Result<T>, tokio::sync::oneshot::error::RecvError>,
) -> Result<T> {
    answer.unwrap_or_else(|_| {
        Err(Error::Internal(
            "the write failed unexpectedly; nothing was written (the server log has the details)"
                .into(),
        ))
    })
}

/// The writer's connection. On SQLite with a page cache of 16 MiB (the default is 2 MiB), so
/// that a group of writes keeps its changed index pages in memory until the COMMIT writes each
/// once, instead of spilling them to the WAL half-way and writing them again; and with
/// temporary storage in memory, so that a savepoint (diesel takes one for a nested
/// transaction) keeps its copies of the pages it changes in memory, not in a temporary file
/// opened, written and deleted each time (seen as half of the writer's system calls when
/// every write ran in one, docs/performance-history.md).
fn writer_connection(url: &str) -> Result<DbConn> {
    configure_sqlite();
    let through_buffer = match Backend::of_url(url) {
        Backend::Sqlite if wal_buffer::install() => {
            Some(with_vfs(sqlite_path(url), wal_buffer::NAME))
        }
        _ => None,
    };
    let mut conn = connect(through_buffer.as_deref().unwrap_or(url))
        .map_err(|e| Error::Internal(format!("cannot open {}: {e}", redact(url))))?;
    if let DbConn::Sqlite(c) = &mut conn {
        c.batch_execute("PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;")?;
        // `wal_buffer` counts on every commit syncing the WAL before it is published.
        #[derive(QueryableByName)]
        struct Synchronous {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            synchronous: i32,
        }
        let level = diesel::sql_query("PRAGMA synchronous").get_result::<Synchronous>(c)?;
        if level.synchronous < 2 {
            return Err(Error::Internal(format!(
                "the writer's connection runs synchronous={}, not FULL",
                level.synchronous
            )));
        }
    }
    if let DbConn::Postgres(c) = &mut conn {
        // `left_clean` reads PostgreSQL's count of rows written in the transaction, which
        // stays at zero with the counts off: a failed write would pass for one that wrote
        // nothing.
        #[derive(QueryableByName)]
        struct Counting {
            #[diesel(sql_type = diesel::sql_types::Text)]
            track_counts: String,
        }
        let on = diesel::sql_query("SHOW track_counts").get_result::<Counting>(c)?;
        if on.track_counts != "on" {
            return Err(Error::Internal(format!(
                "the database server runs track_counts={}; writes need it on",
                on.track_counts
            )));
        }
        // Every statement of a write is seen: one that runs while postings are kept and
        // not sent first starts the group over (`batch`).
        c.set_instrumentation(batch::Detector);
    }
    Ok(conn)
}

/// A SQLite file name as a URI that opens it through the named VFS (see
/// `wal_buffer`). A name that is already a URI keeps its parameters.
fn with_vfs(path: &str, vfs: &str) -> String {
    if let Some(rest) = path.strip_prefix("file:") {
        let sep = if rest.contains('?') { '&' } else { '?' };
        return format!("file:{rest}{sep}vfs={vfs}");
    }
    let mut uri = String::from("file:");
    for c in path.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    format!("{uri}?vfs={vfs}")
}

/// The WAL's length, in frames (pages), at which the writer finishes a checkpoint after its
/// next commit so that the WAL starts over: 32 MiB of 4 KiB pages. Finishing costs the
/// writer, and the writes queued for it, the copy of whatever was committed since the
/// checkpointer's last pass (~30 ms under load); doing it on every pass took 15% of the
/// writer's time (docs/performance-history.md).
const WAL_RESTART_FRAMES: i64 = 8192;

/// What `PRAGMA wal_checkpoint` answers.
#[derive(diesel::QueryableByName)]
struct Checkpoint {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
}

/// Checkpoints in two steps, so that writers neither wait for the bulk of the copy (as they
/// would for SQLite's automatic checkpoint, run inside a COMMIT) nor see the WAL grow
/// without end (a checkpoint that runs beside writers never catches up with them, and the
/// WAL only starts over once one has). This thread copies committed pages from the WAL into
/// the database file on its own connection while writers go on (a PASSIVE checkpoint never
/// blocks them); once the WAL is longer than `WAL_RESTART_FRAMES`, the writer thread,
/// after its next commit and before it starts another, copies the few commits made since,
/// after which the next write starts the WAL over from its beginning. It wakes a few times
/// a second, works only if something was committed, and ends when its `Db` is dropped.
fn checkpointer(url: &str, group: std::sync::Weak<WriterState>) -> Result<()> {
    let mut conn =
        connect(url).map_err(|e| Error::Internal(format!("cannot open {}: {e}", redact(url))))?;
    std::thread::Builder::new()
        .name("wal-checkpoint".into())
        .spawn(move || {
            let mut seen = 0;
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let Some(writers) = group.upgrade() else {
                    return;
                };
                let commits = writers.commits.load(std::sync::atomic::Ordering::SeqCst);
                if commits == seen {
                    continue;
                }
                seen = commits;
                let DbConn::Sqlite(c) = &mut conn else {
                    return;
                };
                match diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
                    .get_result::<Checkpoint>(c)
                {
                    Ok(c) if c.log >= WAL_RESTART_FRAMES => writers
                        .checkpoint_due
                        .store(true, std::sync::atomic::Ordering::SeqCst),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start the checkpointer: {e}")))?;
    Ok(())
}

/// Starting a write is the one place a transient error can occur: SQLite answers BUSY when
/// another process holds the write lock past the busy timeout, PostgreSQL may time out on
/// a lock. Once begun, a write holds the only write lock (SQLite's, or the advisory lock
/// every writer takes first), so it cannot deadlock or fail serialization half-way. So a
/// bounded retry here is all the retrying a write needs.
fn begin_with_retry(conn: &mut DbConn) -> diesel::QueryResult<()> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match begin(conn) {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tracing::warn!(error = %e, attempt, "database busy; retrying");
                let _ = rollback(conn);
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

pub(crate) fn is_transient(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as D};
    match e {
        D::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        D::DatabaseError(_, info) => {
            let m = info.message();
            m.contains("database is locked")
                || m.contains("busy")
                || m.contains("deadlock detected")
        }
        _ => false,
    }
}

// Transactions go through diesel's transaction manager (not raw BEGIN/COMMIT), so that
// diesel knows one is open: anything inside that wants a transaction of its own (SQLite
// batch inserts do) gets a savepoint instead of a failed BEGIN.
fn begin(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        // The lock in the same round trip as the BEGIN. If the lock fails, the server has
        // begun a transaction that diesel does not know of (it counts only a batch that
        // succeeded): it is rolled back here, so the next BEGIN starts clean.
        DbConn::Postgres(c) => AnsiTransactionManager::begin_transaction_sql(
            c,
            &format!("BEGIN; SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})"),
        )
        .inspect_err(|_| {
            let _ = c.batch_execute("ROLLBACK");
        }),
    }
}

fn commit(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::commit_transaction(c)
        }
        DbConn::Postgres(c) => {
            <AnsiTransactionManager as TransactionManager<PgConnection>>::commit_transaction(c)
        }
    }
}

fn rollback(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::rollback_transaction(
                c,
            )
        }
        DbConn::Postgres(c) => {
            <AnsiTransactionManager as TransactionManager<PgConnection>>::rollback_transaction(c)
        }
    }
}

/// Rolls back on drop, so a read snapshot never leaves an open transaction on a pooled
/// connection, whatever happens inside it.
struct OpenTx<'a>(Option<&'a mut DbConn>);

impl OpenTx<'_> {
    fn conn(&mut self) -> &mut DbConn {
        self.0.as_deref_mut().expect("transaction is open")
    }
}

impl Drop for OpenTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            if let Err(e) = rollback(conn) {
                tracing::error!(error = %e, "rollback failed");
            }
        }
    }
}

/// A consistent copy of a live SQLite database, taken with `VACUUM INTO` (a read
/// transaction: writers go on, the copy is the state at its start).
pub fn backup(db: &Db, dest: &std::path::Path) -> Result<()> {
    if db.backend != Backend::Sqlite {
        return Err(Error::Internal(
            "backup copies SQLite databases; for PostgreSQL use pg_dump (docs/operations.md)"
                .into(),
        ));
    }
    if dest.exists() {
        return Err(Error::Internal(format!(
            "{} exists; not overwriting it",
            dest.display()
        )));
    }
    let path = dest.to_string_lossy().replace('\'', "''");
    db.read(|c| Ok(c.batch_execute(&format!("VACUUM INTO '{path}'"))?))
}

pub fn run_migrations(conn: &mut DbConn) -> Result<()> {
    let done = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConn::Postgres(c) => c.run_pending_migrations(PG_MIGRATIONS).map(|v| v.len()),
    }
    .map_err(|e| Error::Internal(format!("migration failed: {e}")))?;
    if done > 0 {
        tracing::info!(migrations = done, "database schema migrated");
    }
    Ok(())
}

/// Undoes the last `n` migrations, newest first, with their `down.sql`: what rolling back a
/// release runs before the older binary starts. The tests hold each `down.sql` to it.
pub fn revert_migrations(conn: &mut DbConn, n: usize) -> Result<()> {
    for _ in 0..n {
        match conn {
            DbConn::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS).map(|_| ()),
            DbConn::Postgres(c) => c.revert_last_migration(PG_MIGRATIONS).map(|_| ()),
        }
        .map_err(|e| Error::Internal(format!("reverting a migration failed: {e}")))?;
    }
    Ok(())
}

/// A database URL safe to print: any password is replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

// ---------------------------------------------------------------- column conversions

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    crate::domain::audit::timestamp(t)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Internal(format!("bad timestamp '{s}' in database: {e}")))
}

pub(crate) fn parse_opt_ts(s: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    s.map(parse_ts).transpose()
}

pub(crate) fn parse_uuid(s: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|e| Error::Internal(format!("bad id '{s}' in database: {e}")))
}

/// Reads a snake_case enum (role, kind, category) stored as its serde name.
pub(crate) fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| Error::Internal(format!("bad value '{s}' in database: {e}")))
}

pub(crate) fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("enum did not serialize to a string: {other:?}"),
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Internal(format!("bad JSON in database: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain values serialize")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("relief-ledger.db"), "relief-ledger.db");
    }

    #[test]
    fn names_the_vfs_in_a_uri() {
        use super::with_vfs;
        assert_eq!(
            with_vfs("/var/lib/relief.db", "v"),
            "file:/var/lib/relief.db?vfs=v"
        );
        assert_eq!(
            with_vfs("data/a?b#c%d.db", "v"),
            "file:data/a%3fb%23c%25d.db?vfs=v"
        );
        assert_eq!(
            with_vfs("file:x.db?mode=rwc", "v"),
            "file:x.db?mode=rwc&vfs=v"
        );
        assert_eq!(with_vfs("file:x.db", "v"), "file:x.db?vfs=v");
    }
}
