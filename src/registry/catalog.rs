//! The catalog: an immutable in-memory snapshot of the whole mirror, indexed for the API.
//!
//! A home has at most a few thousand devices and entities, so the whole registry fits in a few MB.
//! Answering `GET /api/v1/devices?q=…` from memory (a scan over precomputed lowercase search
//! text) takes microseconds and never touches SQLite's connection pool, which is what keeps the
//! registry endpoints far below the API's latency targets under load. The registry task reloads
//! the catalog from SQLite after it applies changes ([`CatalogHandle::reload`]); readers take an
//! `Arc` of the current snapshot ([`CatalogHandle::current`]) and are never blocked by a reload.
//! Because it is loaded from SQLite at start, the catalog answers while Home Assistant is away.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;

use super::search::SearchIndex;
use super::{Area, Device, EntityView, Floor, Label, RegistryError, RegistryStore};
use crate::ha::model::State;
use crate::prepared::{DeflateChunk, PreparedJson};

/// A device with what the API derives for it.
#[derive(Debug, Clone)]
pub(crate) struct CatalogDevice {
    /// The mirror's row.
    pub view: Device,
    /// The floor of the device's area.
    pub floor_id: Option<String>,
    /// Distinct domains of the device's entities, sorted.
    pub domains: Vec<String>,
    /// Indexes into [`Catalog::entities`] of the device's entities.
    pub entities: Vec<usize>,
    /// The device's [`DeviceSummary`] as JSON, rendered once per catalog.
    pub json: Box<str>,
    haystack: String,
    sort_name: String,
}

/// A device with what HomeIQ derives for it: the API's device representation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceSummary {
    /// The registry row.
    #[serde(flatten)]
    pub device: Device,
    /// The name shown: the user's, else the integration's.
    pub display_name: String,
    /// Integration (domain of the first identifier).
    pub integration: Option<String>,
    /// Floor of the device's area.
    pub floor_id: Option<String>,
    /// Distinct domains of its entities.
    pub domains: Vec<String>,
    /// Number of entities.
    pub entity_count: usize,
}

impl From<&CatalogDevice> for DeviceSummary {
    fn from(d: &CatalogDevice) -> Self {
        DeviceSummary {
            display_name: d.display_name().to_owned(),
            integration: d.view.integration().map(str::to_owned),
            device: d.view.clone(),
            floor_id: d.floor_id.clone(),
            domains: d.domains.clone(),
            entity_count: d.entities.len(),
        }
    }
}

impl CatalogDevice {
    /// The name shown for the device: the user's name, else the integration's, else the id.
    pub(crate) fn display_name(&self) -> &str {
        self.view.display_name().unwrap_or(&self.view.id)
    }
}

/// Entity and device counts of one integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct IntegrationCount {
    /// The integration (entity platform), e.g. `hue`.
    pub integration: String,
    /// Registry entities it provides.
    pub entities: usize,
    /// Distinct devices those entities belong to.
    pub devices: usize,
}

/// Filters of a device listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceFilter {
    /// Area id.
    pub area: Option<String>,
    /// Floor id (of the device's area).
    pub floor: Option<String>,
    /// Label id.
    pub label: Option<String>,
    /// Manufacturer (case-insensitive, exact).
    pub manufacturer: Option<String>,
    /// Model (case-insensitive, exact).
    pub model: Option<String>,
    /// Integration (case-insensitive, exact).
    pub integration: Option<String>,
    /// Devices with at least one entity of this domain.
    pub domain: Option<String>,
    /// Free text: every word must occur in the name, manufacturer, model, id or area name.
    pub q: Option<String>,
}

/// Sort keys of device listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum DeviceSort {
    /// Display name (case-insensitive).
    #[default]
    Name,
    /// Manufacturer, then name.
    Manufacturer,
    /// Model, then name.
    Model,
    /// Area id, then name.
    Area,
    /// Number of entities, then name.
    Entities,
    /// Creation time, then name.
    Created,
}

/// Filters of an entity listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntityFilter {
    /// Domain (`light`).
    pub domain: Option<String>,
    /// Device id.
    pub device_id: Option<String>,
    /// Area id (the entity's own, else its device's).
    pub area: Option<String>,
    /// `device_class` from the state.
    pub device_class: Option<String>,
    /// Integration providing the entity.
    pub platform: Option<String>,
    /// Label id.
    pub label: Option<String>,
    /// Free text: every word must occur in the entity id or one of its names.
    pub q: Option<String>,
    /// Whether disabled entities are listed.
    pub include_disabled: bool,
}

/// Sort keys of entity listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum EntitySort {
    /// Entity id.
    #[default]
    EntityId,
    /// Display name (case-insensitive), then entity id.
    Name,
    /// Domain, then entity id.
    Domain,
    /// When HomeIQ last saw a state, then entity id.
    LastSeen,
}

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct Page<T> {
    /// Everything matching the filters.
    pub total: usize,
    /// The page's items.
    pub items: Vec<T>,
}

