//! Channels: NEWC, JOIN, POST, USAGE — and billing a channel by its active receivers.
//!
//! A channel is an owner key and a set of **member queues** (see [`crate::store`]): JOIN
//! creates an ordinary queue (fresh ids, the relay's X25519 secret, the free quota) that
//! belongs to the channel, whose recipient then uses SUB/GET/ACK/DEL on it unchanged; its
//! sender id is never given out. POST (signed with the owner key) stores the body in every
//! member queue at once ([`crate::store::QueueStore::post`]) and wakes their subscribers; a
//! full member queue gets the quota marker as for SEND, and the POST is still OK.
//!
//! Authorisation follows NEW and SEND: NEWC and JOIN are signed with the key they register
//! (and a key that is not a valid Ed25519 point is a syntax error, before any signature
//! check); POST and USAGE are verified against the channel's owner key, or against the dummy
//! key when the owner id is unknown, so an unknown id and a wrong signature cost one
//! verification each and get the same AUTH. An unknown join id is AUTH too.
//!
//! # Billing
//!
//! A channel pays for what it uses beyond the free allowance
//! ([`Pricing::channel_monthly_units`]: active receivers — members active within
//! [`Pricing::inactive_after_secs`] — and bytes held), out of a prepaid balance that PAY
//! tops up. [`Ctx::account`], called by POST and USAGE:
//!
//! * the first time, starts the clock (`billed_until = now`, no charge);
//! * once `now − billed_until ≥` [`Pricing::billing_interval_secs`], measures usage and
//!   charges `monthly_units × elapsed / MONTH_SECS` (rounded down), moving `billed_until`
//!   forward by the time those whole units pay for (so the fraction of a unit is charged
//!   with the next period rather than lost; with no price it moves to `now`);
//! * otherwise uses the usage measured last (kept in memory per channel), so a POST measures
//!   usage at most once per billing interval (and once after a restart).
//!
//! A POST is refused with [`ErrorCode::Payment`] when the channel's current monthly price is
//! above 0 and its balance is at or below 0: a channel within the free allowance never needs
//! a balance. The balance may go below 0 by at most one billing period's charge.
//!
//! Billing takes the same per-channel lock as PAY's provisioning (`Shared::pay_locks`), so a
//! charge and a payment never overwrite each other's `billed_until`.

use super::capacity::{Pricing, MONTH_SECS};
use super::conn::{internal, Ctx};
use super::stats::inc;
use crate::store::{Channel, ChannelUsage, NewChannel, NewQueue, ServerDhSecret, StoreError};
use smpx_core::UnixTime;
use smpx_relay_protocol::capacity::ChannelUsageReport;
use smpx_relay_protocol::command::Response;
use smpx_relay_protocol::{CmdError, EntityId, ErrorCode, MsgId, Transmission};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Above this many cached measurements, those older than a billing interval are dropped.
const CACHE_CAP: usize = 65_536;

/// The usage measured last per channel (owner id), so POST measures at most once per
/// billing interval.
#[derive(Debug, Default)]
pub(crate) struct UsageCache(Mutex<HashMap<EntityId, (UnixTime, ChannelUsage)>>);

impl UsageCache {
    fn get(&self, owner: &EntityId) -> Option<(UnixTime, ChannelUsage)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(owner)
            .copied()
    }

    fn put(&self, owner: EntityId, at: UnixTime, usage: ChannelUsage, interval: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= CACHE_CAP {
            m.retain(|_, (t, _)| at.saturating_sub(*t) < interval);
        }
        m.insert(owner, (at, usage));
    }
}

/// A channel's account after [`Ctx::account`].
#[derive(Clone, Copy, Debug)]
struct Account {
    usage: ChannelUsage,
    monthly_units: u64,
    balance_units: i64,
    billed_until: UnixTime,
}

/// What `monthly_units` costs for `elapsed` seconds, in whole units, and the seconds those
/// units pay for (≤ `elapsed`).
fn charge_for(monthly_units: u64, elapsed: u64) -> (u64, u64) {
    if monthly_units == 0 {
        return (0, elapsed);
    }
    let month = u128::from(MONTH_SECS);
    let monthly = u128::from(monthly_units);
    let units = monthly * u128::from(elapsed) / month;
    let covered = units * month / monthly;
    (
        u64::try_from(units).unwrap_or(u64::MAX),
        u64::try_from(covered).unwrap_or(elapsed).min(elapsed),
    )
}

