//! # smpx-relay — the relay operators run and get paid for (DESIGN.md §3)
//!
//! An SMP-style message-queue relay. The SimpleX Messaging Protocol is the reference design;
//! this is our own code with its properties:
//!
//! * [`protocol`] — pure code: the version handshake, fixed 16 KiB padded blocks carrying one
//!   or more signed transmissions, the commands and responses, their binary encoding, typed
//!   errors, and the sealing of delivered messages (the relay re-encrypts each one).
//! * [`transport`] — TLS 1.3 (rustls) with a certificate chain from an offline CA key, the
//!   `smpx://<CA fingerprint>@host:port` address that clients pin, and the 32-byte session id
//!   (TLS exporter) that every command's signature is bound to.
//! * [`store`] — queues and messages: the [`store::QueueStore`] contract and its backends
//!   (memory, memory + append-only log, SQLite/PostgreSQL).
//! * [`server`] — connections (reader, writer, deliverer per connection), authorisation in
//!   constant time, subscriptions (a new one ends the old), the free tier's quota and expiry,
//!   deadlines for slow and idle clients, counters, graceful shutdown; private routing as
//!   proxy and as destination ([`server::forward`]); paid capacity ([`server::capacity`]:
//!   INFO, PAY through the operator's spent registry) and channels billed by active
//!   receivers ([`server::channel`]).
//! * [`client`] — connect (TLS with the pinned fingerprint), handshake, typed commands matched
//!   by correlation id, decrypted deliveries as a stream of events; sending through a proxy
//!   ([`client::ProxiedRelay`]), paying, channels.
//! * [`node`] — running a relay: `smpx relay init` / `run`, the commented config file, the
//!   TLS acceptor, the ops endpoint (health, Prometheus metrics), graceful shutdown.

pub mod client;
pub mod node;
pub mod protocol;
pub mod server;
pub mod store;
pub mod transport;
