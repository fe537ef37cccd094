//! Throw-away databases for tests and benchmarks, so the same suite runs against SQLite and
//! PostgreSQL with no shared state between tests.
//!
//! It owns the one switch between the two backends ([`Backend`]) and the one [`both!`] macro
//! that turns a test written as `async fn name(backend: Backend)` into a SQLite and a
//! PostgreSQL test. It depends on no smpx crate, so the store's own tests use it without a
//! dependency cycle; `smpx-testkit` re-exports it as `smpx_testkit::db`.
//!
//! PostgreSQL is found at `SMPX_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each call creates a fresh database named
//! `smpx_t_…`. `.ci/run` drops leftovers before the suite runs.

use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

/// Why a scratch database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    #[error("{url} is not reachable ({source}); start PostgreSQL or set SMPX_TEST_POSTGRES")]
    Unreachable { url: String, source: sqlx::Error },
    #[error("creating a database on {url}: {source}")]
    Create { url: String, source: sqlx::Error },
    #[error("SMPX_TEST_POSTGRES has no database part: {0}")]
    BadUrl(String),
    #[error("creating a temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
}

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server tests create their databases on.
pub fn postgres_base_url() -> String {
    std::env::var("SMPX_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn postgres() -> Result<String, TestDbError> {
    sqlx::any::install_default_drivers();
    let base = postgres_base_url();
    let name = format!(
        "smpx_t_{}_{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .map_err(|source| TestDbError::Unreachable {
            url: base.clone(),
            source,
        })?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(|source| TestDbError::Create {
            url: base.clone(),
            source,
        })?;
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .ok_or_else(|| TestDbError::BadUrl(base.clone()))?;
    Ok(format!("{prefix}/{name}"))
}

/// A SQLite database in a fresh temporary directory (kept alive by the returned guard).
pub fn sqlite() -> Result<(String, tempfile::TempDir), TestDbError> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    Ok((url, dir))
}

/// A fresh database of either kind; the guard keeps a SQLite directory alive.
pub async fn database(
    backend: Backend,
) -> Result<(String, Option<tempfile::TempDir>), TestDbError> {
    match backend {
        Backend::Sqlite => sqlite().map(|(u, d)| (u, Some(d))),
        Backend::Postgres => postgres().await.map(|u| (u, None)),
    }
}

/// Runs each named `async fn name(backend: Backend)` as two tokio tests, `sqlite::name` and
/// `postgres::name` (multi-threaded runtime, 4 workers). Use it at the level of the
/// functions it names.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name($crate::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name($crate::Backend::Postgres).await } )* }
    };
}
