//! Queues and messages in SQL, over [`smpx_store::Db`]: SQLite (the embedded default) or
//! PostgreSQL, the same statements on both.
//!
//! # Schema (migration set `relay`, tables prefixed `relay_`)
//!
//! | table | key | holds |
//! |---|---|---|
//! | `relay_queues` | `recipient_id` (24 bytes) | `sender_id` (24 bytes, UNIQUE), recipient key and DH key, the relay's DH secret, the sender key once secured, `status` (0 active, 1 suspended), `quota`, `held` (bodies held: what the quota limits, CHECK ≥ 0), `created_at`; CHECK recipient id ≠ sender id |
//! | `relay_messages` | `seq` (auto-increment: FIFO order) | `recipient_id` (REFERENCES `relay_queues`), message id, `at`, `kind` (0 body, 1 quota marker), `body` (NULL exactly for the marker); index (`recipient_id`, `seq`) for the head of a queue |
//! | `relay_channels` | `owner_id` (24 bytes) | `join_id` (24 bytes, UNIQUE), `owner_key`, `created_at`, `balance_units` (may be negative), `billed_until`; CHECK owner id ≠ join id |
//!
//! Migration 2 added the channels table and three columns to `relay_queues`: `paid_until`
//! (0 for a free queue; partial index on the paid ones for `expire_capacity`), `member_of`
//! (the channel's owner id for a member queue, else NULL; partial index on the member
//! queues: what POST and USAGE select by) and `last_active` (member queues: join time, then
//! moved by `touch` at most once per UTC day). Ordinary queues cost no index entries for
//! either.
//!
//! # Where correctness comes from
//!
//! Each change is one transaction, and the rules are conditional statements, so they hold
//! with several processes on one PostgreSQL database too:
//!
//! - **Quota**: `UPDATE relay_queues SET held = held + 1 WHERE sender_id = $1 AND status = 0
//!   AND held < quota RETURNING recipient_id`, then the insert; the row lock serialises
//!   racing senders. A refused push stores the marker unless the queue's last message already
//!   is one (so once until the recipient makes room). On SQLite, which runs one write
//!   transaction at a time, two triggers keep `held` in step with the messages table instead
//!   (insert of a body: +1, delete of a body: −1), and a push is the single statement
//!   `INSERT INTO relay_messages … SELECT … FROM relay_queues WHERE sender_id = $1 AND
//!   status = 0 AND held < quota` — half the statements per message.
//! - **Ack** deletes the head only if its id matches: `DELETE … WHERE seq = (the queue's
//!   smallest seq) AND msg_id = $2`, and decrements `held` for a body.
//! - **Expire** decrements `held` by the expired bodies of each queue and deletes every message
//!   with `at < before`, in one transaction (a scan of the messages table: it holds only
//!   undelivered messages; no index on `at`, which would cost every push).
//! - **Duplicate ids**: the primary key and the UNIQUE sender id (`INSERT … ON CONFLICT DO
//!   NOTHING`), and a check that neither id is used as the other kind of id by another queue
//!   or as a channel's owner or join id, and the same for a channel's ids (ids are 24 random
//!   bytes; that check is not serialised across processes).
//! - **Post** is one change: the marker for each full member queue whose last message is not
//!   the marker (one `INSERT … SELECT`), then the body for each member queue under its quota
//!   — on PostgreSQL `WITH acc AS (UPDATE relay_queues SET held = held + 1 WHERE member_of =
//!   $1 AND status = 0 AND held < quota RETURNING recipient_id) INSERT … SELECT … FROM acc`
//!   (row locks, as for a push), on SQLite one `INSERT … SELECT` (the trigger counts `held`).
//! - **Charge** is the single `UPDATE relay_channels SET balance_units = balance_units + $2 −
//!   $3, billed_until = $4 … RETURNING balance_units`.
//! - **Touch** reads the member's `last_active` from the pool and asks the writer only when
//!   the day changed; the `UPDATE` repeats the day condition.
//!
//! # Group commit
//!
//! Changes go through one writer task per store: it takes every change waiting (up to 512)
//! and runs them in **one transaction**, then answers each. If any statement of the batch
//! fails, the batch is rolled back and each change is retried in a transaction of its own,
//! so one failure only fails its own caller. Reads (`peek`, `by_*`, `stats`) run on other
//! pooled connections and see committed data only.
//!
//! # Durability
//!
//! A change is answered only after its transaction committed. SQLite runs in WAL mode with
//! `synchronous=NORMAL` ([`Db::connect`]): a commit survives the process being killed (the
//! WAL is written before the commit returns) but not necessarily a power loss. PostgreSQL:
//! per its `synchronous_commit` (on by default: survives power loss).

