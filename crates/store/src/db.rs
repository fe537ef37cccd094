//! Connection, dialect and migrations.

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

/// Storage failures. Constraint violations are told apart so services can answer with the
/// right protocol error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique or primary key constraint refused the write.
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// A CHECK constraint refused the write.
    #[error("constraint violated: {0}")]
    Check(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A number given to the store (an id, an index, a bound from a request) is above
    /// 2^63 − 1, the largest the databases hold: nothing can match it, and it is the
    /// caller's input that is wrong, not the data.
    #[error("{0} is larger than 9223372036854775807")]
    OutOfRange(String),
    #[error("bad database URL {0:?}: expected sqlite://… or postgres://…")]
    BadUrl(String),
}

impl StoreError {
    /// Classifies a sqlx error: constraint violations become [`StoreError::Duplicate`] /
    /// [`StoreError::Check`].
    pub fn from_sqlx(e: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &e {
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    return StoreError::Duplicate(db.message().to_owned())
                }
                sqlx::error::ErrorKind::CheckViolation => {
                    return StoreError::Check(db.message().to_owned())
                }
                _ => {}
            }
        }
        StoreError::Db(e)
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, StoreError::Duplicate(_))
    }
}

/// Each schema's migrations take versions `id × SCHEMA_VERSION_SPAN + 1 …` in sqlx's table.
const SCHEMA_VERSION_SPAN: i64 = 1_000_000;

/// The schemas that may share a database, with their fixed ids (never reuse or renumber one).
const SCHEMAS: &[(&str, i64)] = &[
    ("coordinator", 1),
    ("issuer", 2),
    ("operator", 3),
    ("credits", 4),
    ("relay", 5),
    ("directory", 6),
];

fn schema_id(schema: &str) -> Result<i64, StoreError> {
    SCHEMAS
        .iter()
        .find(|(name, _)| *name == schema)
        .map(|(_, id)| *id)
        .ok_or_else(|| StoreError::Corrupt(format!("no migration set is named {schema:?}")))
}

fn migration_error(schema: &str, e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => q(e),
        MigrateError::VersionMismatch(v) => StoreError::Corrupt(format!(
            "migration {} of {schema} was applied with other SQL than this build's; \
             refusing to run against a schema it does not know",
            v % SCHEMA_VERSION_SPAN
        )),
        MigrateError::Dirty(v) => StoreError::Corrupt(format!(
            "migration {} of {schema} failed half-way earlier; repair the database first",
            v % SCHEMA_VERSION_SPAN
        )),
        other => StoreError::Corrupt(format!("migrations of {schema}: {other}")),
    }
}

