//! mDNS browsing: every service type ESP firmware advertises ([`classify::BROWSED`]), all the
//! time the engine runs. Resolved instances are classified and merged into the inventory; a
//! goodbye packet or a record whose TTL ran out (mdns-sd reports both as removals) takes a
//! device discovered this way offline. Instances are re-merged every [`REFRESH`] so a device
//! that is still announced is still seen.
//!
//! mdns-sd runs its own thread and hands events over blocking channels: one small forwarding
//! thread per service type turns them into one tokio channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};
use tokio::sync::mpsc;

use super::arp;
use super::classify::{self, MdnsRecord, Observation};
use crate::error::{CoreError, Result};
use crate::handle::{EngineHandle, Observed};

/// How often instances still announced are merged again (keeps `last_seen` fresh).
pub const REFRESH: Duration = Duration::from_secs(60);
/// Neighbour-table lookups running at once.
pub const LOOKUPS: usize = 16;
/// Instances remembered at most: a hostile LAN cannot grow this without bound.
pub const MAX_INSTANCES: usize = 10_000;

/// What the forwarding threads hand over.
#[derive(Debug)]
pub enum MdnsEvent {
    Resolved(MdnsRecord),
    Removed(String),
}

/// A running mDNS browser.
pub struct Browser {
    daemon: ServiceDaemon,
    tx: mpsc::Sender<MdnsEvent>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts browsing; events reach `tx`.
    pub fn start(tx: &mpsc::Sender<MdnsEvent>) -> Result<Browser> {
        let daemon = ServiceDaemon::new().map_err(|e| err("cannot start", &e))?;
        let browser = Browser { daemon, tx: tx.clone() };
        for ty in classify::BROWSED {
            browser.browse(ty)?;
        }
        Ok(browser)
    }

    fn browse(&self, ty: &'static str) -> Result<()> {
        let rx = self.daemon.browse(ty).map_err(|e| err(ty, &e))?;
        let tx = self.tx.clone();
        let spawned =
            std::thread::Builder::new().name(format!("mdns-{}", ty.trim_end_matches(".local."))).spawn(move || {
                while let Ok(event) = rx.recv() {
                    let out = match event {
                        ServiceEvent::ServiceResolved(s) => MdnsEvent::Resolved(MdnsRecord {
                            service: s.ty_domain.clone(),
                            fullname: s.fullname.clone(),
                            host: s.host.clone(),
                            port: s.port,
                            addresses: s.addresses.iter().map(|a| a.to_ip_addr()).collect(),
                            txt: s
                                .txt_properties
                                .iter()
                                .take(64)
                                .map(|p| (p.key().to_ascii_lowercase(), p.val_str().to_owned()))
                                .collect(),
                        }),
                        ServiceEvent::ServiceRemoved(_, fullname) => MdnsEvent::Removed(fullname),
                        ServiceEvent::SearchStopped(_) => break,
                        _ => continue,
                    };
                    if tx.blocking_send(out).is_err() {
                        break;
                    }
                }
            });
        spawned.map(drop).map_err(|e| CoreError::io("mDNS browsing: cannot start a thread", e))
    }

    /// Asks the LAN again (a "scan now"): every browsed type is queried anew.
    pub fn requery(&self) {
        for ty in classify::BROWSED {
            let _ = self.daemon.stop_browse(ty);
            if let Err(e) = self.browse(ty) {
                tracing::warn!(error = %e, "mDNS query not sent");
            }
        }
    }

    /// Stops browsing (the forwarding threads end with the daemon's channels).
    pub fn stop(self) {
        let _ = self.daemon.shutdown();
    }
}

fn err(what: &str, e: &mdns_sd::Error) -> CoreError {
    CoreError::io(format!("mDNS browsing: {what}"), std::io::Error::other(e.to_string()))
}

/// Asks every running browser to query the LAN again.
pub fn requery_all() {
    REQUERY.notify_waiters();
}

static REQUERY: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Merges what the browser reports into the engine until the engine stops.
pub async fn run(engine: EngineHandle, browser: Browser, mut rx: mpsc::Receiver<MdnsEvent>) {
    let stop = engine.stop_token();
    // Full name → what it last said, for removals and refreshes.
    let mut known: HashMap<String, Observation> = HashMap::new();
    // Records whose MAC the neighbour table gave, back from their lookup.
    let (resolved_tx, mut resolved) = mpsc::channel::<(String, Observation)>(64);
    let lookups = Arc::new(tokio::sync::Semaphore::new(LOOKUPS));
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = REQUERY.notified() => browser.requery(),
            Some((name, o)) = resolved.recv() => {
                if let Some(k) = known.get_mut(&name) {
                    *k = o;
                }
            }
            _ = refresh.tick() => {
                for o in known.values() {
                    merge(&engine, o).await;
                }
            }
            event = rx.recv() => match event {
                None => break,
                Some(MdnsEvent::Resolved(r)) => {
                    let Some(o) = classify::mdns(&r) else {
                        tracing::trace!(name = %r.fullname, "mDNS record is not a device we know");
                        continue;
                    };
                    if known.len() >= MAX_INSTANCES && !known.contains_key(&r.fullname) {
                        continue;
                    }
                    if o.mac.is_none() {
                        // No MAC in the records: ask the neighbour table, off this loop.
                        if let (Some(ip), Some(port)) = (o.ip, o.port) {
                            let (engine, name, mut o) = (engine.clone(), r.fullname.clone(), o.clone());
                            let tx = resolved_tx.clone();
                            // At most LOOKUPS at once: a flood of records cannot flood the LAN.
                            let Ok(permit) = Arc::clone(&lookups).try_acquire_owned() else { continue };
                            tokio::spawn(async move {
                                let _permit = permit;
                                if let Some(mac) = arp::mac_of(ip, port).await {
                                    o.mac = Some(mac);
                                    merge(&engine, &o).await;
                                    let _ = tx.send((name, o)).await;
                                } else {
                                    tracing::debug!(name, %ip, "no MAC for this mDNS record yet (not on this segment?)");
                                }
                            });
                        }
                    } else {
                        merge(&engine, &o).await;
                    }
                    known.insert(r.fullname, o);
                }
                Some(MdnsEvent::Removed(fullname)) => {
                    if let Some(o) = known.remove(&fullname)
                        && let Some(mac) = &o.mac
                    {
                        let still = known.values().any(|k| k.mac.as_ref() == Some(mac));
                        if !still && let Err(e) = engine.discovery_offline(mac, "mdns", "its mDNS records are gone") {
                            tracing::debug!(%fullname, error = %e, "mDNS removal not applied");
                        }
                    }
                }
            }
        }
    }
    browser.stop();
}

async fn merge(engine: &EngineHandle, o: &Observation) {
    match engine.observe(o, "mdns").await {
        Ok(Observed::Ignored(why)) => tracing::debug!(key = %o.key, why, "mDNS observation ignored"),
        Ok(_) => {}
        Err(e) => tracing::debug!(key = %o.key, error = %e, "mDNS observation not merged"),
    }
}
