//! Which entities are recorded: `include` / `exclude` by domain, entity id and glob.
//!
//! Rules, in order:
//! 1. an entity listed in `include.entities` is recorded;
//! 2. an entity listed in `exclude.entities`, in an `exclude.domains` domain or matching an
//!    `exclude.entity_globs` glob is not;
//! 3. with no include rules at all, everything else is recorded;
//! 4. otherwise it is recorded when its domain or a glob is included.
//!
//! This is Home Assistant's own filter for the common cases; where HA's six-case table differs (an
//! excluded glob inside an included domain) exclusion wins, which is what users expect.

use std::collections::HashSet;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::EntityFilterSettings;
use crate::ha::model::domain_of;

/// A compiled include/exclude filter.
#[derive(Debug, Clone)]
pub struct EntityFilter {
    include: Rules,
    exclude: Rules,
    include_any: bool,
}

#[derive(Debug, Clone)]
struct Rules {
    domains: HashSet<String>,
    entities: HashSet<String>,
    globs: GlobSet,
}

impl Rules {
    fn new(settings: &EntityFilterSettings) -> Result<Self, globset::Error> {
        let mut globs = GlobSetBuilder::new();
        for glob in &settings.entity_globs {
            globs.add(Glob::new(glob)?);
        }
        Ok(Rules {
            domains: settings.domains.iter().cloned().collect(),
            entities: settings.entities.iter().cloned().collect(),
            globs: globs.build()?,
        })
    }

    fn matches_group(&self, entity_id: &str) -> bool {
        self.domains.contains(domain_of(entity_id)) || self.globs.is_match(entity_id)
    }
}

impl EntityFilter {
    /// Compiles the filter; fails on an invalid glob (already rejected by configuration checks).
    pub fn new(
        include: &EntityFilterSettings,
        exclude: &EntityFilterSettings,
    ) -> Result<Self, globset::Error> {
        Ok(EntityFilter {
            include: Rules::new(include)?,
            exclude: Rules::new(exclude)?,
            include_any: !include.is_empty(),
        })
    }

    /// Whether this entity's changes are recorded.
    pub fn allows(&self, entity_id: &str) -> bool {
        if self.include.entities.contains(entity_id) {
            return true;
        }
        if self.exclude.entities.contains(entity_id) || self.exclude.matches_group(entity_id) {
            return false;
        }
        !self.include_any || self.include.matches_group(entity_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(domains: &[&str], entities: &[&str], globs: &[&str]) -> EntityFilterSettings {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        EntityFilterSettings {
            domains: own(domains),
            entities: own(entities),
            entity_globs: own(globs),
        }
    }

    #[test]
    fn empty_filter_records_everything() {
        let f = EntityFilter::new(
            &EntityFilterSettings::default(),
            &EntityFilterSettings::default(),
        )
        .expect("empty filter");
        assert!(f.allows("light.x"));
        assert!(f.allows("sensor.y"));
    }

    #[test]
    fn excludes_only() {
        let f = EntityFilter::new(
            &rules(&[], &[], &[]),
            &rules(&["update"], &["sensor.noisy"], &["sensor.*_rssi"]),
        )
        .expect("filter");
        assert!(f.allows("light.x"));
        assert!(!f.allows("update.fw"));
        assert!(!f.allows("sensor.noisy"));
        assert!(!f.allows("sensor.plug_rssi"));
        assert!(f.allows("sensor.plug_power"));
    }

    #[test]
    fn includes_only() {
        let f = EntityFilter::new(
            &rules(&["light"], &["switch.a"], &["sensor.*_power"]),
            &rules(&[], &[], &[]),
        )
        .expect("filter");
        assert!(f.allows("light.x"));
        assert!(f.allows("switch.a"));
        assert!(!f.allows("switch.b"));
        assert!(f.allows("sensor.plug_power"));
        assert!(!f.allows("sensor.plug_rssi"));
    }

    #[test]
    fn explicit_include_beats_exclusion_and_exclusion_beats_groups() {
        let f = EntityFilter::new(
            &rules(&["sensor"], &["sensor.keep_rssi"], &[]),
            &rules(&[], &[], &["sensor.*_rssi"]),
        )
        .expect("filter");
        assert!(f.allows("sensor.keep_rssi"));
        assert!(!f.allows("sensor.other_rssi"));
        assert!(f.allows("sensor.temp"));
        assert!(!f.allows("light.x"));
    }
}