impl Ctx {
    fn pricing(&self) -> &Pricing {
        &self.shared.config.pricing
    }

    /// The channel named by `owner_id` if the transmission is signed with its owner key;
    /// AUTH for an unknown id and a bad signature alike (one verification either way).
    async fn owned_channel(
        &self,
        t: &Transmission<'_>,
        owner_id: &EntityId,
    ) -> Result<Channel, ErrorCode> {
        let ch = self
            .shared
            .store
            .channel_by_owner(owner_id)
            .await
            .map_err(internal)?;
        if !self.authorised(ch.as_ref().map(|c| c.owner_key), t) {
            return Err(ErrorCode::Auth);
        }
        ch.ok_or(ErrorCode::Auth)
    }

    /// Bills the channel if it is due (see the module docs) and returns its account.
    /// `fresh`: measure usage now whatever the cache holds (USAGE).
    async fn account(
        &self,
        owner_id: &EntityId,
        at: UnixTime,
        fresh: bool,
    ) -> Result<Account, ErrorCode> {
        let store = &self.shared.store;
        let interval = self.pricing().billing_interval_secs;
        let _guard = self.shared.pay_lock(*owner_id).await;
        // Read again under the lock: a PAY or another POST may have changed the account.
        let ch = store
            .channel_by_owner(owner_id)
            .await
            .map_err(internal)?
            .ok_or(ErrorCode::Auth)?;
        let due = ch.billed_until == 0 || at.saturating_sub(ch.billed_until) >= interval;
        let cached = self
            .shared
            .channel_usage
            .get(owner_id)
            .filter(|(t, _)| !fresh && !due && at.saturating_sub(*t) < interval);
        let usage = match cached {
            Some((_, u)) => u,
            None => {
                let since = at.saturating_sub(self.pricing().inactive_after_secs);
                let u = store
                    .channel_usage(owner_id, since)
                    .await
                    .map_err(internal)?
                    .ok_or(ErrorCode::Auth)?;
                self.shared.channel_usage.put(*owner_id, at, u, interval);
                u
            }
        };
        let monthly_units = self
            .pricing()
            .channel_monthly_units(usage.active, usage.stored_bytes);
        let mut account = Account {
            usage,
            monthly_units,
            balance_units: ch.balance_units,
            billed_until: ch.billed_until,
        };
        let (charge, until) = if ch.billed_until == 0 {
            // The first bill starts the clock.
            (0, at)
        } else if due && at > ch.billed_until {
            let (units, covered) = charge_for(monthly_units, at - ch.billed_until);
            (units, ch.billed_until + covered)
        } else {
            return Ok(account);
        };
        if until == ch.billed_until && charge == 0 {
            return Ok(account);
        }
        account.balance_units = store
            .charge_channel(owner_id, 0, charge, until)
            .await
            .map_err(internal)?
            .ok_or(ErrorCode::Auth)?;
        account.billed_until = until;
        Ok(account)
    }

    /// NEWC: a channel with fresh owner and join ids, owned by the key that signed it.
    pub(super) async fn new_channel(
        &self,
        t: &Transmission<'_>,
        owner_key: [u8; 32],
    ) -> Result<Response, ErrorCode> {
        if ed25519_dalek::VerifyingKey::from_bytes(&owner_key).is_err() {
            return Err(ErrorCode::Cmd(CmdError::Syntax));
        }
        // NEWC proves possession of the owner key by being signed with it.
        if !self.authorised(Some(owner_key), t) {
            return Err(ErrorCode::Auth);
        }
        self.admit_creation()?;
        for _ in 0..3 {
            let c = NewChannel {
                owner_id: EntityId(self.shared.entropy().bytes()),
                join_id: EntityId(self.shared.entropy().bytes()),
                owner_key,
                created_at: self.shared.now(),
            };
            let (owner_id, join_id) = (c.owner_id, c.join_id);
            match self.shared.store.create_channel(c).await {
                Ok(()) => {
                    self.created(None);
                    return Ok(Response::Channel { owner_id, join_id });
                }
                Err(StoreError::DuplicateId) => continue,
                Err(_) => return Err(ErrorCode::Internal),
            }
        }
        Err(ErrorCode::Internal)
    }

