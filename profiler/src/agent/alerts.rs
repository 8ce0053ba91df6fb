//! Prometheus Alertmanager's webhook (`POST /api/v1/alerts/alertmanager`):
//! each firing alert whose labels name a process, container, unit or pod
//! running on this host starts a deep capture of it, the alert's name its
//! reason. Alertmanager sends every alert of a group at once; as captures
//! run one at a time, the first that resolves starts and the rest are
//! answered as skipped, with why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{captures::Request, state::Shared, target::Target};
use crate::tier::Tier;

/// The payload (version 4); fields the agent does not use are ignored.
#[derive(Debug, Deserialize)]
pub struct Webhook {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What became of each alert.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub started: Vec<Started>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
pub struct Started {
    pub alert: String,
    pub capture: String,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub alert: String,
    pub reason: String,
}

/// The target an alert's labels name, in order of precision: `pid`,
/// `container_id`, `unit`, `pod`, then `comm` (or `process`).
pub fn target_of(labels: &BTreeMap<String, String>) -> Option<Target> {
    let get = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(pid) = get("pid").and_then(|p| p.parse().ok()) {
        return Some(Target { pid: Some(pid), ..Default::default() });
    }
    if let Some(c) = get("container_id") {
        return Some(Target { container: Some(c), ..Default::default() });
    }
    if let Some(u) = get("unit") {
        return Some(Target { unit: Some(u), ..Default::default() });
    }
    if let Some(p) = get("pod") {
        return Some(Target { pod: Some(p), ..Default::default() });
    }
    get("comm").or_else(|| get("process")).map(|c| Target { comm: Some(c), ..Default::default() })
}

/// Start what the firing alerts ask for.
pub fn handle(shared: &Shared, payload: &Webhook) -> Outcome {
    let mut out = Outcome::default();
    let default = shared.captures.limits().default_duration;
    for alert in &payload.alerts {
        let name = alert.labels.get("alertname").cloned().unwrap_or_else(|| "unnamed alert".into());
        let skip = |out: &mut Outcome, reason: String| out.skipped.push(Skipped { alert: name.clone(), reason });
        if alert.status != "firing" {
            skip(&mut out, format!("status is {}", alert.status));
            continue;
        }
        let Some(target) = target_of(&alert.labels) else {
            skip(&mut out, "no pid, container_id, unit, pod or comm label".into());
            continue;
        };
        // An annotation may ask for a length (capped like any capture).
        let duration = alert
            .annotations
            .get("tailprof_duration")
            .and_then(|d| humantime::parse_duration(d).ok())
            .unwrap_or(default);
        let req = Request { duration, tier: Tier::Deep, target, reason: name.clone(), trigger: "alertmanager".into() };
        match shared.start_capture(req) {
            Ok(c) => out.started.push(Started { alert: name, capture: c.id }),
            Err(e) => skip(&mut out, e.to_string()),
        }
    }
    tracing::info!(started = out.started.len(), skipped = out.skipped.len(), "alertmanager webhook");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_most_precise_target() {
        let labels = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let t = target_of(&labels(&[("pod", "web-0"), ("pid", "42")])).unwrap();
        assert_eq!(t.pid, Some(42));
        let t = target_of(&labels(&[("unit", "nginx.service"), ("process", "nginx")])).unwrap();
        assert_eq!(t.unit.as_deref(), Some("nginx.service"));
        assert!(target_of(&labels(&[("alertname", "HighLatency"), ("severity", "page")])).is_none());
        let p: Webhook = serde_json::from_str(
            r#"{"version":"4","status":"firing","receiver":"r","groupLabels":{},"commonLabels":{},
                "alerts":[{"status":"firing","labels":{"alertname":"A","pid":"1"},"annotations":{},
                "startsAt":"2026-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f"}]}"#,
        )
        .unwrap();
        assert_eq!(p.alerts[0].labels["pid"], "1");
    }
}
