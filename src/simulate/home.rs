//! The generated home: floors, areas, labels, devices, entities and their states, deterministic
//! for a seed.
//!
//! Registry rows are kept as JSON objects with the keys Home Assistant 2025.x sends from
//! `config/*_registry/list` (the 2026.x shapes are derived from them when they are sent, see
//! [`super::render::registry_list`]); states keep their rendered JSON so `get_states` and the
//! `old_state` of events cost nothing to render again.

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::render::{push_context, push_iso, push_str_lit, ulid};

/// How big a home to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Profile {
    /// About 100 entities.
    #[default]
    Small,
    /// About 500 entities.
    Medium,
    /// About 2,000 entities.
    Large,
}

impl Profile {
    /// The number of entities aimed at.
    pub(crate) fn target_entities(self) -> usize {
        match self {
            Profile::Small => 100,
            Profile::Medium => 500,
            Profile::Large => 2_000,
        }
    }

    fn areas(self) -> usize {
        match self {
            Profile::Small => 8,
            Profile::Medium => 24,
            Profile::Large => 80,
        }
    }

    fn persons(self) -> usize {
        match self {
            Profile::Small => 2,
            Profile::Medium => 4,
            Profile::Large => 6,
        }
    }

    fn floors(self) -> &'static [(&'static str, &'static str, i64)] {
        const ALL: [(&str, &str, i64); 5] = [
            ("ground_floor", "Ground Floor", 0),
            ("first_floor", "First Floor", 1),
            ("basement", "Basement", -1),
            ("second_floor", "Second Floor", 2),
            ("attic", "Attic", 3),
        ];
        match self {
            Profile::Small => &ALL[..2],
            Profile::Medium => &ALL[..3],
            Profile::Large => &ALL[..5],
        }
    }
}

/// One entity's current state, with its rendered JSON.
#[derive(Debug, Clone)]
pub(crate) struct EntityState {
    /// Entity id.
    pub entity_id: String,
    /// State string.
    pub state: String,
    /// Attributes.
    pub attributes: Map<String, Value>,
    /// The attributes rendered as a JSON object.
    pub attrs_json: Arc<str>,
    /// `last_changed`, µs since the epoch.
    pub last_changed: i64,
    /// `last_updated`, µs.
    pub last_updated: i64,
    /// `last_reported`, µs.
    pub last_reported: i64,
    /// Context id of the last write.
    pub context_id: String,
    /// Parent context id.
    pub context_parent: Option<String>,
    /// User id of the context.
    pub context_user: Option<String>,
    /// The whole state object rendered as JSON.
    pub json: Arc<str>,
}

impl EntityState {
    /// A new state at `now` (µs) with context `context_id`.
    pub(crate) fn new(
        entity_id: &str,
        state: &str,
        attributes: Map<String, Value>,
        now: i64,
    ) -> Self {
        let attrs_json: Arc<str> = Value::Object(attributes.clone()).to_string().into();
        let mut s = EntityState {
            entity_id: entity_id.to_owned(),
            state: state.to_owned(),
            attributes,
            attrs_json,
            last_changed: now,
            last_updated: now,
            last_reported: now,
            context_id: ulid(now / 1_000, u128::from(fxhash(entity_id))),
            context_parent: None,
            context_user: None,
            json: Arc::from(""),
        };
        s.render();
        s
    }

    /// Re-renders [`EntityState::json`] after a change.
    pub(crate) fn render(&mut self) {
        let mut out = String::with_capacity(160 + self.attrs_json.len());
        out.push_str("{\"entity_id\":");
        push_str_lit(&mut out, &self.entity_id);
        out.push_str(",\"state\":");
        push_str_lit(&mut out, &self.state);
        out.push_str(",\"attributes\":");
        out.push_str(&self.attrs_json);
        out.push_str(",\"last_changed\":\"");
        push_iso(&mut out, self.last_changed);
        out.push_str("\",\"last_reported\":\"");
        push_iso(&mut out, self.last_reported);
        out.push_str("\",\"last_updated\":\"");
        push_iso(&mut out, self.last_updated);
        out.push_str("\",\"context\":");
        push_context(
            &mut out,
            &self.context_id,
            self.context_parent.as_deref(),
            self.context_user.as_deref(),
        );
        out.push('}');
        self.json = out.into();
    }