/// Rendered listings kept with the snapshot they were rendered from, so a new snapshot starts
/// empty and nothing is ever out of date. Only device listings use it: devices hold no live state,
/// while entity listings carry current states; the analysis keeps one per run for its pattern
/// pages. At most [`PAGE_MEMO_ENTRIES`] pages and [`PAGE_MEMO_BYTES`] of rendered JSON; when full
/// it starts over (listings are few: a handful of filters and pages per panel session), and a
/// page larger than the whole budget is served without being kept. Pages are [`PreparedJson`],
/// so each is also compressed at most once.
#[derive(Debug, Default)]
pub(crate) struct PageMemo {
    pages: Mutex<MemoPages>,
    /// Gzip forms at the default level ([`PreparedJson::new_compact`]).
    compact: bool,
}

/// The pages of a [`PageMemo`] and their rendered bytes.
#[derive(Debug, Default)]
struct MemoPages {
    by_key: HashMap<String, Arc<PreparedJson>>,
    bytes: usize,
}

/// Pages a [`PageMemo`] holds.
pub(crate) const PAGE_MEMO_ENTRIES: usize = 256;
/// Rendered JSON a [`PageMemo`] holds at most, bytes (their gzip forms add about a tenth).
pub(crate) const PAGE_MEMO_BYTES: usize = 32 << 20;

impl PageMemo {
    /// A memo whose pages are gzipped at the default level (see [`PreparedJson::new_compact`]).
    pub(crate) fn compact() -> Self {
        PageMemo {
            compact: true,
            ..PageMemo::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoPages> {
        self.pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The page for `key`, rendered by `render` the first time.
    pub(crate) fn get_or_render(
        &self,
        key: String,
        render: impl FnOnce() -> bytes::Bytes,
    ) -> Arc<PreparedJson> {
        if let Some(page) = self.lock().by_key.get(&key) {
            return page.clone();
        }
        let page = Arc::new(if self.compact {
            PreparedJson::new_compact(render())
        } else {
            PreparedJson::new(render())
        });
        let size = page.plain().len();
        if size > PAGE_MEMO_BYTES {
            return page;
        }
        let mut pages = self.lock();
        if pages.by_key.len() >= PAGE_MEMO_ENTRIES || pages.bytes + size > PAGE_MEMO_BYTES {
            pages.by_key.clear();
            pages.bytes = 0;
        }
        if let Some(old) = pages.by_key.insert(key, page.clone()) {
            // rendered twice at once: the first one's bytes leave
            pages.bytes -= old.plain().len();
        }
        pages.bytes += size;
        page
    }
}

/// An immutable snapshot of the mirror.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Areas by id.
    pub areas: Vec<Area>,
    /// Floors by id.
    pub floors: Vec<Floor>,
    /// Labels by id.
    pub labels: Vec<Label>,
    /// Devices by id.
    pub devices: Vec<CatalogDevice>,
    /// Entities by entity id (registry and state-only).
    pub entities: Vec<EntityView>,
    /// Entities per integration, by name.
    pub integrations: Vec<IntegrationCount>,
    device_index: HashMap<String, usize>,
    entity_index: HashMap<String, usize>,
    entity_haystacks: Vec<String>,
    /// Search index over `entity_haystacks`, built on this snapshot's first search.
    entity_search: OnceLock<SearchIndex>,
    /// Search index over the devices' search texts, built on this snapshot's first search.
    device_search: OnceLock<SearchIndex>,
    entity_sort_names: Vec<String>,
    /// Each entity's JSON object without its closing brace, for [`Catalog::entity_json`].
    entity_open_json: Vec<Box<str>>,
    /// Device indexes in ascending order of each [`DeviceSort`].
    device_orders: Vec<Vec<usize>>,
    /// Entity indexes in ascending order of each [`EntitySort`].
    entity_orders: Vec<Vec<usize>>,
    /// Rendered device listings of this snapshot (see [`PageMemo`]).
    pub device_pages: PageMemo,
    /// Each entity's listing item compressed, with the state it was rendered with (see
    /// [`Catalog::entity_chunk`]).
    entity_chunks: Vec<ArcSwapOption<EntityChunk>>,
}

/// An entity's listing item (registry JSON and a state) as a deflate chunk.
#[derive(Debug)]
struct EntityChunk {
    /// The state it holds (`None`: no state). A `Weak` keeps the state's allocation from being
    /// reused for another one, so pointer equality means the same state; it does not keep the
    /// state's contents alive.
    state: Option<Weak<State>>,
    chunk: DeflateChunk,
}

const DEVICE_SORTS: [DeviceSort; 6] = [
    DeviceSort::Name,
    DeviceSort::Manufacturer,
    DeviceSort::Model,
    DeviceSort::Area,
    DeviceSort::Entities,
    DeviceSort::Created,
];

const ENTITY_SORTS: [EntitySort; 4] = [
    EntitySort::EntityId,
    EntitySort::Name,
    EntitySort::Domain,
    EntitySort::LastSeen,
];

/// An entity as the API shows it (without its current state).
#[derive(Serialize)]
struct EntityJson<'a> {
    #[serde(flatten)]
    entity: &'a EntityView,
    display_name: &'a str,
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn eq_ci(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b) || lower(a) == lower(b))
}

