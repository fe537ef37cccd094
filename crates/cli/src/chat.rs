//! `smpx chat …`: contacts and end-to-end encrypted messages through relays, kept in the
//! wallet file (`smpx_wallet::chat` does the work).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use smpx_relay::RelayNode;
use smpx_relay_protocol::capacity::Bought;
use smpx_relay_transport::{RelayAddress, RelayIdentity};
use smpx_wallet::chat::Direction;
use smpx_wallet::Wallet;
use std::path::PathBuf;
use std::time::Duration;

const PRIVATE_ROUTING_NOTE: &str = "Private routing is on by default: a message to a contact \
    whose queue is on another relay goes through your own relay as proxy, so the contact's \
    relay sees your relay's address, not yours, and your relay cannot read it. With --direct \
    you connect to the contact's relay yourself (it then sees your IP address).";

#[derive(Args)]
#[command(after_help = PRIVATE_ROUTING_NOTE)]
pub(crate) struct ChatArgs {
    /// Wallet file.
    #[arg(long, env = "SMPX_WALLET", default_value_os_t = crate::default_wallet())]
    wallet: PathBuf,
    /// File holding the passphrase (else SMPX_WALLET_PASSPHRASE, else a prompt).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Turn private routing off: send (send, accept, receive's ready) by connecting to the
    /// contact's relay directly instead of through your own relay as proxy.
    #[arg(long, global = true)]
    direct: bool,
    #[command(subcommand)]
    command: ChatCmd,
}

#[derive(Args)]
struct RelayArg {
    /// The relay your queue for this contact lives on (smpx://<fingerprint>@host:port).
    /// Default: the destination `smpx relays choose` picks from --directory (and
    /// --core-relay), else the first relay of the devnet in --devnet-dir.
    #[arg(long, env = "SMPX_RELAY")]
    relay: Option<String>,
    /// The devnet data directory whose first relay is the default.
    #[arg(long, default_value = "smpx-devnet")]
    devnet_dir: PathBuf,
    #[command(flatten)]
    choice: smpx_cli::directory::ChoiceArgs,
}