use smpx_core::UnixTime;
use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_server::store::*;
use smpx_store::{Backend, Db};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE relay_queues (
        recipient_id {blob} PRIMARY KEY,
        sender_id {blob} NOT NULL UNIQUE,
        recipient_key {blob} NOT NULL,
        recipient_dh {blob} NOT NULL,
        server_dh {blob} NOT NULL,
        sender_key {blob},
        status BIGINT NOT NULL CHECK (status IN (0, 1)),
        quota BIGINT NOT NULL CHECK (quota >= 0),
        held BIGINT NOT NULL CHECK (held >= 0),
        created_at BIGINT NOT NULL,
        CHECK (length(recipient_id) = 24 AND length(sender_id) = 24),
        CHECK (recipient_id <> sender_id))",
        "CREATE TABLE relay_messages (
        seq {serial},
        recipient_id {blob} NOT NULL REFERENCES relay_queues (recipient_id),
        msg_id {blob} NOT NULL,
        at BIGINT NOT NULL,
        kind BIGINT NOT NULL CHECK (kind IN (0, 1)),
        body {blob},
        CHECK ((kind = 0) = (body IS NOT NULL)))",
        "CREATE INDEX relay_messages_queue ON relay_messages (recipient_id, seq)",
        // SQLite only (one writer at a time): `held` follows the messages table in the engine,
        // so a push and an ack are one statement each.
        "SQLITE: CREATE TRIGGER relay_messages_held_in AFTER INSERT ON relay_messages \
     WHEN NEW.kind = 0 BEGIN \
     UPDATE relay_queues SET held = held + 1 WHERE recipient_id = NEW.recipient_id; END",
        "SQLITE: CREATE TRIGGER relay_messages_held_out AFTER DELETE ON relay_messages \
     WHEN OLD.kind = 0 BEGIN \
     UPDATE relay_queues SET held = held - 1 WHERE recipient_id = OLD.recipient_id; END",
    ],
    &[
        // 2: paid capacity and channels.
        "CREATE TABLE relay_channels (
        owner_id {blob} PRIMARY KEY,
        join_id {blob} NOT NULL UNIQUE,
        owner_key {blob} NOT NULL,
        created_at BIGINT NOT NULL,
        balance_units BIGINT NOT NULL DEFAULT 0,
        billed_until BIGINT NOT NULL DEFAULT 0,
        CHECK (length(owner_id) = 24 AND length(join_id) = 24),
        CHECK (owner_id <> join_id))",
        "ALTER TABLE relay_queues ADD COLUMN paid_until BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE relay_queues ADD COLUMN member_of {blob} REFERENCES relay_channels (owner_id)",
        "ALTER TABLE relay_queues ADD COLUMN last_active BIGINT NOT NULL DEFAULT 0",
        "CREATE INDEX relay_queues_member_of ON relay_queues (member_of) \
     WHERE member_of IS NOT NULL",
        "CREATE INDEX relay_queues_paid ON relay_queues (paid_until) WHERE paid_until > 0",
    ],
];

/// Most changes run in one transaction.
const MAX_BATCH: usize = 512;

enum Op {
    Create(NewQueue),
    Secure(EntityId, [u8; 32]),
    Suspend(EntityId),
    Delete(EntityId),
    Push {
        sid: EntityId,
        id: MsgId,
        at: i64,
        body: Vec<u8>,
    },
    Ack(EntityId, MsgId),
    Expire(i64),
    SetCapacity(EntityId, Capacity),
    ExpireCapacity {
        now: i64,
        free_quota: u32,
    },
    CreateChannel(NewChannel),
    Join(EntityId, NewQueue),
    Post {
        owner: EntityId,
        id: MsgId,
        at: i64,
        body: Vec<u8>,
    },
    Touch(EntityId, i64),
    Charge {
        owner: EntityId,
        credit: i64,
        charge: i64,
        billed_until: i64,
    },
}

#[derive(Debug)]
enum Outcome {
    /// `false`: an id is taken.
    Created(bool),
    Secure(SecureOutcome),
    Found(bool),
    Push(PushOutcome),
    Ack(AckOutcome),
    Count(u64),
    Capacity(Option<Capacity>),
    /// `None`: no such channel.
    Post(Option<PostOutcome>),
    Balance(Option<i64>),
    Done,
}

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

/// A [`QueueStore`] in SQLite or PostgreSQL.
pub struct SqlStore {
    db: Db,
    ops: mpsc::Sender<(Op, Reply)>,
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn i64_of(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} out of range")))
}

fn u64_of(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Backend(format!("stored {what} {v} is negative")))
}

fn arr<const N: usize>(v: Vec<u8>, what: &str) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(v.as_slice())
        .map_err(|_| StoreError::Backend(format!("stored {what} is not {N} bytes")))
}

const QUEUE_COLUMNS: &str = "recipient_id, sender_id, recipient_key, recipient_dh, server_dh, \
                             sender_key, status, quota, created_at, member_of";

