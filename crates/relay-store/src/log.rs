//! The fast backend: everything held in memory (the [`crate::memory`] index) plus an
//! append-only log of every change, replayed when the store is opened.
//!
//! # Log file format
//!
//! One file (`<path>`, mode 0600: it holds the relays' per-queue DH secrets). It starts with
//! the 8 magic bytes `SMPXLOG1`, followed by records:
//!
//! ```text
//! offset 0  u32 LE  len      length of the payload, 1 ..= 16 MiB + 57
//! offset 4  u32 LE  crc      CRC-32/ISO-HDLC (the zlib/Ethernet CRC-32) of the 4 `len`
//!                            bytes followed by the payload
//! offset 8  payload          u8 tag, then the fields of that record (integers little-endian,
//!                            ids 24 bytes, keys 32 bytes):
//!   1 create   recipient id, sender id, recipient key, recipient DH key, server DH secret,
//!              quota u32, created_at u64                                   (157 bytes)
//!   2 secure   recipient id, sender key                                    (57 bytes)
//!   3 suspend  recipient id                                                (25 bytes)
//!   4 delete   recipient id                                                (25 bytes)
//!   5 push     recipient id, message id, at u64, body (the rest of the payload)
//!   6 marker   recipient id, message id, at u64 (the quota marker)         (57 bytes)
//!   7 ack      recipient id, message id (replay checks it is the head)     (49 bytes)
//!   8 expire   before u64 (replay drops the same messages)                 (9 bytes)
//!   9 capacity recipient id, quota u32, paid_until u64 (0: free)            (37 bytes)
//!  10 uncap    now u64, free quota u32 (replay gives the same queues the free
//!              quota back: `expire_capacity`)                              (13 bytes)
//!  11 channel  owner id, join id, owner key, created_at u64                (89 bytes)
//!  12 join     owner id, then the fields of `create` (a member queue; its last
//!              active time starts at created_at)                           (181 bytes)
//!  13 post     owner id, message id, at u64, body (the rest of the payload); replay
//!              repeats the decisions: a body or a marker in each member queue, in
//!              recipient id order, as `push` would
//!  14 touch    recipient id (a member queue), at u64; written only when the day of
//!              the last active time changes                                (33 bytes)
//!  15 charge   owner id, credit u64, charge u64, billed_until u64
//!              (`charge_channel`)                                          (49 bytes)
//! ```
//!
//! Only changes are logged (a refused push or a wrong ack writes nothing; a post that finds
//! every member queue full with the marker already in place, or no member at all, writes
//! nothing). Replaying the records in order from an empty index rebuilds the index exactly;
//! a record that does not apply (a push to an unknown queue, an ack of a message that is not
//! the head, a join or post to an unknown channel) is corruption.
//!
//! # Opening: torn tails and corruption
//!
//! [`LogStore::open`] reads the whole file. The first record that cannot be read — fewer than
//! 8 header bytes left, a length past the end of the file, a zero or oversized length, or a
//! checksum mismatch — is a **torn tail** when nothing valid can follow it: the record would
//! end at or past the end of the file, or every byte from it to the end is zero (space a
//! crash allocated but never wrote). A torn tail is truncated (and the truncation synced):
//! it is a write that never returned, so no caller was told it succeeded. Anything else — a
//! bad record followed by more data, a record that does not apply, a bad magic — is
//! [`LogError::Corrupt`] with its offset: nothing is silently dropped and the store does not
//! open.
//!
//! # Durability
//!
//! Every mutating method applies its change to the index and appends its record to a
//! buffer under one lock (so the log order is the order of the changes), then returns only
//! once the log is durable up to and including its record — and also up to everything
//! appended before it decided, so an outcome that depends on an earlier change (say
//! `Suspended`) is never based on a change that could be lost. Writing is group commit: one
//! caller at a time becomes the writer and writes everything buffered with one `write(2)`;
//! the others wait for it. What "durable" means is the [`FsyncPolicy`]:
//!
//! * [`FsyncPolicy::Never`] (the default): the record has been written with `write(2)`. It
//!   survives the process being killed (SIGKILL, panic, OOM), because the kernel holds it;
//!   a power loss or kernel crash may lose the last few seconds. This is the same guarantee
//!   as the SQL backend's SQLite in WAL mode with `synchronous=NORMAL`.
//! * [`FsyncPolicy::Batch`]: write then `fdatasync(2)`; concurrent callers share one
//!   `fdatasync` (group commit). Survives power loss.
//! * [`FsyncPolicy::Every`]: every record gets its own `fdatasync` (records are still written
//!   in order by one writer). Survives power loss; the slowest, for comparison.
//!
//! Reads (`peek`, `by_recipient`, `by_sender`, `stats`) answer from the index without
//! waiting: they may show a change whose caller is still waiting for it to become durable.
//! A crash then recovers a *prefix* of the change order that contains every change whose
//! caller got an answer — for example a message peeked (and delivered) but not yet durable
//! may be lost with its sender never having been told it was accepted, so the sender retries.
//!
//! After a failed write the store refuses every further call (the index may hold changes
//! the log does not); reopening replays what the log holds.
//!
//! # Compaction
//!
//! When the log is larger than [`LogOptions::compact_factor`] × an estimate of the live state
//! (and at least [`LogOptions::compact_min_bytes`]), a background task rewrites it: under the
//! index lock it serialises the live state as records (each channel as `channel` and a
//! `charge` setting its balance; then each queue as `create` or, for a member queue, `join`,
//! then `capacity` if it is paid, `touch` if its member was active since joining, `secure`,
//! `suspend`, and a `push`/`marker` per held message) after flushing the buffer; it writes them to
//! `<path>.compact` without any lock while writers keep appending to the old log; then,
//! holding the writer role (writers wait, the index does not), it copies the records the
//! old log received meanwhile, `fsync`s the new file, renames it over the log and `fsync`s
//! the directory. A crash at any point leaves either the old or the new log, both complete;
//! a leftover `<path>.compact` is deleted on open. Pauses: the index is locked while the live
//! state is serialised in memory; writers wait while the tail is copied and synced.
//!
//! One process at a time may open a log file (not checked).