pub(crate) fn q(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool plus the backend it talks to.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url`, creating a SQLite file if needed.
    ///
    /// SQLite runs in WAL mode with `synchronous=NORMAL`: a committed transaction survives a
    /// crash or kill of the process (not necessarily a power loss), and readers don't block
    /// the writer. `busy_timeout` makes concurrent writers wait rather than fail.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|_| StoreError::BadUrl(url.clone()))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                             PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(q)?;
        Ok(Db { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Brings the tables of `schema` up to date with sqlx's migrator: migration `i` (from 1)
    /// of `schema` is sqlx version `schema id × 1,000,000 + i` in `_sqlx_migrations`, with the
    /// SHA-384 checksum of its SQL for this backend, so several schemas share one database
    /// and a migration edited after it was applied stops the service instead of being
    /// skipped. `{serial}` becomes an auto-increment primary key and `{blob}` the binary
    /// type; a statement starting `SQLITE: ` or `POSTGRES: ` runs on that backend only.
    /// Databases made before this runner (table `schema_migrations`) are adopted as
    /// they are: their applied versions are recorded with today's checksums first.
    ///
    /// Concurrent migrators (two processes starting against one database): PostgreSQL
    /// serialises them with sqlx's advisory lock; on SQLite the loser's migration fails
    /// inside its own transaction once the winner has committed, and one more pass finds
    /// everything applied.
    pub async fn migrate(&self, schema: &str, migrations: &[&[&str]]) -> Result<(), StoreError> {
        let migrator = self.migrator(schema, migrations)?;
        let mut conn = self.pool.acquire().await.map_err(q)?;
        self.adopt_legacy_versions(&mut conn, schema, &migrator)
            .await?;
        let mut passes = 0;
        loop {
            passes += 1;
            match migrator.run_direct(&mut *conn).await {
                Ok(()) => break,
                Err(e @ MigrateError::ExecuteMigration(..)) if passes < 3 => {
                    tracing::debug!(schema, error = %e, "migration raced another process; again");
                }
                Err(e) => return Err(migration_error(schema, e)),
            }
        }
        tracing::debug!(schema, "migrations applied");
        Ok(())
    }

    fn migrator(&self, schema: &str, migrations: &[&[&str]]) -> Result<Migrator, StoreError> {
        let id = schema_id(schema)?;
        let migrations = migrations
            .iter()
            .enumerate()
            .map(|(i, stmts)| {
                let sql: Vec<String> = stmts.iter().filter_map(|s| self.dialect(s)).collect();
                Migration::new(
                    id * SCHEMA_VERSION_SPAN + i as i64 + 1,
                    Cow::Owned(format!("{schema} {}", i + 1)),
                    MigrationType::Simple,
                    Cow::Owned(sql.join(";\n")),
                    false,
                )
            })
            .collect::<Vec<_>>();
        Ok(Migrator {
            migrations: Cow::Owned(migrations),
            // Other schemas' versions live in the same table.
            ignore_missing: true,
            locking: true,
            no_tx: false,
        })
    }

    /// Records the versions the old runner applied (`schema_migrations`) in sqlx's table.
    async fn adopt_legacy_versions(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        schema: &str,
        migrator: &Migrator,
    ) -> Result<(), StoreError> {
        let legacy: Vec<i64> = match sqlx::query_scalar(
            "SELECT version FROM schema_migrations WHERE schema_name = $1",
        )
        .bind(schema)
        .fetch_all(&mut **conn)
        .await
        {
            Ok(v) => v,
            // No such table: a database made by this runner, or a new one.
            Err(sqlx::Error::Database(_)) => return Ok(()),
            Err(e) => return Err(q(e)),
        };
        if legacy.is_empty() {
            return Ok(());
        }
        conn.ensure_migrations_table()
            .await
            .map_err(|e| migration_error(schema, e))?;
        let id = schema_id(schema)?;
        for m in migrator.iter() {
            if !legacy.contains(&(m.version - id * SCHEMA_VERSION_SPAN)) {
                continue;
            }
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
            )
            .bind(m.version)
            .bind(m.description.to_string())
            .bind(m.checksum.to_vec())
            .execute(&mut **conn)
            .await
            .map_err(q)?;
        }
        Ok(())
    }

    /// This backend's form of a migration statement, or `None` for a statement that names
    /// the other backend (`SQLITE: …` / `POSTGRES: …` run on that backend only).
    fn dialect(&self, sql: &str) -> Option<String> {
        let (serial, blob, mine, other) = match self.backend {
            Backend::Sqlite => (
                "INTEGER PRIMARY KEY AUTOINCREMENT",
                "BLOB",
                "SQLITE: ",
                "POSTGRES: ",
            ),
            Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA", "POSTGRES: ", "SQLITE: "),
        };
        if sql.starts_with(other) {
            return None;
        }
        let sql = sql.strip_prefix(mine).unwrap_or(sql);
        Some(sql.replace("{serial}", serial).replace("{blob}", blob))
    }
}

/// Converts a stored BIGINT to u64, refusing negatives (which no write produces).
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

/// Converts a u64 for storage or lookup as BIGINT; above `i64::MAX` it is
/// [`StoreError::OutOfRange`].
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange(what.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod migration_tests {
    use super::*;
    use smpx_testdb::{self as scratch, Backend as Which};

    const BOTH: [Which; 2] = [Which::Sqlite, Which::Postgres];
    const V1: &[&[&str]] = &[&["CREATE TABLE m_t (a BIGINT NOT NULL)"]];
    const V2: &[&[&str]] = &[
        &["CREATE TABLE m_t (a BIGINT NOT NULL)"],
        &[
            "ALTER TABLE m_t ADD COLUMN b {blob}",
            "CREATE TABLE m_u (id {serial})",
        ],
    ];

    async fn fresh(which: Which) -> (Db, Option<tempfile::TempDir>) {
        let (url, guard) = scratch::database(which).await.unwrap();
        (Db::connect(&url).await.unwrap(), guard)
    }

    async fn recorded(db: &Db) -> Vec<(i64, Vec<u8>)> {
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn applies_new_steps_once_with_their_checksums() {
        for which in BOTH {
            let (db, _g) = fresh(which).await;
            db.migrate("issuer", V1).await.unwrap();
            db.migrate("issuer", V2).await.unwrap();
            db.migrate("issuer", V2).await.unwrap();
            let rows = recorded(&db).await;
            assert_eq!(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                vec![2_000_001, 2_000_002],
                "{which:?}"
            );
            assert!(rows.iter().all(|r| r.1.len() == 48), "SHA-384 checksums");
            sqlx::query("INSERT INTO m_t (a, b) VALUES (1, NULL)")
                .execute(db.pool())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_migration_edited_after_it_ran_stops_the_store() {
        for which in BOTH {
            let (db, _g) = fresh(which).await;
            db.migrate("issuer", V1).await.unwrap();
            let edited: &[&[&str]] = &[&["CREATE TABLE m_t (a BIGINT NOT NULL, z BIGINT)"]];
            let e = db.migrate("issuer", edited).await.unwrap_err();
            assert!(
                matches!(&e, StoreError::Corrupt(m) if m.contains("migration 1 of issuer")),
                "{which:?}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn schemas_sharing_a_database_keep_their_own_versions() {
        for which in BOTH {
            let (db, _g) = fresh(which).await;
            db.migrate("operator", V1).await.unwrap();
            let other: &[&[&str]] = &[&["CREATE TABLE m_other (x BIGINT)"]];
            db.migrate("credits", other).await.unwrap();
            db.migrate("operator", V1).await.unwrap();
            let versions: Vec<i64> = recorded(&db).await.into_iter().map(|r| r.0).collect();
            assert_eq!(versions, vec![3_000_001, 4_000_001], "{which:?}");
            assert!(db.migrate("nobody", V1).await.is_err());
        }
    }

    /// A database written by the runner before sqlx's (its `schema_migrations` table) is
    /// taken over without running its migrations again; later steps still run.
    #[tokio::test]
    async fn databases_from_the_old_runner_are_adopted() {
        for which in BOTH {
            let (db, _g) = fresh(which).await;
            for sql in [
                "CREATE TABLE schema_migrations (schema_name TEXT NOT NULL, \
                 version BIGINT NOT NULL, PRIMARY KEY (schema_name, version))",
                "CREATE TABLE m_t (a BIGINT NOT NULL)",
                "INSERT INTO schema_migrations (schema_name, version) VALUES ('issuer', 1)",
                "INSERT INTO m_t (a) VALUES (7)",
            ] {
                sqlx::query(sql).execute(db.pool()).await.unwrap();
            }
            db.migrate("issuer", V2).await.unwrap();
            let versions: Vec<i64> = recorded(&db).await.into_iter().map(|r| r.0).collect();
            assert_eq!(versions, vec![2_000_001, 2_000_002], "{which:?}");
            let kept: i64 = sqlx::query_scalar("SELECT a FROM m_t")
                .fetch_one(db.pool())
                .await
                .unwrap();
            assert_eq!(kept, 7, "the old data stays");
        }
    }

    /// Two services starting at once against one new database (two processes in
    /// production; two pools here): both start, each migration runs once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_migrators_both_succeed() {
        for which in BOTH {
            let (url, _g) = scratch::database(which).await.unwrap();
            let a = Db::connect(&url).await.unwrap();
            let b = Db::connect(&url).await.unwrap();
            let (ra, rb) = tokio::join!(a.migrate("issuer", V2), b.migrate("issuer", V2));
            ra.unwrap();
            rb.unwrap();
            assert_eq!(recorded(&a).await.len(), 2, "{which:?}");
        }
    }
}
