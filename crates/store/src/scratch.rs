//! Throw-away databases for tests and benchmarks, so the same suite runs against SQLite and
//! PostgreSQL with no shared state between tests.
//!
//! PostgreSQL is found at `SMPX_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each call creates a fresh database named
//! `smpx_t_…`. `.ci/run` drops leftovers before the suite runs.

use crate::db::q;
use crate::StoreError;
use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

/// The server tests create their databases on.
pub fn postgres_base_url() -> String {
    std::env::var("SMPX_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn postgres() -> Result<String, StoreError> {
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
        .map_err(|e| {
            StoreError::BadUrl(format!(
                "{base} is not reachable ({e}); start PostgreSQL or set SMPX_TEST_POSTGRES"
            ))
        })?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(q)?;
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .ok_or_else(|| StoreError::BadUrl(base.clone()))?;
    Ok(format!("{prefix}/{name}"))
}

/// A SQLite database in a fresh temporary directory (kept alive by the returned guard).
pub fn sqlite() -> Result<(String, tempfile::TempDir), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    Ok((url, dir))
}

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Sqlite,
    Postgres,
}

/// A fresh database of either kind; the guard keeps a SQLite directory alive.
pub async fn database(which: Which) -> Result<(String, Option<tempfile::TempDir>), StoreError> {
    match which {
        Which::Sqlite => sqlite().map(|(u, d)| (u, Some(d))),
        Which::Postgres => postgres().await.map(|u| (u, None)),
    }
}