use crate::memory::{PushDecision, State};
use smpx_core::UnixTime;
use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_server::store::*;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The first 8 bytes of every log file.
pub const MAGIC: &[u8; 8] = b"SMPXLOG1";
/// The largest body a push may carry.
pub const MAX_BODY: usize = 16 << 20;
const HEADER: usize = 8;
const MAX_PAYLOAD: usize = MAX_BODY + 57;

const T_CREATE: u8 = 1;
const T_SECURE: u8 = 2;
const T_SUSPEND: u8 = 3;
const T_DELETE: u8 = 4;
const T_PUSH: u8 = 5;
const T_MARKER: u8 = 6;
const T_ACK: u8 = 7;
const T_EXPIRE: u8 = 8;
const T_CAPACITY: u8 = 9;
const T_UNCAP: u8 = 10;
const T_CHANNEL: u8 = 11;
const T_JOIN: u8 = 12;
const T_POST: u8 = 13;
const T_TOUCH: u8 = 14;
const T_CHARGE: u8 = 15;

const CREATE_LEN: usize = 157;
const SECURE_LEN: usize = 57;
const PUSH_FIXED: usize = 57;
const CHANNEL_LEN: usize = 89;
const CHARGE_LEN: usize = 49;
const JOIN_LEN: usize = 181;
const TOUCH_LEN: usize = 33;
const CAPACITY_LEN: usize = 37;

const CRC: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// When the log is synced to stable storage; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `write(2)` only: survives the process being killed, not a power loss.
    #[default]
    Never,
    /// Group commit: one `fdatasync` shared by every caller waiting at the time.
    Batch,
    /// One `fdatasync` per record.
    Every,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(FsyncPolicy::Never),
            "batch" => Ok(FsyncPolicy::Batch),
            "every" => Ok(FsyncPolicy::Every),
            _ => Err(format!(
                "fsync policy {s:?}: expected never, batch or every"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LogOptions {
    pub fsync: FsyncPolicy,
    /// Compact when the log exceeds this many times the live state (default 4).
    pub compact_factor: u64,
    /// … and is at least this large (default 64 MiB).
    pub compact_min_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            fsync: FsyncPolicy::default(),
            compact_factor: 4,
            compact_min_bytes: 64 << 20,
        }
    }
}

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A record in the middle of the log is damaged or does not apply: the store refuses to
    /// open rather than drop data.
    #[error("log {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl From<LogError> for StoreError {
    fn from(e: LogError) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

/// What [`LogStore::open`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records replayed.
    pub records: u64,
    /// Bytes of torn tail truncated (0 after a clean shutdown).
    pub truncated: u64,
}

struct Locked {
    st: State,
    /// Records appended but not yet handed to the writer.
    pending: Vec<u8>,
    /// Logical position after the last appended record (bytes appended since open).
    appended: u64,
}

struct Io {
    file: Arc<File>,
    /// Physical length of the log file.
    len: u64,
}

struct Shared {
    path: PathBuf,
    opts: LogOptions,
    locked: Mutex<Locked>,
    io: tokio::sync::Mutex<Io>,
    /// Logical position up to which the log is durable (per the policy).
    durable: tokio::sync::watch::Sender<u64>,
    failed: OnceLock<String>,
    compacting: AtomicBool,
    /// Do not try compacting again before the log reaches this length (after a failure).
    compact_retry_at: AtomicU64,
    log_len: AtomicU64,
}

/// A [`QueueStore`] held in memory and logged to an append-only file.
#[derive(Clone)]
pub struct LogStore {
    sh: Arc<Shared>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("log {}: {e}", path.display()))
}

fn compact_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".compact");
    PathBuf::from(p)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

// ---------------------------------------------------------------------------------------
// Encoding