fn words_of(q: Option<&str>) -> Vec<String> {
    q.map(|q| q.split_whitespace().map(lower).collect())
        .unwrap_or_default()
}

impl Catalog {
    /// Builds a catalog from the mirror's lists.
    pub(crate) fn build(
        areas: Vec<Area>,
        floors: Vec<Floor>,
        labels: Vec<Label>,
        devices: Vec<Device>,
        entities: Vec<EntityView>,
    ) -> Self {
        let area_index: HashMap<String, usize> = areas
            .iter()
            .enumerate()
            .map(|(i, a)| (a.area_id.clone(), i))
            .collect();
        let entity_index: HashMap<String, usize> = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.entity_id.clone(), i))
            .collect();
        let mut by_device: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut per_platform: BTreeMap<String, (usize, BTreeSet<&str>)> = BTreeMap::new();
        for (i, e) in entities.iter().enumerate() {
            if let Some(d) = e.device_id.as_deref() {
                by_device.entry(d).or_default().push(i);
            }
            if let Some(p) = e.platform.as_deref() {
                let slot = per_platform.entry(p.to_owned()).or_default();
                slot.0 += 1;
                if let Some(d) = e.device_id.as_deref() {
                    slot.1.insert(d);
                }
            }
        }
        let integrations = per_platform
            .into_iter()
            .map(|(integration, (entities, devices))| IntegrationCount {
                integration,
                entities,
                devices: devices.len(),
            })
            .collect();
        let area_name = |id: Option<&str>| {
            id.and_then(|id| area_index.get(id))
                .map(|&i| areas[i].name.as_str())
        };
        let catalog_devices: Vec<CatalogDevice> = devices
            .into_iter()
            .map(|view| {
                let members = by_device.remove(view.id.as_str()).unwrap_or_default();
                let domains: BTreeSet<&str> = members
                    .iter()
                    .map(|&i| entities[i].domain.as_str())
                    .collect();
                let floor_id = view
                    .area_id
                    .as_deref()
                    .and_then(|a| area_index.get(a))
                    .and_then(|&i| areas[i].floor_id.clone());
                let haystack = lower(
                    &[
                        view.name_by_user.as_deref(),
                        view.name.as_deref(),
                        view.manufacturer.as_deref(),
                        view.model.as_deref(),
                        Some(view.id.as_str()),
                        area_name(view.area_id.as_deref()),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("\u{1f}"),
                );
                let mut device = CatalogDevice {
                    floor_id,
                    domains: domains.into_iter().map(str::to_owned).collect(),
                    entities: members,
                    json: Box::from(""),
                    haystack,
                    sort_name: String::new(),
                    view,
                };
                device.sort_name = lower(device.display_name());
                device.json = serde_json::to_string(&DeviceSummary::from(&device))
                    .unwrap_or_else(|_| "null".into())
                    .into_boxed_str();
                device
            })
            .collect();
        let device_index: HashMap<String, usize> = catalog_devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.view.id.clone(), i))
            .collect();
        let entity_haystacks = entities
            .iter()
            .map(|e| {
                lower(
                    &[
                        Some(e.entity_id.as_str()),
                        e.name.as_deref(),
                        e.original_name.as_deref(),
                        e.friendly_name.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("\u{1f}"),
                )
            })
            .collect();
        let device_name = |id: Option<&str>| {
            id.and_then(|id| device_index.get(id))
                .map(|&i: &usize| &catalog_devices[i])
        };
        let entity_names: Vec<String> = entities
            .iter()
            .map(|e| {
                let device = device_name(e.device_id.as_deref());
                let parent = device.and_then(|d| device_name(d.view.parent_device_id.as_deref()));
                entity_display_name(
                    e,
                    device.map(CatalogDevice::display_name),
                    parent.map(CatalogDevice::display_name),
                )
                .into_owned()
            })
            .collect();
        let entity_sort_names = entity_names.iter().map(|n| lower(n)).collect();
        let entity_open_json = entities
            .iter()
            .zip(&entity_names)
            .map(|(e, name)| {
                let mut json = serde_json::to_string(&EntityJson {
                    entity: e,
                    display_name: name,
                })
                .unwrap_or_else(|_| "{}".into());
                json.pop(); // the closing brace: the state follows per request
                json.into_boxed_str()
            })
            .collect();
        let mut catalog = Catalog {
            areas,
            floors,
            labels,
            devices: catalog_devices,
            entities,
            integrations,
            device_index,
            entity_index,
            entity_haystacks,
            entity_search: OnceLock::new(),
            device_search: OnceLock::new(),
            entity_sort_names,
            entity_open_json,
            device_orders: Vec::new(),
            entity_orders: Vec::new(),
            device_pages: PageMemo::default(),
            entity_chunks: Vec::new(),
        };
        catalog.entity_chunks = catalog
            .entities
            .iter()
            .map(|_| ArcSwapOption::empty())
            .collect();
        catalog.device_orders = DEVICE_SORTS
            .iter()
            .map(|&sort| {
                let mut order: Vec<usize> = (0..catalog.devices.len()).collect();
                order.sort_by(|&a, &b| catalog.compare_devices(sort, a, b));
                order
            })
            .collect();
        catalog.entity_orders = ENTITY_SORTS
            .iter()
            .map(|&sort| {
                let mut order: Vec<usize> = (0..catalog.entities.len()).collect();
                order.sort_by(|&a, &b| catalog.compare_entities(sort, a, b));
                order
            })
            .collect();
        catalog
    }

    /// Ascending order of two devices by `sort`, ties by name then id.
    fn compare_devices(&self, sort: DeviceSort, a: usize, b: usize) -> Ordering {
        let (a, b) = (&self.devices[a], &self.devices[b]);
        let opt = |a: Option<&String>, b: Option<&String>| match (a, b) {
            // missing values sort last
            (Some(a), Some(b)) => lower(a).cmp(&lower(b)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let primary = match sort {
            DeviceSort::Name => Ordering::Equal,
            DeviceSort::Manufacturer => {
                opt(a.view.manufacturer.as_ref(), b.view.manufacturer.as_ref())
            }
            DeviceSort::Model => opt(a.view.model.as_ref(), b.view.model.as_ref()),
            DeviceSort::Area => opt(a.view.area_id.as_ref(), b.view.area_id.as_ref()),
            DeviceSort::Entities => a.entities.len().cmp(&b.entities.len()),
            DeviceSort::Created => a
                .view
                .created_at
                .partial_cmp(&b.view.created_at)
                .unwrap_or(Ordering::Equal),
        };
        primary
            .then_with(|| a.sort_name.cmp(&b.sort_name))
            .then_with(|| a.view.id.cmp(&b.view.id))
    }

    /// Ascending order of two entities by `sort`, ties by entity id.
    fn compare_entities(&self, sort: EntitySort, a: usize, b: usize) -> Ordering {
        let primary = match sort {
            EntitySort::EntityId => Ordering::Equal,
            EntitySort::Name => self.entity_sort_names[a].cmp(&self.entity_sort_names[b]),
            EntitySort::Domain => self.entities[a].domain.cmp(&self.entities[b].domain),
            EntitySort::LastSeen => self.entities[a].last_seen.cmp(&self.entities[b].last_seen),
        };
        primary.then_with(|| self.entities[a].entity_id.cmp(&self.entities[b].entity_id))
    }

    /// An entity's API JSON with `state` (already JSON) appended.
    pub(crate) fn entity_json(&self, entity: &EntityView, state_json: &str, out: &mut String) {
        match self.entity_index.get(&entity.entity_id) {
            Some(&i) if std::ptr::eq(&self.entities[i], entity) => {
                out.push_str(&self.entity_open_json[i]);
            }
            _ => {
                let json = serde_json::to_string(&EntityJson {
                    entity,
                    display_name: &entity_display_name(entity, None, None),
                })
                .unwrap_or_else(|_| "{}".into());
                out.push_str(&json[..json.len().saturating_sub(1)]);
            }
        }
        out.push_str(",\"state\":");
        out.push_str(state_json);
        out.push('}');
    }

    /// An entity's item of an entity listing with `state`, its current state, compressed: once per
    /// state it has (an entity listing carries live states, so pages cannot be kept, but most
    /// entities' states do not change between two requests). `render` gives the item's JSON when
    /// it must be compressed. `None` for an entity that is not in this snapshot.
    pub(crate) fn entity_chunk(
        &self,
        entity: &EntityView,
        state: Option<&Arc<State>>,
        render: impl FnOnce() -> String,
    ) -> Option<DeflateChunk> {
        let i = match self.entity_index.get(&entity.entity_id) {
            Some(&i) if std::ptr::eq(&self.entities[i], entity) => i,
            _ => return None,
        };
        let slot = self.entity_chunks.get(i)?;
        if let Some(kept) = slot.load().as_ref() {
            let same = match (&kept.state, state) {
                (None, None) => true,
                (Some(kept), Some(now)) => std::ptr::eq(kept.as_ptr(), Arc::as_ptr(now)),
                _ => false,
            };
            if same {
                return Some(kept.chunk.clone());
            }
        }
        let chunk = DeflateChunk::new(render().as_bytes());
        slot.store(Some(Arc::new(EntityChunk {
            state: state.map(Arc::downgrade),
            chunk: chunk.clone(),
        })));
        Some(chunk)
    }

    /// Reads the whole mirror.
    pub(crate) async fn load(store: &RegistryStore) -> Result<Self, RegistryError> {
        Ok(Self::build(
            store.list_areas().await?,
            store.list_floors().await?,
            store.list_labels().await?,
            store.list_devices().await?,
            store.list_entities().await?,
        ))
    }

    /// A device by id.
    pub(crate) fn device(&self, id: &str) -> Option<&CatalogDevice> {
        self.device_index.get(id).map(|&i| &self.devices[i])
    }

    /// An entity by entity id.
    pub(crate) fn entity(&self, entity_id: &str) -> Option<&EntityView> {
        self.entity_index.get(entity_id).map(|&i| &self.entities[i])
    }

    /// The area of an entity: its own, else its device's.
    pub(crate) fn area_of(&self, entity_id: &str) -> Option<&str> {
        self.entity(entity_id)?.effective_area_id.as_deref()
    }

    /// Devices matching `filter`, sorted, one page of them.
    pub(crate) fn devices(
        &self,
        filter: &DeviceFilter,
        sort: DeviceSort,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> Page<&CatalogDevice> {
        let words = words_of(filter.q.as_deref());
        let found = (!words.is_empty())
            .then(|| {
                self.device_search
                    .get_or_init(|| {
                        SearchIndex::build(self.devices.iter().map(|d| d.haystack.as_str()))
                    })
                    .matching(&words, |i| &self.devices[i].haystack)
            })
            .flatten();
        let passes = |(i, d): (usize, &CatalogDevice)| {
            let v = &d.view;
            found.as_ref().is_none_or(|m| m.contains(i))
                && filter
                    .area
                    .as_deref()
                    .is_none_or(|a| v.area_id.as_deref() == Some(a))
                && filter
                    .floor
                    .as_deref()
                    .is_none_or(|f| d.floor_id.as_deref() == Some(f))
                && filter
                    .label
                    .as_deref()
                    .is_none_or(|l| v.labels.iter().any(|x| x == l))
                && filter
                    .manufacturer
                    .as_deref()
                    .is_none_or(|m| eq_ci(v.manufacturer.as_deref(), m))
                && filter
                    .model
                    .as_deref()
                    .is_none_or(|m| eq_ci(v.model.as_deref(), m))
                && filter
                    .integration
                    .as_deref()
                    .is_none_or(|i| eq_ci(v.integration(), i))
                && filter
                    .domain
                    .as_deref()
                    .is_none_or(|dm| d.domains.iter().any(|x| x == dm))
        };
        paged(
            in_order(&DEVICE_SORTS, &self.device_orders, sort, descending)
                .map(|i| (i, &self.devices[i]))
                .filter(|&item| passes(item))
                .map(|(_, d)| d),
            offset,
            limit,
        )
    }

    /// Entities matching `filter`, sorted, one page of them.
    pub(crate) fn entities(
        &self,
        filter: &EntityFilter,
        sort: EntitySort,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> Page<&EntityView> {
        let words = words_of(filter.q.as_deref());
        let found = (!words.is_empty())
            .then(|| {
                self.entity_search
                    .get_or_init(|| {
                        SearchIndex::build(self.entity_haystacks.iter().map(String::as_str))
                    })
                    .matching(&words, |i| &self.entity_haystacks[i])
            })
            .flatten();
        let passes = |i: usize| {
            let e = &self.entities[i];
            found.as_ref().is_none_or(|m| m.contains(i))
                && (filter.include_disabled || e.disabled_by.is_none())
                && filter.domain.as_deref().is_none_or(|d| e.domain == d)
                && filter
                    .device_id
                    .as_deref()
                    .is_none_or(|d| e.device_id.as_deref() == Some(d))
                && filter
                    .area
                    .as_deref()
                    .is_none_or(|a| e.effective_area_id.as_deref() == Some(a))
                && filter
                    .device_class
                    .as_deref()
                    .is_none_or(|c| e.device_class.as_deref() == Some(c))
                && filter
                    .platform
                    .as_deref()
                    .is_none_or(|p| eq_ci(e.platform.as_deref(), p))
                && filter
                    .label
                    .as_deref()
                    .is_none_or(|l| e.labels.iter().any(|x| x == l))
        };
        paged(
            in_order(&ENTITY_SORTS, &self.entity_orders, sort, descending)
                .filter(|&i| passes(i))
                .map(|i| &self.entities[i]),
            offset,
            limit,
        )
    }
}

/// Indexes in the pre-sorted order of `sort` (`orders[k]` belongs to `sorts[k]`), reversed when
/// `descending`; nothing for a sort without an order.
fn in_order<'a, S: PartialEq>(
    sorts: &[S],
    orders: &'a [Vec<usize>],
    sort: S,
    descending: bool,
) -> impl Iterator<Item = usize> + 'a {
    let order = sorts
        .iter()
        .position(|s| *s == sort)
        .and_then(|k| orders.get(k))
        .map_or(&[][..], Vec::as_slice);
    let (forward, backward) = if descending {
        (None, Some(order.iter().rev()))
    } else {
        (Some(order.iter()), None)
    };
    forward
        .into_iter()
        .flatten()
        .chain(backward.into_iter().flatten())
        .copied()
}

/// Counts everything `items` yields and keeps `limit` after `offset`, without collecting the rest.
fn paged<T>(items: impl Iterator<Item = T>, offset: usize, limit: usize) -> Page<T> {
    let mut total = 0;
    let mut page = Vec::with_capacity(limit.min(1000));
    for item in items {
        if total >= offset && page.len() < limit {
            page.push(item);
        }
        total += 1;
    }
    Page { total, items: page }
}

/// The name shown for an entity: what Home Assistant shows.
///
/// 1. The `friendly_name` of its state, when it has one: Home Assistant composes it (from the
///    user's name, the device's name and the entity's own, differently in 2025.x and 2026.x), so
///    it is the name people see in Home Assistant.
/// 2. Without a state (a disabled entity, or before the first state arrives): the user's name;
/// 3. else, for an entity of a device (`device` and `parent` are the display names of its device
///    and of that device's parent) whose name is composed with the device's (`has_entity_name`
///    true, or not sent: 2026.x composes every device entity's name from parts): parent device,
///    device and the entity's own name, joined by spaces (the device's name alone when the
///    entity has none);
/// 4. else the integration's name (`original_name`), else the entity id.
pub(crate) fn entity_display_name<'a>(
    e: &'a EntityView,
    device: Option<&str>,
    parent: Option<&str>,
) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    if let Some(name) = e.friendly_name.as_deref().or(e.name.as_deref()) {
        return Cow::Borrowed(name);
    }
    if let Some(device) = device.filter(|d| !d.is_empty())
        && e.has_entity_name != Some(false)
    {
        let parts: Vec<&str> = [parent, Some(device), e.original_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect();
        return Cow::Owned(parts.join(" "));
    }
    Cow::Borrowed(e.original_name.as_deref().unwrap_or(&e.entity_id))
}