    /// Replaces the attributes (and their rendered form).
    pub(crate) fn set_attributes(&mut self, attributes: Map<String, Value>) {
        self.attrs_json = Value::Object(attributes.clone()).to_string().into();
        self.attributes = attributes;
    }

    /// The domain of the entity id.
    pub(crate) fn domain(&self) -> &str {
        crate::ha::model::domain_of(&self.entity_id)
    }
}

/// A small deterministic hash (FNV-1a) for ids derived from names.
pub(crate) fn fxhash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Which entities of an area the routines drive.
#[derive(Debug, Clone, Default)]
pub(crate) struct AreaRole {
    /// Area id.
    pub area_id: String,
    /// Whether the area is a bedroom (lights and media at night).
    pub bedroom: bool,
    /// Whether it is the living room (evening media).
    pub living: bool,
    /// Lights.
    pub lights: Vec<String>,
    /// Motion sensor.
    pub motion: Option<String>,
    /// Illuminance sensor.
    pub illuminance: Option<String>,
    /// Temperature sensors.
    pub temperature: Vec<String>,
    /// Humidity sensors.
    pub humidity: Vec<String>,
    /// Door sensor.
    pub door: Option<String>,
    /// Smart plugs: (switch, power sensor, energy sensor).
    pub plugs: Vec<(String, String, String)>,
    /// Thermostat.
    pub climate: Option<String>,
    /// Media players.
    pub media: Vec<String>,
    /// Battery sensors.
    pub batteries: Vec<String>,
}

/// A person and their habits.
#[derive(Debug, Clone)]
pub(crate) struct PersonRole {
    /// `person.*` entity id.
    pub entity_id: String,
    /// Whether they leave the house on weekdays.
    pub commutes: bool,
    /// Their bedroom (area index).
    pub bedroom: usize,
    /// Their name.
    pub name: String,
    /// Their Home Assistant user (the first person is the owner, the token's user).
    pub user_id: String,
}

/// The generated home: registries, states and the roles the routines use.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    /// Floor registry rows.
    pub floors: Vec<Value>,
    /// Area registry rows.
    pub areas: Vec<Value>,
    /// Label registry rows.
    pub labels: Vec<Value>,
    /// Device registry rows.
    pub devices: Vec<Value>,
    /// Entity registry rows.
    pub entities: Vec<Value>,
    /// Current states.
    pub states: Vec<EntityState>,
    /// Entity id → index into `states`.
    pub index: HashMap<String, usize>,
    /// Per-area roles.
    pub roles: Vec<AreaRole>,
    /// Persons.
    pub persons: Vec<PersonRole>,
    /// Whole-house power and energy sensors.
    pub meter: Option<(String, String)>,
    /// Per-phase power sensors of the meter (on the meter's child devices).
    pub meter_phases: Vec<String>,
    /// Child device id → parent device id (Home Assistant 2026's `parent_device_id`).
    pub parent_of: HashMap<String, String>,
    /// The front door's smart lock (`lock.*`), in the hallway, if the home has one.
    pub lock: Option<String>,
}

/// Fixed creation time of the generated registry rows (2024-01-01), so lists repeat per seed.
const CREATED_AT: f64 = 1_704_067_200.0;

const AREA_TEMPLATES: [(&str, &str); 16] = [
    ("Living Room", "mdi:sofa"),
    ("Kitchen", "mdi:stove"),
    ("Bedroom", "mdi:bed"),
    ("Bathroom", "mdi:shower"),
    ("Hallway", "mdi:door"),
    ("Office", "mdi:desk"),
    ("Dining Room", "mdi:table-chair"),
    ("Kids Room", "mdi:teddy-bear"),
    ("Guest Room", "mdi:bed-outline"),
    ("Laundry", "mdi:washing-machine"),
    ("Garage", "mdi:garage"),
    ("Garden", "mdi:flower"),
    ("Porch", "mdi:home-import-outline"),
    ("Storage", "mdi:archive"),
    ("Gym", "mdi:dumbbell"),
    ("Library", "mdi:bookshelf"),
];

const PERSON_NAMES: [&str; 8] = [
    "Alex", "Sam", "Robin", "Kim", "Jo", "Charlie", "Toni", "Max",
];

struct Catalogue {
    integration: &'static str,
    manufacturer: &'static str,
    model: &'static str,
    model_id: &'static str,
    sw: &'static str,
}