fn begin(buf: &mut Vec<u8>, tag: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    buf.push(tag);
    start
}

fn finish(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start - HEADER) as u32;
    let len_bytes = len.to_le_bytes();
    let mut d = CRC.digest();
    d.update(&len_bytes);
    d.update(&buf[start + HEADER..]);
    let crc = d.finalize();
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// `create`, or `join` for a member queue.
fn enc_create(buf: &mut Vec<u8>, q: &Queue) {
    let s = match &q.member_of {
        None => begin(buf, T_CREATE),
        Some(owner) => {
            let s = begin(buf, T_JOIN);
            buf.extend_from_slice(&owner.0);
            s
        }
    };
    buf.extend_from_slice(&q.recipient_id.0);
    buf.extend_from_slice(&q.sender_id.0);
    buf.extend_from_slice(&q.recipient_key);
    buf.extend_from_slice(&q.recipient_dh);
    buf.extend_from_slice(&q.server_dh.0);
    buf.extend_from_slice(&q.quota.to_le_bytes());
    buf.extend_from_slice(&q.created_at.to_le_bytes());
    finish(buf, s);
}

fn enc_id_key(buf: &mut Vec<u8>, tag: u8, rid: &EntityId, key: &[u8]) {
    let s = begin(buf, tag);
    buf.extend_from_slice(&rid.0);
    buf.extend_from_slice(key);
    finish(buf, s);
}

fn enc_msg(buf: &mut Vec<u8>, rid: &EntityId, id: &MsgId, at: UnixTime, body: Option<&[u8]>) {
    let s = begin(buf, if body.is_some() { T_PUSH } else { T_MARKER });
    buf.extend_from_slice(&rid.0);
    buf.extend_from_slice(&id.0);
    buf.extend_from_slice(&at.to_le_bytes());
    if let Some(b) = body {
        buf.extend_from_slice(b);
    }
    finish(buf, s);
}

fn enc_expire(buf: &mut Vec<u8>, before: UnixTime) {
    let s = begin(buf, T_EXPIRE);
    buf.extend_from_slice(&before.to_le_bytes());
    finish(buf, s);
}

fn enc_capacity(buf: &mut Vec<u8>, rid: &EntityId, c: Capacity) {
    let s = begin(buf, T_CAPACITY);
    buf.extend_from_slice(&rid.0);
    buf.extend_from_slice(&c.quota.to_le_bytes());
    buf.extend_from_slice(&c.paid_until.to_le_bytes());
    finish(buf, s);
}

fn enc_uncap(buf: &mut Vec<u8>, now: UnixTime, free_quota: u32) {
    let s = begin(buf, T_UNCAP);
    buf.extend_from_slice(&now.to_le_bytes());
    buf.extend_from_slice(&free_quota.to_le_bytes());
    finish(buf, s);
}

fn enc_channel(buf: &mut Vec<u8>, c: &Channel) {
    let s = begin(buf, T_CHANNEL);
    buf.extend_from_slice(&c.owner_id.0);
    buf.extend_from_slice(&c.join_id.0);
    buf.extend_from_slice(&c.owner_key);
    buf.extend_from_slice(&c.created_at.to_le_bytes());
    finish(buf, s);
}

fn enc_post(buf: &mut Vec<u8>, owner: &EntityId, id: &MsgId, at: UnixTime, body: &[u8]) {
    let s = begin(buf, T_POST);
    buf.extend_from_slice(&owner.0);
    buf.extend_from_slice(&id.0);
    buf.extend_from_slice(&at.to_le_bytes());
    buf.extend_from_slice(body);
    finish(buf, s);
}

fn enc_touch(buf: &mut Vec<u8>, rid: &EntityId, at: UnixTime) {
    let s = begin(buf, T_TOUCH);
    buf.extend_from_slice(&rid.0);
    buf.extend_from_slice(&at.to_le_bytes());
    finish(buf, s);
}

fn enc_charge(buf: &mut Vec<u8>, owner: &EntityId, credit: u64, charge: u64, until: UnixTime) {
    let s = begin(buf, T_CHARGE);
    buf.extend_from_slice(&owner.0);
    buf.extend_from_slice(&credit.to_le_bytes());
    buf.extend_from_slice(&charge.to_le_bytes());
    buf.extend_from_slice(&until.to_le_bytes());
    finish(buf, s);
}