fn queue_of(row: &AnyRow) -> Result<Queue, StoreError> {
    let get = |i: usize| row.try_get::<Vec<u8>, _>(i).map_err(be);
    let sender_key: Option<Vec<u8>> = row.try_get(5).map_err(be)?;
    Ok(Queue {
        recipient_id: EntityId(arr(get(0)?, "recipient id")?),
        sender_id: EntityId(arr(get(1)?, "sender id")?),
        recipient_key: arr(get(2)?, "recipient key")?,
        recipient_dh: arr(get(3)?, "recipient DH key")?,
        server_dh: ServerDhSecret(arr(get(4)?, "server DH secret")?),
        sender_key: sender_key.map(|k| arr(k, "sender key")).transpose()?,
        status: match row.try_get::<i64, _>(6).map_err(be)? {
            0 => QueueStatus::Active,
            1 => QueueStatus::Suspended,
            s => return Err(StoreError::Backend(format!("stored queue status {s}"))),
        },
        quota: u32::try_from(row.try_get::<i64, _>(7).map_err(be)?)
            .map_err(|_| StoreError::Backend("stored quota out of range".into()))?,
        created_at: u64_of(row.try_get(8).map_err(be)?, "created_at")?,
        member_of: row
            .try_get::<Option<Vec<u8>>, _>(9)
            .map_err(be)?
            .map(|o| arr(o, "member_of").map(EntityId))
            .transpose()?,
    })
}

const CHANNEL_COLUMNS: &str =
    "owner_id, join_id, owner_key, created_at, balance_units, billed_until";

fn channel_of(row: &AnyRow) -> Result<Channel, StoreError> {
    let get = |i: usize| row.try_get::<Vec<u8>, _>(i).map_err(be);
    Ok(Channel {
        owner_id: EntityId(arr(get(0)?, "owner id")?),
        join_id: EntityId(arr(get(1)?, "join id")?),
        owner_key: arr(get(2)?, "owner key")?,
        created_at: u64_of(row.try_get(3).map_err(be)?, "created_at")?,
        balance_units: row.try_get(4).map_err(be)?,
        billed_until: u64_of(row.try_get(5).map_err(be)?, "billed_until")?,
    })
}

fn quota_of(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Backend("stored quota out of range".into()))
}

impl SqlStore {
    /// Creates the tables if needed and starts the writer task (call within a Tokio runtime).
    pub async fn open(db: Db) -> Result<SqlStore, StoreError> {
        migrate(&db).await?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(db.clone(), rx));
        Ok(SqlStore { db, ops: tx })
    }

    /// The database this store uses.
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn call(&self, op: Op) -> Result<Outcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send((op, tx))
            .await
            .map_err(|_| StoreError::Backend("relay store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("relay store writer stopped".into()))?
    }

    async fn queue_where(&self, column: &str, id: &EntityId) -> Result<Option<Queue>, StoreError> {
        let sql = format!("SELECT {QUEUE_COLUMNS} FROM relay_queues WHERE {column} = $1");
        let row = sqlx::query(&sql)
            .bind(id.0.as_slice())
            .fetch_optional(self.db.pool())
            .await
            .map_err(be)?;
        row.as_ref().map(queue_of).transpose()
    }

    async fn channel_where(
        &self,
        column: &str,
        id: &EntityId,
    ) -> Result<Option<Channel>, StoreError> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM relay_channels WHERE {column} = $1");
        let row = sqlx::query(&sql)
            .bind(id.0.as_slice())
            .fetch_optional(self.db.pool())
            .await
            .map_err(be)?;
        row.as_ref().map(channel_of).transpose()
    }
}

fn unexpected(o: Outcome) -> StoreError {
    StoreError::Backend(format!("relay store writer answered {o:?}"))
}

/// The relay's tables through the one migration runner (sqlx, with checksums) that every
/// smpx database uses.
async fn migrate(db: &Db) -> Result<(), StoreError> {
    db.migrate("relay", MIGRATIONS).await.map_err(be)
}

async fn writer(db: Db, mut rx: mpsc::Receiver<(Op, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        run_batch(&db, &mut batch).await;
    }
}

async fn run_batch(db: &Db, batch: &mut Vec<(Op, Reply)>) {
    // Callers that gave up (their future was dropped) still get their change applied: the
    // same as a transaction whose answer was lost.
    match all_in_one(db, batch).await {
        Ok(outcomes) => {
            for ((_, reply), o) in batch.drain(..).zip(outcomes) {
                let _ = reply.send(Ok(o));
            }
        }
        Err(_) => {
            for (op, reply) in batch.drain(..) {
                let r = one(db, &op).await;
                let _ = reply.send(r);
            }
        }
    }
}

async fn all_in_one(db: &Db, batch: &[(Op, Reply)]) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = db.pool().begin().await.map_err(be)?;
    let mut out = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        out.push(exec(&mut tx, op, db.backend() == Backend::Sqlite).await?);
    }
    tx.commit().await.map_err(be)?;
    Ok(out)
}

async fn one(db: &Db, op: &Op) -> Result<Outcome, StoreError> {
    let mut tx = db.pool().begin().await.map_err(be)?;
    let o = exec(&mut tx, op, db.backend() == Backend::Sqlite).await?;
    tx.commit().await.map_err(be)?;
    Ok(o)
}