/// Shared, swappable access to the current [`Catalog`].
#[derive(Debug, Clone, Default)]
pub(crate) struct CatalogHandle {
    inner: Arc<ArcSwap<Catalog>>,
}

impl CatalogHandle {
    /// The current snapshot.
    pub(crate) fn current(&self) -> Arc<Catalog> {
        self.inner.load_full()
    }

    /// Re-reads the mirror and swaps the snapshot in.
    pub(crate) async fn reload(&self, store: &RegistryStore) -> Result<(), RegistryError> {
        let catalog = Catalog::load(store).await?;
        self.inner.store(Arc::new(catalog));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_rendered_once_per_snapshot_and_key() {
        let memo = PageMemo::default();
        let mut renders = 0;
        for _ in 0..3 {
            let page = memo.get_or_render("a".into(), || {
                renders += 1;
                bytes::Bytes::from_static(b"A")
            });
            assert_eq!(&page.plain()[..], b"A");
        }
        let other = memo.get_or_render("b".into(), || bytes::Bytes::from_static(b"B"));
        assert_eq!(&other.plain()[..], b"B");
        assert_eq!(renders, 1);
        for n in 0..PAGE_MEMO_ENTRIES {
            memo.get_or_render(n.to_string(), bytes::Bytes::new);
        }
        assert!(memo.lock().by_key.len() <= PAGE_MEMO_ENTRIES, "bounded");
        // and by bytes: a page of half the budget, then another, starts over
        let half = || bytes::Bytes::from(vec![b' '; PAGE_MEMO_BYTES / 2 + 1]);
        memo.get_or_render("big".into(), half);
        memo.get_or_render("bigger".into(), half);
        let pages = memo.lock();
        assert_eq!(pages.by_key.len(), 1);
        assert!(pages.bytes <= PAGE_MEMO_BYTES);
        drop(pages);
        let huge = memo.get_or_render("huge".into(), || {
            bytes::Bytes::from(vec![b' '; PAGE_MEMO_BYTES + 1])
        });
        assert_eq!(huge.plain().len(), PAGE_MEMO_BYTES + 1);
        assert!(!memo.lock().by_key.contains_key("huge"), "served, not kept");
    }

    fn device(id: &str, name: &str, manufacturer: &str, area: Option<&str>) -> Device {
        Device {
            id: id.into(),
            name: Some(name.into()),
            name_by_user: None,
            manufacturer: Some(manufacturer.into()),
            model: Some("M1".into()),
            model_id: None,
            area_id: area.map(Into::into),
            labels: vec![],
            identifiers: vec![("demo".into(), id.into())],
            config_entries: Some(vec![]),
            primary_config_entry: None,
            config_entry_id: None,
            config_subentry_id: None,
            disabled_by: None,
            entry_type: None,
            via_device_id: None,
            parent_device_id: None,
            sw_version: None,
            hw_version: None,
            serial_number: None,
            configuration_url: None,
            created_at: None,
            modified_at: None,
        }
    }

    fn entity(entity_id: &str, device: Option<&str>, disabled: bool) -> EntityView {
        EntityView {
            id: Some(format!("id-{entity_id}")),
            entity_id: entity_id.into(),
            domain: entity_id.split('.').next().unwrap_or_default().into(),
            platform: Some("demo".into()),
            name: None,
            original_name: Some(entity_id.replace(['.', '_'], " ")),
            friendly_name: None,
            device_id: device.map(Into::into),
            area_id: None,
            effective_area_id: Some("kitchen".into()),
            labels: vec![],
            entity_category: None,
            disabled_by: disabled.then(|| "user".into()),
            hidden_by: None,
            config_entry_id: None,
            unique_id: None,
            icon: None,
            has_entity_name: Some(false),
            device_class: None,
            unit: None,
            last_seen: None,
            created_at: None,
            modified_at: None,
        }
    }

    fn area(id: &str, name: &str, floor: &str) -> Area {
        Area {
            area_id: id.into(),
            name: name.into(),
            floor_id: Some(floor.into()),
            icon: None,
            aliases: vec![],
            labels: vec![],
            created_at: None,
            modified_at: None,
        }
    }

    fn sample() -> Catalog {
        Catalog::build(
            vec![
                area("kitchen", "Kitchen", "ground"),
                area("attic", "Attic", "top"),
            ],
            vec![],
            vec![],
            vec![
                device("d1", "Ceiling Lamp", "Philips", Some("kitchen")),
                device("d2", "Thermostat", "ecobee", Some("attic")),
                device("d3", "ceiling fan", "Acme", None),
            ],
            vec![
                entity("light.ceiling", Some("d1"), false),
                entity("sensor.temp", Some("d2"), false),
                entity("climate.attic", Some("d2"), false),
                entity("switch.fan", Some("d3"), true),
                entity("sun.sun", None, false),
            ],
        )
    }

    #[test]
    fn an_entity_item_is_compressed_once_per_state() {
        let c = sample();
        let e = c.entity("light.ceiling").expect("entity");
        let state = |s: &str| {
            Arc::new(
                serde_json::from_value::<State>(serde_json::json!({
                    "entity_id": "light.ceiling", "state": s, "attributes": {},
                    "last_changed": "2026-12-01T00:00:00Z", "last_updated": "2026-12-01T00:00:00Z",
                }))
                .expect("state"),
            )
        };
        let renders = std::cell::Cell::new(0);
        let ask = |current: Option<&Arc<State>>| {
            c.entity_chunk(e, current, || {
                renders.set(renders.get() + 1);
                format!(
                    "{{\"state\":{}}}",
                    current.map_or("null", |s| s.state.as_str())
                )
            })
            .expect("in the snapshot")
        };
        let on = state("on");
        let first = ask(Some(&on));
        let again = ask(Some(&on));
        assert_eq!(renders.get(), 1, "the same state is not compressed again");
        assert_eq!(first.weight(), again.weight());
        // a new state (even an equal one) is compressed anew; so is no state
        let _ = ask(Some(&state("on")));
        assert_eq!(renders.get(), 2);
        let _ = ask(None);
        let _ = ask(None);
        assert_eq!(renders.get(), 3);
        // an entity view from elsewhere is not this snapshot's
        let stranger = entity("light.ceiling", None, false);
        assert!(c.entity_chunk(&stranger, None, String::new).is_none());
    }

    #[test]
    fn device_filters_combine_and_text_matches_area_names_case_insensitively() {
        let c = sample();
        let ids = |p: Page<&CatalogDevice>| {
            p.items
                .iter()
                .map(|d| d.view.id.clone())
                .collect::<Vec<_>>()
        };
        let all = DeviceFilter::default();
        assert_eq!(
            ids(c.devices(&all, DeviceSort::Name, false, 0, 10)),
            ["d3", "d1", "d2"]
        );
        let q = DeviceFilter {
            q: Some("CEILING".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(c.devices(&q, DeviceSort::Name, true, 0, 10)),
            ["d1", "d3"]
        );
        let by_area_name = DeviceFilter {
            q: Some("attic thermo".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(c.devices(&by_area_name, DeviceSort::Name, false, 0, 10)),
            ["d2"]
        );
        let floor = DeviceFilter {
            floor: Some("ground".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(c.devices(&floor, DeviceSort::Name, false, 0, 10)),
            ["d1"]
        );
        let domain = DeviceFilter {
            domain: Some("climate".into()),
            manufacturer: Some("ECOBEE".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(c.devices(&domain, DeviceSort::Name, false, 0, 10)),
            ["d2"]
        );
        let page = c.devices(&all, DeviceSort::Entities, true, 1, 1);
        assert_eq!(page.total, 3);
        assert_eq!(page.items[0].view.id, "d1");
    }

    #[test]
    fn entities_hide_disabled_unless_asked_and_integrations_count_devices() {
        let c = sample();
        let all = c.entities(
            &EntityFilter::default(),
            EntitySort::EntityId,
            false,
            0,
            100,
        );
        assert_eq!(all.total, 4);
        let with_disabled = EntityFilter {
            include_disabled: true,
            ..Default::default()
        };
        assert_eq!(
            c.entities(&with_disabled, EntitySort::EntityId, false, 0, 100)
                .total,
            5
        );
        let q = EntityFilter {
            q: Some("temp".into()),
            ..Default::default()
        };
        let found = c.entities(&q, EntitySort::Name, false, 0, 100);
        assert_eq!(found.items[0].entity_id, "sensor.temp");
        assert_eq!(
            c.integrations,
            vec![IntegrationCount {
                integration: "demo".into(),
                entities: 5,
                devices: 3
            }]
        );
        assert_eq!(
            c.device("d2").map(|d| d.domains.clone()),
            Some(vec!["climate".to_owned(), "sensor".to_owned()])
        );
        assert_eq!(c.area_of("light.ceiling"), Some("kitchen"));
    }

    #[test]
    fn entity_names_are_what_home_assistant_shows() {
        let mut parent = device("meter", "House Energy Meter", "Shelly", None);
        parent.name_by_user = Some("Meter".into());
        let mut child = device("phase", "Phase A", "Shelly", None);
        child.parent_device_id = Some("meter".into());
        let with = |entity_id: &str,
                    device: Option<&str>,
                    has_entity_name: Option<bool>,
                    original: Option<&str>,
                    friendly: Option<&str>,
                    user: Option<&str>| {
            let mut e = entity(entity_id, device, false);
            e.has_entity_name = has_entity_name;
            e.original_name = original.map(Into::into);
            e.friendly_name = friendly.map(Into::into);
            e.name = user.map(Into::into);
            e
        };
        let c = Catalog::build(
            vec![],
            vec![],
            vec![],
            vec![parent, child],
            vec![
                // a state's friendly name wins over every registry name (2025 user name too)
                with(
                    "sensor.a",
                    Some("meter"),
                    Some(true),
                    Some("Power"),
                    Some("Mains"),
                    Some("User"),
                ),
                // no state: the user's name
                with(
                    "sensor.b",
                    Some("meter"),
                    None,
                    Some("Power"),
                    None,
                    Some("User"),
                ),
                // no state, 2026 row (has_entity_name not sent): parent, device and own name
                with("sensor.c", Some("phase"), None, Some("Power"), None, None),
                // no state, 2025 row composing with the device; named after the device
                with("sensor.d", Some("meter"), Some(true), None, None, None),
                // no state, 2025 row not composing: the integration's name as it is
                with(
                    "sensor.e",
                    Some("meter"),
                    Some(false),
                    Some("Legacy Name"),
                    None,
                    None,
                ),
                // nothing at all: the entity id
                with("sensor.f", None, None, None, None, None),
            ],
        );
        let page = c.entities(&EntityFilter::default(), EntitySort::EntityId, false, 0, 10);
        let names: Vec<String> = page
            .items
            .iter()
            .map(|e| {
                let mut out = String::new();
                c.entity_json(e, "null", &mut out);
                let v: serde_json::Value = serde_json::from_str(&out).expect("json");
                v["display_name"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "Mains",
                "User",
                "Meter Phase A Power",
                "Meter",
                "Legacy Name",
                "sensor.f"
            ]
        );
        let json = {
            let mut out = String::new();
            c.entity_json(page.items[1], "null", &mut out);
            out
        };
        assert!(
            json.contains("\"has_entity_name\":null"),
            "not sent, not made up: {json}"
        );
    }
}