/// The live state as records (what compaction writes after the magic).
fn snapshot(st: &State) -> Vec<u8> {
    let mut buf = Vec::with_capacity(live_estimate(st) as usize);
    // Channels first: member queues name them.
    for c in st.channels.values() {
        let c = &c.channel;
        enc_channel(&mut buf, c);
        if c.balance_units != 0 || c.billed_until != 0 {
            let b = c.balance_units;
            let (credit, charge) = if b >= 0 {
                (b.unsigned_abs(), 0)
            } else {
                (0, b.unsigned_abs())
            };
            enc_charge(&mut buf, &c.owner_id, credit, charge, c.billed_until);
        }
    }
    for e in st.queues.values() {
        let q = &e.queue;
        enc_create(&mut buf, q);
        if let Some(c) = st.capacity(&q.recipient_id).filter(|c| c.paid_until != 0) {
            enc_capacity(&mut buf, &q.recipient_id, c);
        }
        if let Some(at) = st
            .last_active(&q.recipient_id)
            .filter(|at| *at != q.created_at)
        {
            enc_touch(&mut buf, &q.recipient_id, at);
        }
        if let Some(k) = &q.sender_key {
            enc_id_key(&mut buf, T_SECURE, &q.recipient_id, k);
        }
        if q.status == QueueStatus::Suspended {
            enc_id_key(&mut buf, T_SUSPEND, &q.recipient_id, &[]);
        }
        for m in &e.messages {
            enc_msg(&mut buf, &q.recipient_id, &m.id, m.at, m.body.as_deref());
        }
    }
    buf
}

/// An upper estimate of [`snapshot`]'s size.
fn live_estimate(st: &State) -> u64 {
    let per_queue = (2 * HEADER + CREATE_LEN + SECURE_LEN) as u64;
    let per_channel = (2 * HEADER + CHANNEL_LEN + CHARGE_LEN) as u64;
    // Member queues: `join` is longer than `create`, and may come with a `touch`.
    let per_member = (HEADER + JOIN_LEN - CREATE_LEN + TOUCH_LEN) as u64;
    let members: u64 = st.channels.values().map(|c| c.members.len() as u64).sum();
    st.queues.len() as u64 * per_queue
        + st.paid.len() as u64 * (HEADER + CAPACITY_LEN) as u64
        + st.channels.len() as u64 * per_channel
        + members * per_member
        + st.messages * (HEADER + PUSH_FIXED) as u64
        + st.body_bytes
}

// ---------------------------------------------------------------------------------------
// Decoding and replay

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.0.len() < N {
            return Err("record too short".into());
        }
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        let mut out = [0u8; N];
        out.copy_from_slice(a);
        Ok(out)
    }
    fn id(&mut self) -> Result<EntityId, String> {
        self.take::<24>().map(EntityId)
    }
    fn msg(&mut self) -> Result<MsgId, String> {
        self.take::<24>().map(MsgId)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("record too long".into())
        }
    }
}

fn apply(st: &mut State, payload: &[u8]) -> Result<(), String> {
    let (&tag, rest) = payload.split_first().ok_or("empty record")?;
    let mut r = Reader(rest);
    match tag {
        T_CREATE | T_JOIN => {
            let owner = if tag == T_JOIN { Some(r.id()?) } else { None };
            let q = NewQueue {
                recipient_id: r.id()?,
                sender_id: r.id()?,
                recipient_key: r.take()?,
                recipient_dh: r.take()?,
                server_dh: ServerDhSecret(r.take()?),
                quota: u32::from_le_bytes(r.take()?),
                created_at: r.u64()?,
            };
            r.end()?;
            match owner {
                None => st
                    .create(q)
                    .map_err(|_| "create of an existing id".to_string()),
                Some(owner) => st.join_owner(owner, q).map_err(|e| match e {
                    StoreError::DuplicateId => "join with an existing id".to_string(),
                    e => e.to_string(),
                }),
            }
        }
        T_CAPACITY => {
            let rid = r.id()?;
            let c = Capacity {
                quota: r.u32()?,
                paid_until: r.u64()?,
            };
            r.end()?;
            st.set_capacity(&rid, c)
                .map(|_| ())
                .ok_or_else(|| "capacity of an unknown queue".into())
        }
        T_UNCAP => {
            let now = r.u64()?;
            let free_quota = r.u32()?;
            r.end()?;
            st.expire_capacity(now, free_quota);
            Ok(())
        }
        T_CHANNEL => {
            let c = NewChannel {
                owner_id: r.id()?,
                join_id: r.id()?,
                owner_key: r.take()?,
                created_at: r.u64()?,
            };
            r.end()?;
            st.create_channel(c)
                .map_err(|_| "channel with an existing id".to_string())
        }
        T_POST => {
            let owner = r.id()?;
            let id = r.msg()?;
            let at = r.u64()?;
            st.post(&owner, id, at, r.0)
                .map(|_| ())
                .ok_or_else(|| "post to an unknown channel".into())
        }
        T_TOUCH => {
            let rid = r.id()?;
            let at = r.u64()?;
            r.end()?;
            st.touch(&rid, at)
                .map(|_| ())
                .ok_or_else(|| "touch of an unknown member queue".into())
        }
        T_CHARGE => {
            let owner = r.id()?;
            let credit = r.u64()?;
            let charge = r.u64()?;
            let until = r.u64()?;
            r.end()?;
            match st.charge_channel(&owner, credit, charge, until) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("charge of an unknown channel".into()),
                Err(e) => Err(e.to_string()),
            }
        }
        T_SECURE => {
            let rid = r.id()?;
            let key = r.take()?;
            r.end()?;
            match st.secure(&rid, key) {
                SecureOutcome::Secured => Ok(()),
                o => Err(format!("secure does not apply: {o:?}")),
            }
        }
        T_SUSPEND => {
            let rid = r.id()?;
            r.end()?;
            st.suspend(&rid)
                .map(|_| ())
                .ok_or_else(|| "suspend of an unknown queue".into())
        }
        T_DELETE => {
            let rid = r.id()?;
            r.end()?;
            if st.delete(&rid) {
                Ok(())
            } else {
                Err("delete of an unknown queue".into())
            }
        }
        T_PUSH | T_MARKER => {
            let rid = r.id()?;
            let id = r.msg()?;
            let at = r.u64()?;
            let body = if tag == T_PUSH {
                Some(Box::<[u8]>::from(r.0))
            } else {
                r.end()?;
                None
            };
            if st.append(&rid, id, at, body) {
                Ok(())
            } else {
                Err("push to an unknown queue".into())
            }
        }
        T_ACK => {
            let rid = r.id()?;
            let id = r.msg()?;
            r.end()?;
            match st.ack(&rid, &id) {
                AckOutcome::Acked => Ok(()),
                o => Err(format!("ack does not apply: {o:?}")),
            }
        }
        T_EXPIRE => {
            let before = r.u64()?;
            r.end()?;
            st.expire(before);
            Ok(())
        }
        t => Err(format!("unknown record type {t}")),
    }
}