async fn exec(
    tx: &mut Transaction<'static, Any>,
    op: &Op,
    sqlite: bool,
) -> Result<Outcome, StoreError> {
    Ok(match op {
        Op::Create(q) => Outcome::Created(insert_queue(tx, q, None).await?),
        Op::Join(join, q) => {
            let owner: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT owner_id FROM relay_channels WHERE join_id = $1")
                    .bind(join.0.as_slice())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(be)?;
            match owner {
                // `Found(false)`: no channel; `Created(_)`: joined, or an id is taken.
                None => Outcome::Found(false),
                Some(owner) => Outcome::Created(insert_queue(tx, q, Some(&owner)).await?),
            }
        }
        Op::CreateChannel(c) => {
            let (oid, jid) = (c.owner_id.0.as_slice(), c.join_id.0.as_slice());
            if taken(tx, oid, jid).await? || oid == jid {
                return Ok(Outcome::Created(false));
            }
            let n = sqlx::query(
                "INSERT INTO relay_channels (owner_id, join_id, owner_key, created_at, \
                 balance_units, billed_until) VALUES ($1, $2, $3, $4, 0, 0) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(oid)
            .bind(jid)
            .bind(c.owner_key.as_slice())
            .bind(i64_of(c.created_at, "created_at")?)
            .execute(&mut **tx)
            .await
            .map_err(be)?
            .rows_affected();
            Outcome::Created(n == 1)
        }
        Op::SetCapacity(rid, c) => {
            // Lock the row on PostgreSQL so the old value returned is the one replaced.
            let sql = if sqlite {
                "SELECT quota, paid_until FROM relay_queues WHERE recipient_id = $1"
            } else {
                "SELECT quota, paid_until FROM relay_queues WHERE recipient_id = $1 FOR UPDATE"
            };
            let row = sqlx::query(sql)
                .bind(rid.0.as_slice())
                .fetch_optional(&mut **tx)
                .await
                .map_err(be)?;
            let Some(row) = row else {
                return Ok(Outcome::Capacity(None));
            };
            let old = Capacity {
                quota: quota_of(row.try_get(0).map_err(be)?)?,
                paid_until: u64_of(row.try_get(1).map_err(be)?, "paid_until")?,
            };
            sqlx::query(
                "UPDATE relay_queues SET quota = $2, paid_until = $3 WHERE recipient_id = $1",
            )
            .bind(rid.0.as_slice())
            .bind(i64::from(c.quota))
            .bind(i64_of(c.paid_until, "paid_until")?)
            .execute(&mut **tx)
            .await
            .map_err(be)?;
            Outcome::Capacity(Some(old))
        }
        Op::ExpireCapacity { now, free_quota } => {
            let n = sqlx::query(
                "UPDATE relay_queues SET quota = $2, paid_until = 0 \
                 WHERE paid_until > 0 AND paid_until < $1",
            )
            .bind(*now)
            .bind(i64::from(*free_quota))
            .execute(&mut **tx)
            .await
            .map_err(be)?
            .rows_affected();
            Outcome::Count(n)
        }
        Op::Post {
            owner,
            id,
            at,
            body,
        } => {
            let o = owner.0.as_slice();
            let exists = sqlx::query("SELECT 1 FROM relay_channels WHERE owner_id = $1")
                .bind(o)
                .fetch_optional(&mut **tx)
                .await
                .map_err(be)?
                .is_some();
            if !exists {
                return Ok(Outcome::Post(None));
            }
            // Full member queues, before any body is added: each gets the marker unless its
            // last message already is one.
            let full: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT recipient_id FROM relay_queues \
                 WHERE member_of = $1 AND status = 0 AND held >= quota",
            )
            .bind(o)
            .fetch_all(&mut **tx)
            .await
            .map_err(be)?;
            if !full.is_empty() {
                sqlx::query(
                    "INSERT INTO relay_messages (recipient_id, msg_id, at, kind, body) \
                     SELECT q.recipient_id, $2, $3, 1, NULL FROM relay_queues q \
                     WHERE q.member_of = $1 AND q.status = 0 AND q.held >= q.quota \
                     AND COALESCE((SELECT m.kind FROM relay_messages m \
                     WHERE m.recipient_id = q.recipient_id ORDER BY m.seq DESC LIMIT 1), 0) <> 1",
                )
                .bind(o)
                .bind(id.0.as_slice())
                .bind(*at)
                .execute(&mut **tx)
                .await
                .map_err(be)?;
            }
            let sql = if sqlite {
                // The trigger counts each body in `held`.
                "INSERT INTO relay_messages (recipient_id, msg_id, at, kind, body) \
                 SELECT recipient_id, $2, $3, 0, $4 FROM relay_queues \
                 WHERE member_of = $1 AND status = 0 AND held < quota RETURNING recipient_id"
            } else {
                "WITH acc AS (UPDATE relay_queues SET held = held + 1 \
                 WHERE member_of = $1 AND status = 0 AND held < quota RETURNING recipient_id) \
                 INSERT INTO relay_messages (recipient_id, msg_id, at, kind, body) \
                 SELECT recipient_id, $2, $3, 0, $4 FROM acc RETURNING recipient_id"
            };
            let delivered: Vec<Vec<u8>> = sqlx::query_scalar(sql)
                .bind(o)
                .bind(id.0.as_slice())
                .bind(*at)
                .bind(body.as_slice())
                .fetch_all(&mut **tx)
                .await
                .map_err(be)?;
            let ids = |v: Vec<Vec<u8>>| -> Result<Vec<EntityId>, StoreError> {
                let mut v = v
                    .into_iter()
                    .map(|r| arr(r, "recipient id").map(EntityId))
                    .collect::<Result<Vec<_>, _>>()?;
                v.sort_unstable();
                Ok(v)
            };
            Outcome::Post(Some(PostOutcome {
                delivered: ids(delivered)?,
                over_quota: ids(full)?,
            }))
        }
        Op::Touch(rid, at) => {
            sqlx::query(
                "UPDATE relay_queues SET last_active = $2 WHERE recipient_id = $1 \
                 AND member_of IS NOT NULL AND last_active / 86400 < $2 / 86400",
            )
            .bind(rid.0.as_slice())
            .bind(*at)
            .execute(&mut **tx)
            .await
            .map_err(be)?;
            Outcome::Done
        }
        Op::Charge {
            owner,
            credit,
            charge,
            billed_until,
        } => {
            let b: Option<i64> = sqlx::query_scalar(
                "UPDATE relay_channels SET balance_units = balance_units + $2 - $3, \
                 billed_until = $4 WHERE owner_id = $1 RETURNING balance_units",
            )
            .bind(owner.0.as_slice())
            .bind(*credit)
            .bind(*charge)
            .bind(*billed_until)
            .fetch_optional(&mut **tx)
            .await
            .map_err(be)?;
            Outcome::Balance(b)
        }
        Op::Secure(rid, key) => {
            let n = sqlx::query(
                "UPDATE relay_queues SET sender_key = $2 WHERE recipient_id = $1 \
                 AND sender_key IS NULL",
            )
            .bind(rid.0.as_slice())
            .bind(key.as_slice())
            .execute(&mut **tx)
            .await
            .map_err(be)?
            .rows_affected();
            if n == 1 {
                return Ok(Outcome::Secure(SecureOutcome::Secured));
            }
            let row = sqlx::query("SELECT sender_key FROM relay_queues WHERE recipient_id = $1")
                .bind(rid.0.as_slice())
                .fetch_optional(&mut **tx)
                .await
                .map_err(be)?;
            Outcome::Secure(match row {
                None => SecureOutcome::NoQueue,
                Some(row) => {
                    let k: Option<Vec<u8>> = row.try_get(0).map_err(be)?;
                    if k.as_deref() == Some(key.as_slice()) {
                        SecureOutcome::AlreadySecuredSame
                    } else {
                        SecureOutcome::AlreadySecuredOther
                    }
                }
            })
        }
        Op::Suspend(rid) => {
            let n = sqlx::query("UPDATE relay_queues SET status = 1 WHERE recipient_id = $1")
                .bind(rid.0.as_slice())
                .execute(&mut **tx)
                .await
                .map_err(be)?
                .rows_affected();
            Outcome::Found(n == 1)
        }
        Op::Delete(rid) => {
            sqlx::query("DELETE FROM relay_messages WHERE recipient_id = $1")
                .bind(rid.0.as_slice())
                .execute(&mut **tx)
                .await
                .map_err(be)?;
            let n = sqlx::query("DELETE FROM relay_queues WHERE recipient_id = $1")
                .bind(rid.0.as_slice())
                .execute(&mut **tx)
                .await
                .map_err(be)?
                .rows_affected();
            Outcome::Found(n == 1)
        }
        Op::Push { sid, id, at, body } if sqlite => {
            // The trigger counts the body in `held`.
            let n = sqlx::query(
                "INSERT INTO relay_messages (recipient_id, msg_id, at, kind, body) \
                 SELECT recipient_id, $2, $3, 0, $4 FROM relay_queues \
                 WHERE sender_id = $1 AND status = 0 AND held < quota",
            )
            .bind(sid.0.as_slice())
            .bind(id.0.as_slice())
            .bind(*at)
            .bind(body.as_slice())
            .execute(&mut **tx)
            .await
            .map_err(be)?
            .rows_affected();
            if n == 1 {
                return Ok(Outcome::Push(PushOutcome::Accepted));
            }
            refused_push(tx, sid, id, *at).await?
        }
        Op::Push { sid, id, at, body } => {
            let rid: Option<Vec<u8>> = sqlx::query_scalar(
                "UPDATE relay_queues SET held = held + 1 WHERE sender_id = $1 AND status = 0 \
                 AND held < quota RETURNING recipient_id",
            )
            .bind(sid.0.as_slice())
            .fetch_optional(&mut **tx)
            .await
            .map_err(be)?;
            if let Some(rid) = rid {
                insert_message(tx, &rid, id, *at, Some(body)).await?;
                return Ok(Outcome::Push(PushOutcome::Accepted));
            }
            refused_push(tx, sid, id, *at).await?
        }
        Op::Ack(rid, id) => {
            let kind: Option<i64> = sqlx::query_scalar(
                "DELETE FROM relay_messages WHERE seq = (SELECT seq FROM relay_messages \
                 WHERE recipient_id = $1 ORDER BY seq LIMIT 1) AND msg_id = $2 RETURNING kind",
            )
            .bind(rid.0.as_slice())
            .bind(id.0.as_slice())
            .fetch_optional(&mut **tx)
            .await
            .map_err(be)?;
            match kind {
                Some(k) => {
                    // On SQLite the trigger does it.
                    if k == 0 && !sqlite {
                        sqlx::query(
                            "UPDATE relay_queues SET held = held - 1 WHERE recipient_id = $1",
                        )
                        .bind(rid.0.as_slice())
                        .execute(&mut **tx)
                        .await
                        .map_err(be)?;
                    }
                    Outcome::Ack(AckOutcome::Acked)
                }
                None => {
                    let exists = sqlx::query("SELECT 1 FROM relay_queues WHERE recipient_id = $1")
                        .bind(rid.0.as_slice())
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(be)?
                        .is_some();
                    Outcome::Ack(if exists {
                        AckOutcome::NoMessage
                    } else {
                        AckOutcome::NoQueue
                    })
                }
            }
        }
        Op::Expire(before) => {
            // On SQLite the trigger does it.
            if !sqlite {
                sqlx::query(
                    "UPDATE relay_queues SET held = held - (SELECT COUNT(*) FROM relay_messages m \
                 WHERE m.recipient_id = relay_queues.recipient_id AND m.kind = 0 AND m.at < $1) \
                 WHERE recipient_id IN (SELECT recipient_id FROM relay_messages \
                 WHERE kind = 0 AND at < $1)",
                )
                .bind(*before)
                .execute(&mut **tx)
                .await
                .map_err(be)?;
            }
            let n = sqlx::query("DELETE FROM relay_messages WHERE at < $1")
                .bind(*before)
                .execute(&mut **tx)
                .await
                .map_err(be)?
                .rows_affected();
            Outcome::Count(n)
        }
    })
}

