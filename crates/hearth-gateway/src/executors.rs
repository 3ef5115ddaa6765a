//! What the gateway knows of the executors, from their heartbeats: who is online (seen
//! within `stale`), their slots and sandboxes, and the languages they offer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_bus::{names, Heartbeat, LanguageInfo};

/// The heartbeats seen, by executor id.
#[derive(Debug)]
pub struct Executors {
    stale: Duration,
    seen: Mutex<HashMap<String, (Instant, Heartbeat)>>,
}

/// Totals over the executors online.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub online: usize,
    pub slots: usize,
    pub busy: usize,
    pub ready: usize,
}

impl Executors {
    pub fn new(stale: Duration) -> Executors {
        Executors { stale, seen: Mutex::new(HashMap::new()) }
    }

    pub fn record(&self, hb: Heartbeat) {
        let mut seen = self.seen.lock().expect("executors lock");
        seen.insert(hb.id.clone(), (Instant::now(), hb));
    }

    fn online(&self) -> Vec<Heartbeat> {
        let seen = self.seen.lock().expect("executors lock");
        seen.values().filter(|(at, _)| at.elapsed() <= self.stale).map(|(_, hb)| hb.clone()).collect()
    }

    /// The executors online, each with the time since its last heartbeat, sorted by id.
    pub fn online_with_age(&self) -> Vec<(Duration, Heartbeat)> {
        let seen = self.seen.lock().expect("executors lock");
        let mut list: Vec<(Duration, Heartbeat)> = seen
            .values()
            .filter(|(at, _)| at.elapsed() <= self.stale)
            .map(|(at, hb)| (at.elapsed(), hb.clone()))
            .collect();
        list.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        list
    }

    pub fn totals(&self) -> Totals {
        self.online().iter().fold(Totals::default(), |t, hb| Totals {
            online: t.online + 1,
            slots: t.slots + hb.slots,
            busy: t.busy + hb.busy,
            ready: t.ready + hb.ready,
        })
    }

    /// Languages offered by executors online, each once, sorted by id.
    pub fn languages(&self) -> Vec<LanguageInfo> {
        let mut by_id: HashMap<String, LanguageInfo> = HashMap::new();
        for hb in self.online() {
            for l in hb.languages {
                by_id.entry(l.id.clone()).or_insert(l);
            }
        }
        let mut list: Vec<LanguageInfo> = by_id.into_values().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Whether `lang` can be run: `Some(true/false)` by the languages any executor ever
    /// offered (one that is down now may be back soon: its runs wait in the queue), `None`
    /// when no executor was ever seen and nothing can be said.
    pub fn offers(&self, lang: &str) -> Option<bool> {
        let seen = self.seen.lock().expect("executors lock");
        if seen.is_empty() {
            return None;
        }
        Some(seen.values().any(|(_, hb)| hb.languages.iter().any(|l| l.answers_to(lang))))
    }
}

/// Records every heartbeat until the subscription ends.
pub async fn listen(client: async_nats::Client, executors: std::sync::Arc<Executors>) {
    let mut sub = match client.subscribe(names::HEARTBEAT_WILDCARD).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to executor heartbeats");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        match serde_json::from_slice::<Heartbeat>(&msg.payload) {
            Ok(hb) => executors.record(hb),
            Err(e) => tracing::debug!(subject = %msg.subject, error = %e, "not a heartbeat"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, langs: &[&str]) -> Heartbeat {
        Heartbeat {
            id: id.into(),
            driver: "process".into(),
            slots: 2,
            busy: 1,
            warm: 2,
            ready: 1,
            languages: langs
                .iter()
                .map(|l| LanguageInfo {
                    id: l.to_string(),
                    name: l.to_string(),
                    version: "1".into(),
                    aliases: vec![format!("{l}x")],
                    compiled: false,
                })
                .collect(),
            runs_done: 0,
            version: String::new(),
        }
    }

    #[test]
    fn languages_and_totals_come_from_fresh_heartbeats() {
        let ex = Executors::new(Duration::from_secs(60));
        assert_eq!(ex.offers("python"), None);
        ex.record(hb("a", &["python", "bash"]));
        ex.record(hb("b", &["python", "c"]));
        let ids: Vec<String> = ex.languages().into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["bash", "c", "python"]);
        assert_eq!(ex.totals(), Totals { online: 2, slots: 4, busy: 2, ready: 2 });
        assert_eq!(ex.offers("PYTHONX"), Some(true));
        assert_eq!(ex.offers("cobol"), Some(false));
        let stale = Executors::new(Duration::ZERO);
        stale.record(hb("a", &["python"]));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(stale.totals().online, 0);
        assert!(stale.languages().is_empty());
        assert_eq!(stale.offers("python"), Some(true));
    }
}