/// Result of scanning one record at `data[at..]`.
enum Scan<'a> {
    Ok(&'a [u8], usize),
    Bad(String),
}

fn scan(data: &[u8], at: usize) -> Scan<'_> {
    let rest = &data[at..];
    if rest.len() < HEADER {
        return Scan::Bad("incomplete header".into());
    }
    let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Scan::Bad(format!("bad record length {len}"));
    }
    if rest.len() < HEADER + len {
        return Scan::Bad("record runs past the end of the file".into());
    }
    let payload = &rest[HEADER..HEADER + len];
    let mut d = CRC.digest();
    d.update(&len_bytes);
    d.update(payload);
    if d.finalize() != crc {
        return Scan::Bad("checksum mismatch".into());
    }
    Scan::Ok(payload, HEADER + len)
}

/// Whether the bad record at `at` can only be a torn write (see the module docs).
fn torn(data: &[u8], at: usize) -> bool {
    let rest = &data[at..];
    if rest.len() < HEADER || rest.iter().all(|&b| b == 0) {
        return true;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    len > 0 && len <= MAX_PAYLOAD && HEADER + len >= rest.len()
}

fn replay(path: &Path, data: &[u8], st: &mut State) -> Result<(u64, usize), LogError> {
    let corrupt = |offset: usize, reason: String| LogError::Corrupt {
        path: path.to_owned(),
        offset: offset as u64,
        reason,
    };
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return Err(corrupt(0, "not a smpx relay log (bad magic)".into()));
    }
    let mut at = MAGIC.len();
    let mut records = 0u64;
    while at < data.len() {
        match scan(data, at) {
            Scan::Ok(payload, n) => {
                apply(st, payload).map_err(|r| corrupt(at, r))?;
                records += 1;
                at += n;
            }
            Scan::Bad(reason) => {
                if torn(data, at) {
                    break;
                }
                return Err(corrupt(at, reason));
            }
        }
    }
    Ok((records, at))
}

// ---------------------------------------------------------------------------------------
// The store