const HUE: Catalogue = Catalogue {
    integration: "hue",
    manufacturer: "Signify Netherlands B.V.",
    model: "Hue White and Color Ambiance A19",
    model_id: "LCA001",
    sw: "1.116.3",
};
const MOTION: Catalogue = Catalogue {
    integration: "zha",
    manufacturer: "LUMI",
    model: "Aqara Motion Sensor P1",
    model_id: "lumi.motion.ac02",
    sw: "0x00000024",
};
const DOOR: Catalogue = Catalogue {
    integration: "zha",
    manufacturer: "LUMI",
    model: "Aqara Door and Window Sensor",
    model_id: "lumi.sensor_magnet.aq2",
    sw: "0x00000003",
};
const CLIMATE_SENSOR: Catalogue = Catalogue {
    integration: "zha",
    manufacturer: "LUMI",
    model: "Aqara Temperature and Humidity Sensor",
    model_id: "lumi.weather",
    sw: "0x00000005",
};
const PLUG: Catalogue = Catalogue {
    integration: "shelly",
    manufacturer: "Shelly",
    model: "Shelly Plus Plug S",
    model_id: "SNPL-00112EU",
    sw: "1.4.4",
};
const LOCK: Catalogue = Catalogue {
    integration: "nuki",
    manufacturer: "Nuki Home Solutions GmbH",
    model: "Smart Lock 3.0 Pro",
    model_id: "SL3P",
    sw: "3.8.4",
};
const TRV: Catalogue = Catalogue {
    integration: "tado",
    manufacturer: "tado°",
    model: "Smart Radiator Thermostat",
    model_id: "VA02",
    sw: "110.1",
};
const SPEAKER: Catalogue = Catalogue {
    integration: "sonos",
    manufacturer: "Sonos",
    model: "One",
    model_id: "S18",
    sw: "16.4",
};
const METER: Catalogue = Catalogue {
    integration: "shelly",
    manufacturer: "Shelly",
    model: "Shelly Pro 3EM",
    model_id: "SPEM-003CEBEU",
    sw: "1.4.4",
};

/// Turns a display name into an id part (`Living Room 2` → `living_room_2`).
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        "unnamed".into()
    } else {
        out
    }
}

struct Builder {
    rng: StdRng,
    home: Home,
    config_entries: HashMap<&'static str, String>,
    now: i64,
    serial: u64,
}