/// Whether either id is used by a queue (recipient or sender id) or a channel (owner or join
/// id). One statement.
async fn taken(tx: &mut Transaction<'static, Any>, a: &[u8], b: &[u8]) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM relay_queues WHERE recipient_id = $1 OR sender_id = $1 \
         OR recipient_id = $2 OR sender_id = $2) + (SELECT COUNT(*) FROM relay_channels \
         WHERE owner_id = $1 OR join_id = $1 OR owner_id = $2 OR join_id = $2)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(&mut **tx)
    .await
    .map_err(be)?;
    Ok(n > 0)
}

/// Creates a queue (a member queue of the channel `member_of` if given); `false` when an id
/// is taken.
async fn insert_queue(
    tx: &mut Transaction<'static, Any>,
    q: &NewQueue,
    member_of: Option<&[u8]>,
) -> Result<bool, StoreError> {
    let rid = q.recipient_id.0.as_slice();
    let sid = q.sender_id.0.as_slice();
    if taken(tx, rid, sid).await? || rid == sid {
        return Ok(false);
    }
    let created_at = i64_of(q.created_at, "created_at")?;
    let n = sqlx::query(
        "INSERT INTO relay_queues (recipient_id, sender_id, recipient_key, recipient_dh, \
         server_dh, sender_key, status, quota, held, created_at, member_of, last_active) \
         VALUES ($1, $2, $3, $4, $5, NULL, 0, $6, 0, $7, $8, $7) ON CONFLICT DO NOTHING",
    )
    .bind(rid)
    .bind(sid)
    .bind(q.recipient_key.as_slice())
    .bind(q.recipient_dh.as_slice())
    .bind(q.server_dh.0.as_slice())
    .bind(i64::from(q.quota))
    .bind(created_at)
    .bind(member_of)
    .execute(&mut **tx)
    .await
    .map_err(be)?
    .rows_affected();
    Ok(n == 1)
}