#[derive(Subcommand)]
enum ChatCmd {
    /// Create a queue on your relay for a new contact; prints the invitation to give them
    /// (over a channel you trust: whoever accepts it first becomes the contact).
    Invite {
        /// Your name for the contact (default invite-<hex>).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        relay: RelayArg,
    },
    /// Accept an invitation: creates your reply queue and sends the inviter a hello. You can
    /// send once the inviter has run `smpx chat receive`.
    Accept {
        invitation: String,
        /// Your name for the inviter.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        relay: RelayArg,
    },
    /// Send a message (end-to-end encrypted, signed) to a contact.
    Send { name: String, text: String },
    /// Receive from all contacts: prints new messages and contacts that connected. Messages
    /// are stored in the wallet before the relay is told to delete them.
    Receive {
        /// If nothing is waiting, wait this many seconds for a message.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// List contacts and their state (invited, accepted, connected).
    Contacts,
    /// Show the stored messages with a contact.
    History { name: String },
    /// Pay your relay with operator credits for a larger quota on your queue for a contact
    /// (the relay's price per 30 days, from the credits of the operator it is paid through).
    Upgrade {
        name: String,
        /// How many 30-day periods to pay for.
        #[arg(long, default_value_t = 1)]
        months: u64,
    },
}

/// `--relay`; else, with directories or core relays given, the destination chosen from them
/// (its view cached next to the wallet); else the address of `<devnet-dir>/relays/relay-1`.
async fn relay_address(arg: &RelayArg, wallet: &std::path::Path) -> Result<RelayAddress> {
    if let Some(r) = &arg.relay {
        return r.parse().with_context(|| format!("--relay {r}"));
    }
    if arg.choice.given() {
        let cache = wallet.with_extension("relay-view.json");
        let chosen = smpx_cli::directory::choose(&arg.choice, cache).await?;
        let d = &chosen.choice.destination;
        eprintln!(
            "relay {} (operator {}), chosen as `smpx relays choose` chooses; {}",
            d.address,
            d.operator_id,
            smpx_cli::directory::view_line(&chosen.view)
        );
        return d
            .address
            .parse()
            .with_context(|| format!("the chosen relay {}", d.address));
    }
    let dir = arg.devnet_dir.join("relays").join("relay-1");
    let no_default = || {
        format!(
            "no --relay given and no devnet relay in {} (start `smpx devnet`, pass --relay \
             smpx://<fingerprint>@host:port, or --directory URL to choose one)",
            dir.display()
        )
    };
    let cfg = RelayNode::config(&dir).with_context(no_default)?;
    let identity = RelayIdentity::load(&dir).with_context(no_default)?;
    let host = cfg.public_host().with_context(no_default)?;
    if cfg.server.public_port == 0 {
        bail!(
            "the devnet relay in {} picks its port at start; pass --relay with the address \
             `smpx devnet` printed",
            dir.display()
        );
    }
    Ok(identity.address(host, cfg.server.public_port))
}

pub(crate) async fn run(args: ChatArgs) -> Result<()> {
    let pass = crate::read_passphrase(args.passphrase_file.as_deref(), false)?;
    let w = Wallet::open(&args.wallet, &pass).await?;
    let chat = w.chat().direct(args.direct);
    let json = args.json;
    match args.command {
        ChatCmd::Invite { name, relay } => {
            let relay = relay_address(&relay, &args.wallet).await?;
            let (contact, invitation) = chat.create_contact(&relay, name.as_deref()).await?;
            if json {
                crate::print_json(&serde_json::json!({
                    "contact": contact, "invitation": invitation
                }))?;
            } else {
                println!("{invitation}");
                eprintln!(
                    "Give this invitation to your contact (over a channel you trust). They \
                     run `smpx chat accept <INVITATION> --name <NAME>`; then run \
                     `smpx chat receive` to connect. Contact name here: {}",
                    contact.name
                );
            }
        }
        ChatCmd::Accept {
            invitation,
            name,
            relay,
        } => {
            let relay = relay_address(&relay, &args.wallet).await?;
            let contact = chat.accept(&invitation, &name, &relay).await?;
            if json {
                crate::print_json(&contact)?;
            } else {
                println!(
                    "accepted: hello sent to {name}; you can send once they have run \
                     `smpx chat receive`"
                );
            }
        }
        ChatCmd::Send { name, text } => {
            let m = chat.send(&name, &text).await?;
            if json {
                crate::print_json(&m)?;
            } else {
                println!("sent to {name}");
            }
        }
        ChatCmd::Receive { wait } => {
            let got = chat.receive(Duration::from_secs(wait)).await?;
            if json {
                crate::print_json(&got)?;
            } else {
                for c in &got.connected {
                    println!("* connected: {c}");
                }
                for m in &got.messages {
                    println!("{}: {}", m.contact, m.text);
                }
                for c in &got.quota_exceeded {
                    println!("* {c}: your queue was full; some messages were refused");
                }
                for r in &got.unreachable {
                    eprintln!("relay {r} unreachable: its contacts were skipped");
                }
                if got.dropped > 0 {
                    eprintln!("({} invalid deliveries dropped)", got.dropped);
                }
            }
        }
        ChatCmd::Contacts => {
            let cs = chat.contacts().await?;
            if json {
                crate::print_json(&cs)?;
            } else if cs.is_empty() {
                println!("no contacts; `smpx chat invite` or `smpx chat accept`");
            } else {
                for c in cs {
                    let state = serde_json::to_value(c.state)?;
                    println!(
                        "{}\t{}\t{}",
                        c.name,
                        state.as_str().unwrap_or("?"),
                        c.my_relay
                    );
                }
            }
        }
        ChatCmd::Upgrade { name, months } => {
            let paid = chat.upgrade(&name, months).await?;
            if json {
                crate::print_json(&serde_json::json!({
                    "spend": paid.spend, "bought": paid.bought
                }))?;
            } else {
                match paid.bought {
                    Bought::Queue { quota, paid_until } => println!(
                        "paid {} credits ({} back as change): your queue for {name} holds {quota} \
                         messages until {paid_until} (Unix time); credits left there: {}",
                        paid.spend.paid, paid.spend.change, paid.spend.balance
                    ),
                    other => println!("paid {} credits: {other:?}", paid.spend.paid),
                }
            }
        }
        ChatCmd::History { name } => {
            let ms = chat.messages(&name).await?;
            if json {
                crate::print_json(&ms)?;
            } else {
                for m in ms {
                    let who = match m.direction {
                        Direction::In => name.as_str(),
                        Direction::Out => "me",
                    };
                    println!("{who}: {}", m.text);
                }
            }
        }
    }
    Ok(())
}
