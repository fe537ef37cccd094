//! Connection, dialect and migrations.

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};
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

    /// Applies `statements` once per `(schema, version)`, in one transaction per migration.
    /// `{serial}` becomes an auto-increment primary key and `{blob}` the binary type.
    pub(crate) async fn migrate(
        &self,
        schema: &str,
        migrations: &[&[&str]],
    ) -> Result<(), StoreError> {
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 schema_name TEXT NOT NULL, version BIGINT NOT NULL, \
                 PRIMARY KEY (schema_name, version))",
            )
            .await
            .map_err(q)?;
        for (i, stmts) in migrations.iter().enumerate() {
            let version = i as i64 + 1;
            let mut tx = self.pool.begin().await.map_err(q)?;
            // Claiming the version first serialises concurrent migrators (two processes
            // starting against one database): the loser gets a duplicate and skips.
            let claimed =
                sqlx::query("INSERT INTO schema_migrations (schema_name, version) VALUES ($1, $2)")
                    .bind(schema)
                    .bind(version)
                    .execute(&mut *tx)
                    .await;
            match claimed.map_err(q) {
                Ok(_) => {}
                Err(e) if e.is_duplicate() => continue,
                Err(e) => return Err(e),
            }
            for s in stmts.iter() {
                let sql = self.dialect(s);
                tx.execute(sql.as_str()).await.map_err(q)?;
            }
            tx.commit().await.map_err(q)?;
            tracing::debug!(schema, version, "migration applied");
        }
        Ok(())
    }

    fn dialect(&self, sql: &str) -> String {
        let (serial, blob) = match self.backend {
            Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
            Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
        };
        sql.replace("{serial}", serial).replace("{blob}", blob)
    }
}

/// Converts a stored BIGINT to u64, refusing negatives (which no write produces).
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

/// Converts a u64 for storage as BIGINT.
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} does not fit in BIGINT")))
}