impl LogStore {
    /// Opens (or creates) the log at `path` and replays it; see the module documentation.
    /// Blocking: it reads the whole log.
    pub fn open(
        path: impl AsRef<Path>,
        opts: LogOptions,
    ) -> Result<(LogStore, Recovery), LogError> {
        let path = path.as_ref().to_owned();
        let ioe = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        // A leftover compaction never replaced the log: it is garbage.
        match std::fs::remove_file(compact_path(&path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ioe(e)),
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(ioe)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(ioe)?;
        let mut st = State::default();
        let mut recovery = Recovery::default();
        let len = if data.is_empty() {
            file.write_all(MAGIC).map_err(ioe)?;
            file.sync_all().map_err(ioe)?;
            sync_dir(&path).map_err(ioe)?;
            MAGIC.len()
        } else {
            let (records, good) = replay(&path, &data, &mut st)?;
            recovery.records = records;
            if good < data.len() {
                recovery.truncated = (data.len() - good) as u64;
                file.set_len(good as u64).map_err(ioe)?;
                file.sync_all().map_err(ioe)?;
            }
            good
        };
        drop(data);
        let (durable, _) = tokio::sync::watch::channel(0u64);
        let sh = Shared {
            path,
            opts,
            locked: Mutex::new(Locked {
                st,
                pending: Vec::new(),
                appended: 0,
            }),
            io: tokio::sync::Mutex::new(Io {
                file: Arc::new(file),
                len: len as u64,
            }),
            durable,
            failed: OnceLock::new(),
            compacting: AtomicBool::new(false),
            compact_retry_at: AtomicU64::new(0),
            log_len: AtomicU64::new(len as u64),
        };
        Ok((LogStore { sh: Arc::new(sh) }, recovery))
    }

    /// The log file's current length in bytes.
    pub fn log_bytes(&self) -> u64 {
        self.sh.log_len.load(Ordering::Relaxed)
    }

    /// Compacts the log now (see the module documentation), whatever its size.
    pub async fn compact(&self) -> Result<(), StoreError> {
        while self.sh.compacting.swap(true, Ordering::AcqRel) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let r = Shared::compact(&self.sh).await;
        self.sh.compacting.store(false, Ordering::Release);
        r
    }

    fn check(&self) -> Result<(), StoreError> {
        match self.sh.failed.get() {
            Some(e) => Err(StoreError::Backend(format!(
                "log store failed earlier: {e}"
            ))),
            None => Ok(()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Locked>, StoreError> {
        self.check()?;
        self.sh
            .locked
            .lock()
            .map_err(|_| StoreError::Backend("log store poisoned".into()))
    }

    /// Runs `f` on the index under the lock; `f` appends its record (if any) to the buffer.
    /// Returns once the log is durable up to the end of the buffer as `f` left it.
    async fn mutate<T>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<u8>) -> T,
    ) -> Result<T, StoreError> {
        let (out, lsn) = {
            let mut g = self.lock()?;
            let l = &mut *g;
            let before = l.pending.len();
            let out = f(&mut l.st, &mut l.pending);
            l.appended += (l.pending.len() - before) as u64;
            (out, l.appended)
        };
        self.sh.wait_durable(lsn).await?;
        Ok(out)
    }
}

impl Shared {
    fn fail(&self, e: String) -> StoreError {
        let _ = self.failed.set(e.clone());
        self.durable.send_modify(|_| {});
        StoreError::Backend(format!("log write failed: {e}"))
    }

    async fn wait_durable(self: &Arc<Self>, lsn: u64) -> Result<(), StoreError> {
        let mut rx = self.durable.subscribe();
        loop {
            if let Some(e) = self.failed.get() {
                return Err(StoreError::Backend(format!("log write failed: {e}")));
            }
            if *rx.borrow_and_update() >= lsn {
                return Ok(());
            }
            match self.io.try_lock() {
                Ok(mut io) => {
                    let r = self.flush(&mut io, false).await;
                    drop(io);
                    // Wake waiters even if nothing changed: the writer role is free again.
                    self.durable.send_modify(|_| {});
                    r?;
                }
                Err(_) => {
                    if rx.changed().await.is_err() {
                        return Err(StoreError::Backend("log store closed".into()));
                    }
                }
            }
        }
    }

    /// Writes the buffer (as the one writer) and makes it durable per the policy. With
    /// `snapshot`, also serialises the live state at the same point and returns it with the
    /// physical length of the log there.
    async fn flush(
        self: &Arc<Self>,
        io: &mut Io,
        snapshot: bool,
    ) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let (buf, end, snap, live) = {
            let mut l = self
                .locked
                .lock()
                .map_err(|_| StoreError::Backend("log store poisoned".into()))?;
            let buf = std::mem::take(&mut l.pending);
            let snap = snapshot.then(|| self::snapshot(&l.st));
            (buf, l.appended, snap, live_estimate(&l.st))
        };
        if !buf.is_empty() {
            let n = buf.len() as u64;
            let r = match self.opts.fsync {
                FsyncPolicy::Never => (&*io.file).write_all(&buf),
                policy => {
                    let file = io.file.clone();
                    tokio::task::spawn_blocking(move || write_synced(&file, &buf, policy))
                        .await
                        .map_err(|e| StoreError::Backend(format!("log writer: {e}")))?
                }
            };
            if let Err(e) = r {
                return Err(self.fail(e.to_string()));
            }
            io.len += n;
            self.log_len.store(io.len, Ordering::Relaxed);
            self.durable.send_replace(end);
        }
        if !snapshot {
            self.maybe_compact(io.len, live);
        }
        Ok(snap.map(|s| (s, io.len)))
    }

    fn maybe_compact(self: &Arc<Self>, len: u64, live: u64) {
        let o = &self.opts;
        let threshold = o
            .compact_min_bytes
            .max(o.compact_factor.saturating_mul(live))
            .max(self.compact_retry_at.load(Ordering::Relaxed));
        if len <= threshold || self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let sh = self.clone();
        tokio::spawn(async move {
            if Shared::compact(&sh).await.is_err() {
                sh.compact_retry_at
                    .store(len.saturating_mul(2), Ordering::Relaxed);
            }
            sh.compacting.store(false, Ordering::Release);
        });
    }

    /// See "Compaction" in the module documentation. The caller holds `compacting`.
    async fn compact(self: &Arc<Self>) -> Result<(), StoreError> {
        let tmp = compact_path(&self.path);
        // Phase A: flush and snapshot at the same point.
        let (snap, from) = {
            let mut io = self.io.lock().await;
            let r = self.flush(&mut io, true).await;
            drop(io);
            self.durable.send_modify(|_| {});
            match r? {
                Some(s) => s,
                None => return Ok(()),
            }
        };
        let t = tmp.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&t)?;
            f.write_all(MAGIC)?;
            f.write_all(&snap)?;
            Ok(f)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("compaction: {e}")))?;
        let mut new = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err(&tmp)(e));
            }
        };
        // Phase B: as the writer, copy what the old log received since, then swap.
        let mut io = self.io.lock().await;
        let path = self.path.clone();
        let to = io.len;
        let swapped =
            tokio::task::spawn_blocking(move || -> Result<(File, u64), (bool, std::io::Error)> {
                let before = |e| (false, e);
                let mut old = File::open(&path).map_err(before)?;
                old.seek(SeekFrom::Start(from)).map_err(before)?;
                std::io::copy(&mut old.take(to - from), &mut new).map_err(before)?;
                new.sync_all().map_err(before)?;
                drop(new);
                std::fs::rename(compact_path(&path), &path).map_err(before)?;
                let after = |e| (true, e);
                sync_dir(&path).map_err(after)?;
                let f = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(&path)
                    .map_err(after)?;
                let len = f.metadata().map_err(after)?.len();
                Ok((f, len))
            })
            .await
            .map_err(|e| StoreError::Backend(format!("compaction: {e}")))?;
        let r = match swapped {
            Ok((f, len)) => {
                io.file = Arc::new(f);
                io.len = len;
                self.log_len.store(len, Ordering::Relaxed);
                Ok(())
            }
            // The new log is in place but cannot be written: the old handle points at an
            // unlinked file, so refuse further writes rather than lose them.
            Err((true, e)) => Err(self.fail(format!("after compaction: {e}"))),
            Err((false, e)) => {
                let _ = std::fs::remove_file(&tmp);
                Err(io_err(&tmp)(e))
            }
        };
        drop(io);
        // Writers that found the writer role taken wait for this.
        self.durable.send_modify(|_| {});
        r
    }
}