/// Why a push was refused; stores the marker if the queue is full and does not end with one.
async fn refused_push(
    tx: &mut Transaction<'static, Any>,
    sid: &EntityId,
    id: &MsgId,
    at: i64,
) -> Result<Outcome, StoreError> {
    let row = sqlx::query("SELECT recipient_id, status FROM relay_queues WHERE sender_id = $1")
        .bind(sid.0.as_slice())
        .fetch_optional(&mut **tx)
        .await
        .map_err(be)?;
    let Some(row) = row else {
        return Ok(Outcome::Push(PushOutcome::NoQueue));
    };
    if row.try_get::<i64, _>(1).map_err(be)? != 0 {
        return Ok(Outcome::Push(PushOutcome::Suspended));
    }
    let rid: Vec<u8> = row.try_get(0).map_err(be)?;
    let last: Option<i64> = sqlx::query_scalar(
        "SELECT kind FROM relay_messages WHERE recipient_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(rid.as_slice())
    .fetch_optional(&mut **tx)
    .await
    .map_err(be)?;
    if last != Some(1) {
        insert_message(tx, &rid, id, at, None).await?;
    }
    Ok(Outcome::Push(PushOutcome::QuotaExceeded))
}

async fn insert_message(
    tx: &mut Transaction<'static, Any>,
    rid: &[u8],
    id: &MsgId,
    at: i64,
    body: Option<&Vec<u8>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO relay_messages (recipient_id, msg_id, at, kind, body) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(rid)
    .bind(id.0.as_slice())
    .bind(at)
    .bind(if body.is_some() { 0i64 } else { 1 })
    .bind(body.map(|b| b.as_slice()))
    .execute(&mut **tx)
    .await
    .map_err(be)?;
    Ok(())
}

#[async_trait::async_trait]
impl QueueStore for SqlStore {
    async fn create(&self, q: NewQueue) -> Result<(), StoreError> {
        match self.call(Op::Create(q)).await? {
            Outcome::Created(true) => Ok(()),
            Outcome::Created(false) => Err(StoreError::DuplicateId),
            o => Err(unexpected(o)),
        }
    }

    async fn by_recipient(&self, id: &EntityId) -> Result<Option<Queue>, StoreError> {
        self.queue_where("recipient_id", id).await
    }

    async fn by_sender(&self, id: &EntityId) -> Result<Option<Queue>, StoreError> {
        self.queue_where("sender_id", id).await
    }

    async fn secure(&self, rid: &EntityId, key: [u8; 32]) -> Result<SecureOutcome, StoreError> {
        match self.call(Op::Secure(*rid, key)).await? {
            Outcome::Secure(s) => Ok(s),
            o => Err(unexpected(o)),
        }
    }

    async fn suspend(&self, rid: &EntityId) -> Result<bool, StoreError> {
        match self.call(Op::Suspend(*rid)).await? {
            Outcome::Found(f) => Ok(f),
            o => Err(unexpected(o)),
        }
    }

    async fn delete(&self, rid: &EntityId) -> Result<bool, StoreError> {
        match self.call(Op::Delete(*rid)).await? {
            Outcome::Found(f) => Ok(f),
            o => Err(unexpected(o)),
        }
    }

    async fn push(
        &self,
        sid: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<PushOutcome, StoreError> {
        let at = i64_of(at, "message time")?;
        match self
            .call(Op::Push {
                sid: *sid,
                id,
                at,
                body,
            })
            .await?
        {
            Outcome::Push(p) => Ok(p),
            o => Err(unexpected(o)),
        }
    }

    async fn peek(&self, rid: &EntityId) -> Result<Option<Message>, StoreError> {
        let row = sqlx::query(
            "SELECT msg_id, at, body FROM relay_messages WHERE recipient_id = $1 \
             ORDER BY seq LIMIT 1",
        )
        .bind(rid.0.as_slice())
        .fetch_optional(self.db.pool())
        .await
        .map_err(be)?;
        let Some(row) = row else { return Ok(None) };
        let body: Option<Vec<u8>> = row.try_get(2).map_err(be)?;
        Ok(Some(Message {
            id: MsgId(arr(row.try_get(0).map_err(be)?, "message id")?),
            at: u64_of(row.try_get(1).map_err(be)?, "message time")?,
            kind: match body {
                Some(b) => MessageKind::Body(b),
                None => MessageKind::QuotaExceeded,
            },
        }))
    }

    async fn ack(&self, rid: &EntityId, id: &MsgId) -> Result<AckOutcome, StoreError> {
        match self.call(Op::Ack(*rid, *id)).await? {
            Outcome::Ack(a) => Ok(a),
            o => Err(unexpected(o)),
        }
    }

    async fn expire(&self, before: UnixTime) -> Result<u64, StoreError> {
        // Times past i64::MAX expire everything stored.
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        match self.call(Op::Expire(before)).await? {
            Outcome::Count(n) => Ok(n),
            o => Err(unexpected(o)),
        }
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let pool = self.db.pool();
        let queues: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM relay_queues")
            .fetch_one(pool)
            .await
            .map_err(be)?;
        let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM relay_messages")
            .fetch_one(pool)
            .await
            .map_err(be)?;
        Ok(StoreStats {
            queues: u64_of(queues, "count")?,
            messages: u64_of(messages, "count")?,
        })
    }

    async fn set_capacity(
        &self,
        rid: &EntityId,
        capacity: Capacity,
    ) -> Result<Option<Capacity>, StoreError> {
        i64_of(capacity.paid_until, "paid_until")?;
        match self.call(Op::SetCapacity(*rid, capacity)).await? {
            Outcome::Capacity(c) => Ok(c),
            o => Err(unexpected(o)),
        }
    }

    async fn capacity(&self, rid: &EntityId) -> Result<Option<Capacity>, StoreError> {
        let row = sqlx::query("SELECT quota, paid_until FROM relay_queues WHERE recipient_id = $1")
            .bind(rid.0.as_slice())
            .fetch_optional(self.db.pool())
            .await
            .map_err(be)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Capacity {
            quota: quota_of(row.try_get(0).map_err(be)?)?,
            paid_until: u64_of(row.try_get(1).map_err(be)?, "paid_until")?,
        }))
    }

    async fn expire_capacity(&self, now: UnixTime, free_quota: u32) -> Result<u64, StoreError> {
        // Times past i64::MAX end every paid capacity.
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        match self.call(Op::ExpireCapacity { now, free_quota }).await? {
            Outcome::Count(n) => Ok(n),
            o => Err(unexpected(o)),
        }
    }

    async fn create_channel(&self, channel: NewChannel) -> Result<(), StoreError> {
        match self.call(Op::CreateChannel(channel)).await? {
            Outcome::Created(true) => Ok(()),
            Outcome::Created(false) => Err(StoreError::DuplicateId),
            o => Err(unexpected(o)),
        }
    }

    async fn channel_by_owner(&self, owner: &EntityId) -> Result<Option<Channel>, StoreError> {
        self.channel_where("owner_id", owner).await
    }

    async fn channel_by_join(&self, join: &EntityId) -> Result<Option<Channel>, StoreError> {
        self.channel_where("join_id", join).await
    }

    async fn join_channel(&self, join: &EntityId, member: NewQueue) -> Result<bool, StoreError> {
        match self.call(Op::Join(*join, member)).await? {
            Outcome::Created(true) => Ok(true),
            Outcome::Created(false) => Err(StoreError::DuplicateId),
            Outcome::Found(false) => Ok(false),
            o => Err(unexpected(o)),
        }
    }

    async fn post(
        &self,
        owner: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<Option<PostOutcome>, StoreError> {
        let at = i64_of(at, "message time")?;
        match self
            .call(Op::Post {
                owner: *owner,
                id,
                at,
                body,
            })
            .await?
        {
            Outcome::Post(p) => Ok(p),
            o => Err(unexpected(o)),
        }
    }

    async fn touch(&self, rid: &EntityId, at: UnixTime) -> Result<(), StoreError> {
        let at = i64_of(at, "activity time")?;
        // Most touches change nothing: a read on the pool, not a change for the writer.
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT last_active FROM relay_queues WHERE recipient_id = $1 \
             AND member_of IS NOT NULL",
        )
        .bind(rid.0.as_slice())
        .fetch_optional(self.db.pool())
        .await
        .map_err(be)?;
        match last {
            Some(last) if at / 86_400 > last / 86_400 => {}
            _ => return Ok(()),
        }
        match self.call(Op::Touch(*rid, at)).await? {
            Outcome::Done => Ok(()),
            o => Err(unexpected(o)),
        }
    }

    async fn channel_usage(
        &self,
        owner: &EntityId,
        active_since: UnixTime,
    ) -> Result<Option<ChannelUsage>, StoreError> {
        let pool = self.db.pool();
        let o = owner.0.as_slice();
        let exists = sqlx::query("SELECT 1 FROM relay_channels WHERE owner_id = $1")
            .bind(o)
            .fetch_optional(pool)
            .await
            .map_err(be)?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let since = i64::try_from(active_since).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN last_active >= $2 THEN 1 ELSE 0 END), 0) \
             AS BIGINT) FROM relay_queues WHERE member_of = $1",
        )
        .bind(o)
        .bind(since)
        .fetch_one(pool)
        .await
        .map_err(be)?;
        let bytes: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(length(m.body)), 0) AS BIGINT) FROM relay_messages m \
             JOIN relay_queues q ON m.recipient_id = q.recipient_id \
             WHERE q.member_of = $1 AND m.kind = 0",
        )
        .bind(o)
        .fetch_one(pool)
        .await
        .map_err(be)?;
        Ok(Some(ChannelUsage {
            members: u64_of(row.try_get(0).map_err(be)?, "count")?,
            active: u64_of(row.try_get(1).map_err(be)?, "count")?,
            stored_bytes: u64_of(bytes, "bytes")?,
        }))
    }

    async fn charge_channel(
        &self,
        owner: &EntityId,
        credit_units: u64,
        charge_units: u64,
        billed_until: UnixTime,
    ) -> Result<Option<i64>, StoreError> {
        let op = Op::Charge {
            owner: *owner,
            credit: i64_of(credit_units, "credit")?,
            charge: i64_of(charge_units, "charge")?,
            billed_until: i64_of(billed_until, "billed_until")?,
        };
        match self.call(op).await? {
            Outcome::Balance(b) => Ok(b),
            o => Err(unexpected(o)),
        }
    }
}
