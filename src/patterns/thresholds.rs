//! The thresholds a pattern must meet, per domain: `analysis.min_*` with
//! `analysis.domain_overrides`, and a confidence floor for security-relevant entities.

use std::collections::HashMap;

use crate::config::AnalysisSettings;

/// No pattern of a security-relevant entity (a lock, an alarm panel, a garage door or door cover)
/// is reported below this confidence, whatever the settings say: a wrong suggestion there opens a
/// house.
pub(crate) const SECURITY_MIN_CONFIDENCE: f64 = 0.85;

/// Cover device classes that are security-relevant (a cover of another class is a blind).
const SECURITY_COVER_CLASSES: [&str; 2] = ["garage", "door"];

/// The thresholds for one entity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    /// Occurrences a daily time-of-day pattern needs over `window_days`.
    pub min_occurrences: u32,
    /// Confidence any pattern needs.
    pub min_confidence: f64,
    /// Support a co-occurrence needs (of the entity that follows).
    pub min_support: u32,
}

/// `(domain, device class)` → [`Limits`].
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    general: Limits,
    by_domain: HashMap<String, Limits>,
}

impl Thresholds {
    /// From the `analysis` settings (validated: every override names a domain once).
    pub(crate) fn from_settings(s: &AnalysisSettings) -> Self {
        let general = Limits {
            min_occurrences: s.min_occurrences,
            min_confidence: s.min_confidence,
            min_support: s.min_support,
        };
        let by_domain = s
            .domain_overrides
            .iter()
            .map(|o| {
                let limits = Limits {
                    min_occurrences: o.min_occurrences.unwrap_or(general.min_occurrences),
                    min_confidence: o.min_confidence.unwrap_or(general.min_confidence),
                    min_support: o.min_support.unwrap_or(general.min_support),
                };
                (o.domain.trim().to_owned(), limits)
            })
            .collect();
        Thresholds { general, by_domain }
    }

    /// The limits of an entity of `domain` with `device_class` (from its state's attributes or
    /// the entity registry; `None` when unknown).
    pub(crate) fn lookup(&self, domain: &str, device_class: Option<&str>) -> Limits {
        let mut limits = self.by_domain.get(domain).copied().unwrap_or(self.general);
        if is_security_relevant(domain, device_class) {
            limits.min_confidence = limits.min_confidence.max(SECURITY_MIN_CONFIDENCE);
        }
        limits
    }

    /// The smallest confidence any entity needs (for pruning what cannot become a pattern).
    pub(crate) fn lowest_confidence(&self) -> f64 {
        self.by_domain
            .values()
            .map(|l| l.min_confidence)
            .fold(self.general.min_confidence, f64::min)
    }

    /// The smallest support any entity needs.
    #[cfg(test)]
    pub(crate) fn lowest_support(&self) -> u32 {
        self.by_domain
            .values()
            .map(|l| l.min_support)
            .fold(self.general.min_support, u32::min)
    }
}

/// Locks, alarm panels, and covers of class garage or door.
pub(crate) fn is_security_relevant(domain: &str, device_class: Option<&str>) -> bool {
    match domain {
        "lock" | "alarm_control_panel" => true,
        "cover" => device_class.is_some_and(|c| SECURITY_COVER_CLASSES.contains(&c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DomainOverride;

    #[test]
    fn overrides_and_the_security_floor_apply() {
        let t = Thresholds::from_settings(&AnalysisSettings::default());
        let light = t.lookup("light", None);
        assert_eq!((light.min_occurrences, light.min_support), (8, 6));
        assert!((light.min_confidence - 0.6).abs() < 1e-9);
        let lock = t.lookup("lock", None);
        assert_eq!((lock.min_occurrences, lock.min_support), (4, 4));
        assert!((lock.min_confidence - 0.85).abs() < 1e-9);
        let media = t.lookup("media_player", None);
        assert_eq!((media.min_occurrences, media.min_support), (6, 4));
        let climate = t.lookup("climate", None);
        assert_eq!((climate.min_occurrences, climate.min_support), (10, 10));
        assert!((climate.min_confidence - 0.75).abs() < 1e-9);
        let fan = t.lookup("fan", None);
        assert_eq!((fan.min_occurrences, fan.min_support), (10, 10));
        assert!((fan.min_confidence - 0.7).abs() < 1e-9);
        assert!((t.lookup("alarm_control_panel", None).min_confidence - 0.85).abs() < 1e-9);
        assert!((t.lookup("cover", Some("garage")).min_confidence - 0.85).abs() < 1e-9);
        assert!((t.lookup("cover", Some("door")).min_confidence - 0.85).abs() < 1e-9);
        assert!((t.lookup("cover", Some("blind")).min_confidence - 0.7).abs() < 1e-9);
        assert!((t.lookup("cover", None).min_confidence - 0.7).abs() < 1e-9);
        assert!((t.lowest_confidence() - 0.6).abs() < 1e-9);
        assert_eq!(t.lowest_support(), 4);
    }

    #[test]
    fn a_lock_stays_conservative_when_settings_lower_it() {
        let s = AnalysisSettings {
            min_confidence: 0.5,
            domain_overrides: vec![DomainOverride {
                domain: "lock".into(),
                min_occurrences: None,
                min_confidence: Some(0.5),
                min_support: None,
            }],
            ..AnalysisSettings::default()
        };
        let t = Thresholds::from_settings(&s);
        assert!((t.lookup("lock", None).min_confidence - 0.85).abs() < 1e-9);
        assert!((t.lookup("light", None).min_confidence - 0.5).abs() < 1e-9);
    }
}