/// Writes `buf` (whole records) and syncs it per `policy` (not [`FsyncPolicy::Never`]).
fn write_synced(mut file: &File, buf: &[u8], policy: FsyncPolicy) -> std::io::Result<()> {
    if policy == FsyncPolicy::Every {
        let mut at = 0;
        while at < buf.len() {
            let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let n = HEADER + len as usize;
            file.write_all(&buf[at..at + n])?;
            file.sync_data()?;
            at += n;
        }
        Ok(())
    } else {
        file.write_all(buf)?;
        file.sync_data()
    }
}

#[async_trait::async_trait]
impl QueueStore for LogStore {
    async fn create(&self, q: NewQueue) -> Result<(), StoreError> {
        self.mutate(|st, buf| {
            let rid = q.recipient_id;
            st.create(q)?;
            if let Some(q) = st.by_recipient(&rid) {
                enc_create(buf, q);
            }
            Ok(())
        })
        .await?
    }

    async fn by_recipient(&self, id: &EntityId) -> Result<Option<Queue>, StoreError> {
        Ok(self.lock()?.st.by_recipient(id).cloned())
    }

    async fn by_sender(&self, id: &EntityId) -> Result<Option<Queue>, StoreError> {
        Ok(self.lock()?.st.by_sender(id).cloned())
    }

    async fn secure(&self, rid: &EntityId, key: [u8; 32]) -> Result<SecureOutcome, StoreError> {
        self.mutate(|st, buf| {
            let o = st.secure(rid, key);
            if o == SecureOutcome::Secured {
                enc_id_key(buf, T_SECURE, rid, &key);
            }
            o
        })
        .await
    }

    async fn suspend(&self, rid: &EntityId) -> Result<bool, StoreError> {
        self.mutate(|st, buf| match st.suspend(rid) {
            Some(changed) => {
                if changed {
                    enc_id_key(buf, T_SUSPEND, rid, &[]);
                }
                true
            }
            None => false,
        })
        .await
    }

    async fn delete(&self, rid: &EntityId) -> Result<bool, StoreError> {
        self.mutate(|st, buf| {
            let found = st.delete(rid);
            if found {
                enc_id_key(buf, T_DELETE, rid, &[]);
            }
            found
        })
        .await
    }