impl Builder {
    fn hex32(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    fn created(&mut self) -> f64 {
        self.serial += 1;
        CREATED_AT + self.serial as f64 * 1.25
    }

    fn config_entry(&mut self, integration: &'static str) -> String {
        if let Some(id) = self.config_entries.get(integration) {
            return id.clone();
        }
        let ms = (CREATED_AT as i64) * 1_000 + self.config_entries.len() as i64;
        let id = ulid(ms, self.rng.random());
        self.config_entries.insert(integration, id.clone());
        id
    }

    fn device(&mut self, cat: &Catalogue, name: &str, area_id: &str, labels: &[&str]) -> String {
        let id = self.hex32();
        let entry = self.config_entry(cat.integration);
        let created = self.created();
        let ident = format!("{:016x}", self.rng.random::<u64>());
        let mac: Vec<String> = (0..6)
            .map(|_| format!("{:02x}", self.rng.random::<u8>()))
            .collect();
        self.home.devices.push(json!({
            "area_id": area_id,
            "configuration_url": null,
            "config_entries": [entry],
            "config_entries_subentries": {entry.clone(): [null]},
            "connections": [["mac", mac.join(":")]],
            "created_at": created,
            "disabled_by": null,
            "entry_type": null,
            "hw_version": null,
            "id": id,
            "identifiers": [[cat.integration, ident]],
            "labels": labels,
            "manufacturer": cat.manufacturer,
            "model": cat.model,
            "model_id": cat.model_id,
            "modified_at": created,
            "name_by_user": null,
            "name": name,
            "primary_config_entry": entry,
            "serial_number": null,
            "sw_version": cat.sw,
            "via_device_id": null,
        }));
        id
    }

    fn unique_entity_id(&self, domain: &str, object: &str) -> String {
        let base = format!("{domain}.{object}");
        if !self.home.index.contains_key(&base) {
            return base;
        }
        (2..)
            .map(|n| format!("{base}_{n}"))
            .find(|id| !self.home.index.contains_key(id))
            .unwrap_or(base)
    }

    #[allow(clippy::too_many_arguments)]
    fn entity(
        &mut self,
        domain: &str,
        object: &str,
        platform: &str,
        device: Option<(&str, &Catalogue)>,
        original_name: Option<&str>,
        friendly: &str,
        state: &str,
        mut attributes: Map<String, Value>,
        category: Option<&str>,
        labels: &[&str],
    ) -> String {
        let entity_id = self.unique_entity_id(domain, object);
        let created = self.created();
        let id = self.hex32();
        let config_entry = device.map(|(_, cat)| self.config_entry(cat.integration));
        self.home.entities.push(json!({
            "area_id": null,
            "categories": {},
            "config_entry_id": config_entry,
            "config_subentry_id": null,
            "created_at": created,
            "device_id": device.map(|(d, _)| d),
            "disabled_by": null,
            "entity_category": category,
            "entity_id": entity_id,
            "has_entity_name": device.is_some(),
            "hidden_by": null,
            "icon": null,
            "id": id,
            "labels": labels,
            "modified_at": created,
            "name": null,
            "options": {"conversation": {"should_expose": category.is_none()}},
            "original_name": original_name,
            "platform": platform,
            "translation_key": null,
            "unique_id": format!("{:x}", fxhash(&entity_id) ^ self.rng.random::<u64>()),
        }));
        attributes.insert("friendly_name".into(), Value::from(friendly));
        let st = EntityState::new(&entity_id, state, attributes, self.now);
        self.home
            .index
            .insert(entity_id.clone(), self.home.states.len());
        self.home.states.push(st);
        entity_id
    }

    /// Marks the entity just added as named the legacy way (`has_entity_name: false`): its
    /// whole name, as Home Assistant 2025 sends it, is `original_name`.
    fn legacy_name(&mut self, original_name: &str) {
        if let Some(row) = self.home.entities.last_mut() {
            row["has_entity_name"] = json!(false);
            row["original_name"] = json!(original_name);
        }
    }

    /// A battery sensor named the legacy way, its name starting with the device's.
    fn battery(
        &mut self,
        device: &str,
        device_name: &str,
        cat: &Catalogue,
        area_name: &str,
        role: usize,
    ) {
        let level = self.rng.random_range(35..=100);
        let name = format!("{device_name} Battery");
        let id = self.entity(
            "sensor",
            &format!("{}_{}_battery", slug(area_name), slug(cat.model)),
            cat.integration,
            Some((device, cat)),
            Some("Battery"),
            &name,
            &level.to_string(),
            sensor_attrs("%", "battery", "measurement"),
            Some("diagnostic"),
            &[],
        );
        self.legacy_name(&name);
        self.home.roles[role].batteries.push(id);
    }

    fn light(&mut self, area_name: &str, area_id: &str, role: usize, n: usize) {
        let name = format!("{area_name} Light {n}");
        let device = self.device(&HUE, &name, area_id, &[]);
        let mut attrs = Map::new();
        attrs.insert("supported_color_modes".into(), json!(["brightness"]));
        attrs.insert("color_mode".into(), Value::Null);
        attrs.insert("brightness".into(), Value::Null);
        attrs.insert("supported_features".into(), json!(40));
        let id = self.entity(
            "light",
            &slug(&name),
            "hue",
            Some((&device, &HUE)),
            None,
            &name,
            "off",
            attrs,
            None,
            &["lighting"],
        );
        self.home.roles[role].lights.push(id);
    }

    fn plug(&mut self, area_name: &str, area_id: &str, role: usize, n: usize) {
        let name = format!("{area_name} Plug {n}");
        let device = self.device(&PLUG, &name, area_id, &["energy"]);
        let obj = slug(&name);
        let sw = self.entity(
            "switch",
            &obj,
            "shelly",
            Some((&device, &PLUG)),
            None,
            &name,
            "off",
            Map::new(),
            None,
            &[],
        );
        let power = self.entity(
            "sensor",
            &format!("{obj}_power"),
            "shelly",
            Some((&device, &PLUG)),
            Some("Power"),
            &format!("{name} Power"),
            "0.0",
            sensor_attrs("W", "power", "measurement"),
            None,
            &["energy"],
        );
        let kwh = format!("{:.3}", self.rng.random_range(1.0..400.0));
        let energy = self.entity(
            "sensor",
            &format!("{obj}_energy"),
            "shelly",
            Some((&device, &PLUG)),
            Some("Energy"),
            &format!("{name} Energy"),
            &kwh,
            sensor_attrs("kWh", "energy", "total_increasing"),
            None,
            &["energy"],
        );
        self.home.roles[role].plugs.push((sw, power, energy));
    }

    fn motion(&mut self, area_name: &str, area_id: &str, role: usize) {
        let name = format!("{area_name} Motion Sensor");
        let device = self.device(&MOTION, &name, area_id, &["security"]);
        let obj = slug(area_name);
        let m = self.entity(
            "binary_sensor",
            &format!("{obj}_motion"),
            "zha",
            Some((&device, &MOTION)),
            Some("Motion"),
            &format!("{name} Motion"),
            "off",
            class_attrs("motion"),
            None,
            &["security"],
        );
        let lux = self.rng.random_range(0..400).to_string();
        let l = self.entity(
            "sensor",
            &format!("{obj}_illuminance"),
            "zha",
            Some((&device, &MOTION)),
            Some("Illuminance"),
            &format!("{name} Illuminance"),
            &lux,
            sensor_attrs("lx", "illuminance", "measurement"),
            None,
            &[],
        );
        self.home.roles[role].motion = Some(m);
        self.home.roles[role].illuminance = Some(l);
        self.battery(&device, &name, &MOTION, area_name, role);
    }

    fn climate_sensor(&mut self, area_name: &str, area_id: &str, role: usize) {
        let name = format!("{area_name} Climate Sensor");
        let device = self.device(&CLIMATE_SENSOR, &name, area_id, &["climate"]);
        let obj = slug(area_name);
        let t = format!("{:.1}", self.rng.random_range(19.0..23.0));
        let te = self.entity(
            "sensor",
            &format!("{obj}_temperature"),
            "zha",
            Some((&device, &CLIMATE_SENSOR)),
            Some("Temperature"),
            &format!("{name} Temperature"),
            &t,
            sensor_attrs("°C", "temperature", "measurement"),
            None,
            &["climate"],
        );
        let h = format!("{:.1}", self.rng.random_range(38.0..55.0));
        let hu = self.entity(
            "sensor",
            &format!("{obj}_humidity"),
            "zha",
            Some((&device, &CLIMATE_SENSOR)),
            Some("Humidity"),
            &format!("{name} Humidity"),
            &h,
            sensor_attrs("%", "humidity", "measurement"),
            None,
            &[],
        );
        self.home.roles[role].temperature.push(te);
        self.home.roles[role].humidity.push(hu);
        self.battery(&device, &name, &CLIMATE_SENSOR, area_name, role);
    }

    fn door(&mut self, area_name: &str, area_id: &str, role: usize) {
        let name = format!("{area_name} Door Sensor");
        let device = self.device(&DOOR, &name, area_id, &["security"]);
        let d = self.entity(
            "binary_sensor",
            &format!("{}_door", slug(area_name)),
            "zha",
            Some((&device, &DOOR)),
            Some("Door"),
            &format!("{name} Door"),
            "off",
            class_attrs("door"),
            None,
            &["security"],
        );
        self.home.roles[role].door = Some(d);
        self.battery(&device, &name, &DOOR, area_name, role);
    }

    fn thermostat(&mut self, area_name: &str, area_id: &str, role: usize) {
        let name = format!("{area_name} Thermostat");
        let device = self.device(&TRV, &name, area_id, &["climate"]);
        let current = self.rng.random_range(19.0f64..22.0);
        let attrs = json!({
            "hvac_modes": ["off", "heat", "auto"],
            "min_temp": 5.0, "max_temp": 25.0, "target_temp_step": 0.5,
            "current_temperature": (current * 10.0).round() / 10.0,
            "temperature": 20.0,
            "current_humidity": 45,
            "hvac_action": "idle",
            "supported_features": 385,
        });
        let Value::Object(attrs) = attrs else {
            return;
        };
        let c = self.entity(
            "climate",
            &slug(area_name),
            "tado",
            Some((&device, &TRV)),
            None,
            &name,
            "heat",
            attrs,
            None,
            &["climate"],
        );
        self.home.roles[role].climate = Some(c);
    }

    fn lock(&mut self, area_name: &str, area_id: &str) {
        let name = format!("{area_name} Front Door Lock");
        let device = self.device(&LOCK, &name, area_id, &["security"]);
        let attrs = json!({"supported_features": 1, "battery_critical": false});
        let Value::Object(attrs) = attrs else {
            return;
        };
        let id = self.entity(
            "lock",
            "front_door",
            LOCK.integration,
            Some((&device, &LOCK)),
            None,
            &name,
            "unlocked",
            attrs,
            None,
            &["security"],
        );
        self.home.lock = Some(id);
    }

    fn speaker(&mut self, area_name: &str, area_id: &str, role: usize) {
        let name = format!("{area_name} Speaker");
        let device = self.device(&SPEAKER, &name, area_id, &[]);
        let attrs = json!({
            "volume_level": 0.25, "is_volume_muted": false,
            "device_class": "speaker", "supported_features": 4127295,
            "source_list": ["Line-in", "TV"],
        });
        let Value::Object(attrs) = attrs else {
            return;
        };
        let m = self.entity(
            "media_player",
            &format!("{}_speaker", slug(area_name)),
            "sonos",
            Some((&device, &SPEAKER)),
            None,
            &name,
            "idle",
            attrs,
            None,
            &[],
        );
        self.home.roles[role].media.push(m);
    }
}

fn sensor_attrs(unit: &str, class: &str, state_class: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("state_class".into(), Value::from(state_class));
    m.insert("unit_of_measurement".into(), Value::from(unit));
    m.insert("device_class".into(), Value::from(class));
    m
}

fn class_attrs(class: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("device_class".into(), Value::from(class));
    m
}

/// Generates the home for `profile` and `seed`, every state stamped `now` (µs).
pub(crate) fn generate(profile: Profile, seed: u64, now: i64) -> Home {
    let mut b = Builder {
        rng: StdRng::seed_from_u64(seed),
        home: Home {
            floors: Vec::new(),
            areas: Vec::new(),
            labels: Vec::new(),
            devices: Vec::new(),
            entities: Vec::new(),
            states: Vec::new(),
            index: HashMap::new(),
            roles: Vec::new(),
            persons: Vec::new(),
            meter: None,
            meter_phases: Vec::new(),
            parent_of: HashMap::new(),
            lock: None,
        },
        config_entries: HashMap::new(),
        now,
        serial: 0,
    };
    for (label_id, name, color, icon) in [
        ("energy", "Energy", "amber", "mdi:flash"),
        ("security", "Security", "red", "mdi:shield-home"),
        ("lighting", "Lighting", "yellow", "mdi:lightbulb"),
        ("climate", "Climate", "blue", "mdi:thermometer"),
        ("critical", "Critical", "deep-orange", "mdi:alert"),
    ] {
        let created = b.created();
        b.home.labels.push(json!({
            "color": color, "created_at": created, "description": null, "icon": icon,
            "label_id": label_id, "name": name, "modified_at": created,
        }));
    }
    let floors = profile.floors();
    for (floor_id, name, level) in floors {
        let created = b.created();
        b.home.floors.push(json!({
            "aliases": [], "created_at": created, "floor_id": floor_id,
            "icon": format!("mdi:home-floor-{}", level.max(&0)), "level": level,
            "modified_at": created, "name": name,
        }));
    }
    // areas: the templates in turn, numbered from the second round on, spread over the floors
    let mut area_names = Vec::new();
    for i in 0..profile.areas() {
        let (base, icon) = AREA_TEMPLATES[i % AREA_TEMPLATES.len()];
        let round = i / AREA_TEMPLATES.len();
        let name = if round == 0 {
            base.to_owned()
        } else {
            format!("{base} {}", round + 1)
        };
        let area_id = slug(&name);
        let floor = floors[(i * 7 + b.rng.random_range(0..3)) % floors.len()].0;
        let created = b.created();
        let labels: Vec<&str> = if base == "Garage" || base == "Porch" {
            vec!["security"]
        } else {
            vec![]
        };
        b.home.areas.push(json!({
            "aliases": [], "area_id": area_id, "floor_id": floor,
            "humidity_entity_id": null, "icon": icon, "labels": labels, "name": name,
            "picture": null, "temperature_entity_id": null,
            "created_at": created, "modified_at": created,
        }));
        b.home.roles.push(AreaRole {
            area_id: area_id.clone(),
            bedroom: matches!(base, "Bedroom" | "Kids Room" | "Guest Room"),
            living: base == "Living Room",
            ..AreaRole::default()
        });
        area_names.push((name, area_id));
    }
    // persons
    let bedrooms: Vec<usize> = (0..b.home.roles.len())
        .filter(|&i| b.home.roles[i].bedroom)
        .collect();
    for i in 0..profile.persons() {
        let name = PERSON_NAMES[i % PERSON_NAMES.len()];
        let generated_user = b.hex32();
        // the first person is the owner: the token's user, who makes the REST and WebSocket calls
        let user = if i == 0 {
            super::hub::OWNER_USER_ID.to_owned()
        } else {
            generated_user
        };
        let attrs =
            json!({"editable": true, "id": slug(name), "user_id": user, "device_trackers": []});
        let Value::Object(attrs) = attrs else {
            continue;
        };
        let id = b.entity(
            "person",
            &slug(name),
            "person",
            None,
            None,
            name,
            "home",
            attrs,
            None,
            &[],
        );
        let commutes = b.rng.random_bool(0.7);
        let bedroom = bedrooms
            .get(i / 2 % bedrooms.len().max(1))
            .copied()
            .unwrap_or(0);
        b.home.persons.push(PersonRole {
            entity_id: id,
            commutes,
            bedroom,
            name: name.to_owned(),
            user_id: user,
        });
    }
    // the whole-house meter
    let mut meter_device = None;
    if let Some((name, area_id)) = area_names
        .iter()
        .find(|(n, _)| n == "Garage")
        .or(area_names.first())
        .cloned()
    {
        let device = b.device(
            &METER,
            "House Energy Meter",
            &area_id,
            &["energy", "critical"],
        );
        let p = b.entity(
            "sensor",
            "house_power",
            "shelly",
            Some((&device, &METER)),
            Some("Power"),
            "House Power",
            "350.0",
            sensor_attrs("W", "power", "measurement"),
            None,
            &["energy"],
        );
        b.legacy_name("House Power");
        let e = b.entity(
            "sensor",
            "house_energy",
            "shelly",
            Some((&device, &METER)),
            Some("Energy"),
            "House Energy",
            "12873.412",
            sensor_attrs("kWh", "energy", "total_increasing"),
            None,
            &["energy", "critical"],
        );
        b.legacy_name("House Energy");
        let _ = name;
        b.home.meter = Some((p, e));
        meter_device = Some((device, area_id));
    }
    // the base set of every area
    for (role, (name, area_id)) in area_names.iter().enumerate() {
        let base = AREA_TEMPLATES[role % AREA_TEMPLATES.len()].0;
        b.light(name, area_id, role, 1);
        if base != "Garden" && base != "Storage" {
            b.motion(name, area_id, role);
            b.climate_sensor(name, area_id, role);
        }
        if matches!(base, "Hallway" | "Garage" | "Porch" | "Kitchen") {
            b.door(name, area_id, role);
        }
        if matches!(
            base,
            "Living Room" | "Bedroom" | "Office" | "Kids Room" | "Guest Room"
        ) {
            b.thermostat(name, area_id, role);
        }
        if matches!(base, "Living Room" | "Bedroom" | "Kitchen") {
            b.speaker(name, area_id, role);
        }
        if matches!(base, "Kitchen" | "Office" | "Living Room" | "Laundry") {
            b.plug(name, area_id, role, 1);
        }
    }
    // fill up to the target with more lights and plugs, area after area
    let target = profile.target_entities();
    let mut round = 2;
    'fill: loop {
        for (role, (name, area_id)) in area_names.iter().enumerate() {
            if b.home.states.len() + 1 > target {
                break 'fill;
            }
            if b.rng.random_bool(0.6) || b.home.states.len() + 3 > target {
                b.light(name, area_id, role, round);
            } else {
                b.plug(name, area_id, role, round);
            }
        }
        round += 1;
    }
    // a few entities carry their own area (different from their device's), as users set them
    let n = b.home.entities.len();
    let areas = b.home.areas.len();
    for k in 0..(n / 50).max(1) {
        let e = b.rng.random_range(0..n);
        let a = (k * 3 + 1) % areas;
        let area_id = b.home.areas[a]["area_id"].clone();
        if b.home.entities[e]["device_id"].is_string() {
            b.home.entities[e]["area_id"] = area_id;
        }
    }
    // the meter's phases: child devices (made last, so the rest of a seed's home stays as it was)
    if let Some((parent, area_id)) = meter_device {
        for phase in ["A", "B", "C"] {
            let name = format!("House Energy Meter Phase {phase}");
            let child = b.device(&METER, &name, &area_id, &["energy"]);
            if let Some(row) = b.home.devices.last_mut() {
                row["via_device_id"] = json!(parent);
            }
            b.home.parent_of.insert(child.clone(), parent.clone());
            let id = b.entity(
                "sensor",
                &format!("house_power_phase_{}", phase.to_ascii_lowercase()),
                "shelly",
                Some((&child, &METER)),
                Some("Power"),
                &format!("{name} Power"),
                "110.0",
                sensor_attrs("W", "power", "measurement"),
                None,
                &["energy"],
            );
            b.home.meter_phases.push(id);
        }
    }
    // the front door's smart lock (made last, so the rest of a seed's home stays as it was)
    if let Some((name, area_id)) = area_names.iter().find(|(n, _)| n == "Hallway").cloned() {
        b.lock(&name, &area_id);
    }
    b.home
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_per_seed() {
        let a = generate(Profile::Small, 7, 1_000_000);
        let b = generate(Profile::Small, 7, 1_000_000);
        let c = generate(Profile::Small, 8, 1_000_000);
        assert_eq!(a.entities, b.entities);
        assert_eq!(a.devices, b.devices);
        assert_eq!(a.areas, b.areas);
        let states = |h: &Home| {
            h.states
                .iter()
                .map(|s| s.json.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(states(&a), states(&b));
        assert_ne!(a.devices, c.devices);
    }

    #[test]
    fn profiles_have_about_the_promised_size() {
        for (p, lo, hi) in [
            (Profile::Small, 90, 110),
            (Profile::Medium, 450, 550),
            (Profile::Large, 1_800, 2_200),
        ] {
            let h = generate(p, 1, 0);
            assert!(
                (lo..=hi).contains(&h.states.len()),
                "{p:?}: {}",
                h.states.len()
            );
            assert_eq!(h.states.len(), h.entities.len());
            assert_eq!(h.index.len(), h.states.len());
        }
    }

    #[test]
    fn rows_decode_as_home_assistant_rows_and_reference_each_other() {
        use crate::registry::record::{Area, Device, EntityEntry, Floor, Label};
        let h = generate(Profile::Medium, 3, 0);
        let floors: Vec<Floor> =
            serde_json::from_value(Value::from(h.floors.clone())).expect("floors");
        let areas: Vec<Area> = serde_json::from_value(Value::from(h.areas.clone())).expect("areas");
        let _: Vec<Label> = serde_json::from_value(Value::from(h.labels.clone())).expect("labels");
        let devices: Vec<Device> =
            serde_json::from_value(Value::from(h.devices.clone())).expect("devices");
        let entities: Vec<EntityEntry> =
            serde_json::from_value(Value::from(h.entities.clone())).expect("entities");
        for a in &areas {
            assert!(
                floors
                    .iter()
                    .any(|f| Some(&f.floor_id) == a.floor_id.as_ref())
            );
        }
        for d in &devices {
            assert!(areas.iter().any(|a| Some(&a.area_id) == d.area_id.as_ref()));
            assert!(d.manufacturer.is_some() && d.model.is_some() && !d.identifiers.is_empty());
        }
        for e in &entities {
            if let Some(dev) = &e.device_id {
                assert!(devices.iter().any(|d| &d.id == dev));
            }
            assert!(h.index.contains_key(&e.entity_id));
        }
        // units and device classes live in the state attributes
        assert!(
            h.states
                .iter()
                .any(
                    |s| s.attributes.get("unit_of_measurement") == Some(&Value::from("kWh"))
                        && s.attributes.get("device_class") == Some(&Value::from("energy"))
                )
        );
        for s in &h.states {
            let v: Value = serde_json::from_str(&s.json).expect("state json");
            assert_eq!(v["entity_id"], s.entity_id.as_str());
        }
    }
}