    /// JOIN: a member queue of the channel `join_id` names, for the key that signed it.
    pub(super) async fn join(
        &self,
        t: &Transmission<'_>,
        join_id: EntityId,
        recipient_key: [u8; 32],
        recipient_dh: [u8; 32],
    ) -> Result<Response, ErrorCode> {
        let (server_secret, server_dh) = self.recipient_keys(t, recipient_key, recipient_dh)?;
        self.admit_creation()?;
        for _ in 0..3 {
            let recipient_id = EntityId(self.shared.entropy().bytes());
            let member = NewQueue {
                recipient_id,
                sender_id: EntityId(self.shared.entropy().bytes()),
                recipient_key,
                recipient_dh,
                server_dh: ServerDhSecret(server_secret),
                quota: self.shared.config.quota,
                created_at: self.shared.now(),
            };
            match self.shared.store.join_channel(&join_id, member).await {
                Ok(true) => {
                    inc(&self.shared.stats.queues_created);
                    // Member queues are filled by POST, billed to the channel: no bytes
                    // are counted against the address.
                    self.created(None);
                    return Ok(Response::Member {
                        recipient_id,
                        server_dh,
                    });
                }
                // No such channel: the same answer as a bad signature.
                Ok(false) => return Err(ErrorCode::Auth),
                Err(StoreError::DuplicateId) => continue,
                Err(_) => return Err(ErrorCode::Internal),
            }
        }
        Err(ErrorCode::Internal)
    }

    /// POST: the body to every member queue; OK even when some were full.
    pub(super) async fn post(
        &self,
        t: &Transmission<'_>,
        owner_id: EntityId,
        body: Vec<u8>,
    ) -> Result<Response, ErrorCode> {
        self.owned_channel(t, &owner_id).await?;
        let at = self.shared.now();
        let account = self.account(&owner_id, at, false).await?;
        if account.monthly_units > 0 && account.balance_units <= 0 {
            return Err(ErrorCode::Payment);
        }
        let msg_id = MsgId(self.shared.entropy().bytes());
        let outcome = self
            .shared
            .store
            .post(&owner_id, msg_id, at, body)
            .await
            .map_err(internal)?
            .ok_or(ErrorCode::Auth)?;
        inc(&self.shared.stats.messages_in);
        self.shared
            .stats
            .messages_over_quota
            .fetch_add(outcome.over_quota.len() as u64, Ordering::Relaxed);
        for rid in outcome.delivered.iter().chain(&outcome.over_quota) {
            self.kick(*rid);
        }
        Ok(Response::Ok)
    }

    /// USAGE: the channel's usage (measured now) and account, as [`ChannelUsageReport`] JSON.
    pub(super) async fn usage(
        &self,
        t: &Transmission<'_>,
        owner_id: EntityId,
    ) -> Result<Response, ErrorCode> {
        self.owned_channel(t, &owner_id).await?;
        let a = self.account(&owner_id, self.shared.now(), true).await?;
        let report = ChannelUsageReport {
            members: a.usage.members,
            active_receivers: a.usage.active,
            stored_bytes: a.usage.stored_bytes,
            balance_units: a.balance_units,
            monthly_units: a.monthly_units,
            billed_until: a.billed_until,
        };
        let json = serde_json::to_vec(&report).map_err(|_| ErrorCode::Internal)?;
        Ok(Response::Usage { json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_rounds_down_and_carries_the_rest() {
        assert_eq!(charge_for(0, 1000), (0, 1000));
        // 1 unit per MONTH_SECS / 1000 seconds (2592 s).
        assert_eq!(charge_for(1000, 2592), (1, 2592));
        assert_eq!(charge_for(1000, 3600), (1, 2592));
        assert_eq!(charge_for(1000, 100), (0, 0));
        assert_eq!(charge_for(1000, MONTH_SECS), (1000, MONTH_SECS));
        // No overflow at the extremes; what is covered never exceeds what elapsed.
        let (units, covered) = charge_for(u64::MAX, u64::MAX);
        assert_eq!(units, u64::MAX);
        assert!(covered >= u64::MAX - 1);
    }
}