    async fn push(
        &self,
        sid: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<PushOutcome, StoreError> {
        if body.len() > MAX_BODY {
            return Err(StoreError::Backend(format!(
                "message body of {} bytes exceeds {MAX_BODY}",
                body.len()
            )));
        }
        self.mutate(|st, buf| match st.push_decision(sid) {
            PushDecision::NoQueue => PushOutcome::NoQueue,
            PushDecision::Suspended => PushOutcome::Suspended,
            PushDecision::Full => PushOutcome::QuotaExceeded,
            PushDecision::Marker(rid) => {
                enc_msg(buf, &rid, &id, at, None);
                st.append(&rid, id, at, None);
                PushOutcome::QuotaExceeded
            }
            PushDecision::Accept(rid) => {
                enc_msg(buf, &rid, &id, at, Some(&body));
                st.append(&rid, id, at, Some(body.into_boxed_slice()));
                PushOutcome::Accepted
            }
        })
        .await
    }

    async fn peek(&self, rid: &EntityId) -> Result<Option<Message>, StoreError> {
        Ok(self.lock()?.st.peek(rid))
    }

    async fn ack(&self, rid: &EntityId, id: &MsgId) -> Result<AckOutcome, StoreError> {
        self.mutate(|st, buf| {
            let o = st.ack(rid, id);
            if o == AckOutcome::Acked {
                enc_id_key(buf, T_ACK, rid, &id.0);
            }
            o
        })
        .await
    }

    async fn expire(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.mutate(|st, buf| {
            let n = st.expire(before);
            if n > 0 {
                enc_expire(buf, before);
            }
            n
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(self.lock()?.st.stats())
    }

    async fn set_capacity(
        &self,
        rid: &EntityId,
        capacity: Capacity,
    ) -> Result<Option<Capacity>, StoreError> {
        self.mutate(|st, buf| {
            let old = st.set_capacity(rid, capacity);
            if old.is_some() {
                enc_capacity(buf, rid, capacity);
            }
            old
        })
        .await
    }

    async fn capacity(&self, rid: &EntityId) -> Result<Option<Capacity>, StoreError> {
        Ok(self.lock()?.st.capacity(rid))
    }

    async fn expire_capacity(&self, now: UnixTime, free_quota: u32) -> Result<u64, StoreError> {
        self.mutate(|st, buf| {
            let n = st.expire_capacity(now, free_quota);
            if n > 0 {
                enc_uncap(buf, now, free_quota);
            }
            n
        })
        .await
    }

    async fn create_channel(&self, channel: NewChannel) -> Result<(), StoreError> {
        self.mutate(|st, buf| {
            let owner = channel.owner_id;
            st.create_channel(channel)?;
            if let Some(c) = st.channel_by_owner(&owner) {
                enc_channel(buf, c);
            }
            Ok(())
        })
        .await?
    }

    async fn channel_by_owner(&self, owner: &EntityId) -> Result<Option<Channel>, StoreError> {
        Ok(self.lock()?.st.channel_by_owner(owner).cloned())
    }

    async fn channel_by_join(&self, join: &EntityId) -> Result<Option<Channel>, StoreError> {
        Ok(self.lock()?.st.channel_by_join(join).cloned())
    }

    async fn join_channel(&self, join: &EntityId, member: NewQueue) -> Result<bool, StoreError> {
        self.mutate(|st, buf| {
            let rid = member.recipient_id;
            if st.join_channel(join, member)?.is_none() {
                return Ok(false);
            }
            if let Some(q) = st.by_recipient(&rid) {
                enc_create(buf, q);
            }
            Ok(true)
        })
        .await?
    }

    async fn post(
        &self,
        owner: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<Option<PostOutcome>, StoreError> {
        if body.len() > MAX_BODY {
            return Err(StoreError::Backend(format!(
                "message body of {} bytes exceeds {MAX_BODY}",
                body.len()
            )));
        }
        self.mutate(|st, buf| {
            let applied = st.post(owner, id, at, &body)?;
            if applied.changed {
                enc_post(buf, owner, &id, at, &body);
            }
            Some(applied.outcome)
        })
        .await
    }

    async fn touch(&self, rid: &EntityId, at: UnixTime) -> Result<(), StoreError> {
        {
            // Most touches change nothing: answer those without the writer.
            let g = self.lock()?;
            match g.st.last_active(rid) {
                Some(last) if at / 86_400 > last / 86_400 => {}
                _ => return Ok(()),
            }
        }
        self.mutate(|st, buf| {
            if st.touch(rid, at) == Some(true) {
                enc_touch(buf, rid, at);
            }
        })
        .await
    }

    async fn channel_usage(
        &self,
        owner: &EntityId,
        active_since: UnixTime,
    ) -> Result<Option<ChannelUsage>, StoreError> {
        Ok(self.lock()?.st.channel_usage(owner, active_since))
    }

    async fn charge_channel(
        &self,
        owner: &EntityId,
        credit_units: u64,
        charge_units: u64,
        billed_until: UnixTime,
    ) -> Result<Option<i64>, StoreError> {
        self.mutate(|st, buf| {
            let b = st.charge_channel(owner, credit_units, charge_units, billed_until)?;
            if b.is_some() {
                enc_charge(buf, owner, credit_units, charge_units, billed_until);
            }
            Ok(b)
        })
        .await?
    }
}
