//! Registry endpoints: devices, entities, areas, floors, labels and integrations, answered from
//! the in-memory [`Catalog`](crate::registry::Catalog) and the current states.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ha::model::State;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Params, within};
use crate::http::{accepts_gzip, gzip_json_ok, json_ok, prepared_json_ok};
use crate::prepared::{DeflateChunk, GzipJoin};
use crate::registry::CatalogHandle;
pub(crate) use crate::registry::catalog::DeviceSummary;
use crate::registry::catalog::{
    Catalog, DeviceFilter, DeviceSort, EntityFilter, EntitySort, IntegrationCount,
};
use crate::registry::{Area, EntityView, Floor, Label};
use crate::store::states::CurrentStates;

/// Largest page of a listing.
pub(crate) const MAX_LIMIT: usize = 1000;

/// Default page size.
const DEFAULT_LIMIT: usize = 100;

/// Splits `-name` into (`name`, descending).
/// The sort order `sort` names (`key` or `-key` for descending; the first entry of `keys` when
/// absent), or a 400 naming the keys there are.
fn sort_order<S: Copy>(
    sort: Option<&str>,
    what: &str,
    keys: &[(&str, S)],
) -> Result<(S, bool), ApiError> {
    let (key, descending) = match sort {
        Some(s) => s.strip_prefix('-').map_or((s, false), |k| (k, true)),
        None => (keys[0].0, false),
    };
    match keys.iter().find(|(name, _)| *name == key || key.is_empty()) {
        Some((_, order)) => Ok((*order, descending)),
        None => {
            let names: Vec<&str> = keys.iter().map(|(name, _)| *name).collect();
            Err(ApiError::invalid(
                "sort",
                format!("cannot sort {what} by `{key}`; use {}", names.join(", ")),
            ))
        }
    }
}

/// The device sort keys; the first is the default.
const DEVICE_SORTS: [(&str, DeviceSort); 6] = [
    ("name", DeviceSort::Name),
    ("manufacturer", DeviceSort::Manufacturer),
    ("model", DeviceSort::Model),
    ("area", DeviceSort::Area),
    ("entities", DeviceSort::Entities),
    ("created", DeviceSort::Created),
];

/// The entity sort keys; the first is the default.
const ENTITY_SORTS: [(&str, EntitySort); 4] = [
    ("entity_id", EntitySort::EntityId),
    ("name", EntitySort::Name),
    ("domain", EntitySort::Domain),
    ("last_seen", EntitySort::LastSeen),
];

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// What the registry routes read: the catalog snapshot and the current states.
#[derive(Clone)]
pub(crate) struct RegistryApi {
    /// The registry catalog.
    pub catalog: CatalogHandle,
    /// Current states.
    pub states: CurrentStates,
}

/// The registry routes (under `/api/v1`); they read [`RegistryApi`] from the app data.
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_devices)
        .service(get_device)
        .service(list_entities)
        .service(get_entity)
        .service(list_areas)
        .service(list_floors)
        .service(list_labels)
        .service(list_integrations);
}

/// An entity with its current state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntityWithState {
    /// The registry row (or state-only facts).
    #[serde(flatten)]
    pub entity: EntityView,
    /// The name shown.
    pub display_name: String,
    /// The current state, if Home Assistant has reported one.
    #[schema(value_type = Option<State>)]
    pub state: Option<Arc<State>>,
}

/// The JSON of a listing page: `{"total","limit","offset","items":[` + `items` + `]}`.
fn page_body<S: AsRef<str>>(
    total: usize,
    limit: usize,
    offset: usize,
    items: impl Iterator<Item = S>,
) -> String {
    let mut body = format!("{{\"total\":{total},\"limit\":{limit},\"offset\":{offset},\"items\":[");
    for (k, item) in items.enumerate() {
        if k > 0 {
            body.push(',');
        }
        body.push_str(item.as_ref());
    }
    body.push_str("]}");
    body
}

/// An entity's JSON with its current state.
fn entity_json(state: &RegistryApi, catalog: &Catalog, e: &EntityView) -> String {
    entity_json_with(catalog, e, state.states.get(&e.entity_id).as_ref())
}

/// An entity's JSON with `current` as its state.
fn entity_json_with(catalog: &Catalog, e: &EntityView, current: Option<&Arc<State>>) -> String {
    let current = current
        .and_then(|s| serde_json::to_string(&**s).ok())
        .unwrap_or_else(|| "null".into());
    let mut out = String::with_capacity(1024);
    catalog.entity_json(e, &current, &mut out);
    out
}

/// An entity listing page as gzip, joined from each entity's item compressed once per state
/// ([`Catalog::entity_chunk`]) instead of compressing the whole page per request.
fn entity_page_gzip(
    state: &RegistryApi,
    catalog: &Catalog,
    total: usize,
    limit: usize,
    offset: usize,
    items: &[&EntityView],
) -> bytes::Bytes {
    let mut gz = GzipJoin::new(256 * items.len());
    gz.literal(
        format!("{{\"total\":{total},\"limit\":{limit},\"offset\":{offset},\"items\":[").as_bytes(),
    );
    for (k, e) in items.iter().enumerate() {
        if k > 0 {
            gz.literal(b",");
        }
        let current = state.states.get(&e.entity_id);
        let render = || entity_json_with(catalog, e, current.as_ref());
        match catalog.entity_chunk(e, current.as_ref(), render) {
            Some(chunk) => gz.chunk(&chunk),
            None => gz.chunk(&DeflateChunk::new(
                entity_json_with(catalog, e, current.as_ref()).as_bytes(),
            )),
        }
    }
    gz.literal(b"]}");
    gz.finish()
}

/// A page of devices.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DevicePage {
    /// Devices matching the filters.
    pub total: usize,
    /// Page size asked for.
    pub limit: usize,
    /// Items skipped.
    pub offset: usize,
    /// The page.
    pub items: Vec<DeviceSummary>,
}

/// A page of entities.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntityPage {
    /// Entities matching the filters.
    pub total: usize,
    /// Page size asked for.
    pub limit: usize,
    /// Items skipped.
    pub offset: usize,
    /// The page.
    pub items: Vec<EntityWithState>,
}

/// Sort keys of devices (documentation of `sort`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) enum DeviceSortParam {
    /// By name.
    #[schema(rename = "name")]
    Name,
    /// By name, descending.
    #[schema(rename = "-name")]
    NameDesc,
    /// By manufacturer.
    #[schema(rename = "manufacturer")]
    Manufacturer,
    /// By manufacturer, descending.
    #[schema(rename = "-manufacturer")]
    ManufacturerDesc,
    /// By model.
    #[schema(rename = "model")]
    Model,
    /// By model, descending.
    #[schema(rename = "-model")]
    ModelDesc,
    /// By area.
    #[schema(rename = "area")]
    Area,
    /// By area, descending.
    #[schema(rename = "-area")]
    AreaDesc,
    /// By number of entities.
    #[schema(rename = "entities")]
    Entities,
    /// By number of entities, descending.
    #[schema(rename = "-entities")]
    EntitiesDesc,
    /// By creation time.
    #[schema(rename = "created")]
    Created,
    /// By creation time, descending.
    #[schema(rename = "-created")]
    CreatedDesc,
}

/// Sort keys of entities (documentation of `sort`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) enum EntitySortParam {
    /// By entity id.
    #[schema(rename = "entity_id")]
    EntityId,
    /// By entity id, descending.
    #[schema(rename = "-entity_id")]
    EntityIdDesc,
    /// By name.
    #[schema(rename = "name")]
    Name,
    /// By name, descending.
    #[schema(rename = "-name")]
    NameDesc,
    /// By domain.
    #[schema(rename = "domain")]
    Domain,
    /// By domain, descending.
    #[schema(rename = "-domain")]
    DomainDesc,
    /// By last seen.
    #[schema(rename = "last_seen")]
    LastSeen,
    /// By last seen, descending.
    #[schema(rename = "-last_seen")]
    LastSeenDesc,
}

/// Filters and paging of `GET /api/v1/devices`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeviceParams {
    /// Area id.
    area: Option<String>,
    /// Floor id.
    floor: Option<String>,
    /// Label id.
    label: Option<String>,
    /// Manufacturer (case-insensitive).
    manufacturer: Option<String>,
    /// Model (case-insensitive).
    model: Option<String>,
    /// Integration (case-insensitive).
    integration: Option<String>,
    /// Devices having an entity of this domain.
    domain: Option<String>,
    /// Free text; every word must match the name, manufacturer, model, id or area name.
    q: Option<String>,
    /// `name` (default), `manufacturer`, `model`, `area`, `entities` or `created`; `-` in front
    /// sorts descending.
    #[param(value_type = Option<DeviceSortParam>, inline)]
    sort: Option<String>,
    /// Page size, 1..1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 100000000)]
    offset: Option<usize>,
}

/// Devices, filtered, sorted and paged.
#[utoipa::path(
    tag = "registry",
    params(DeviceParams),
    responses(
        (status = 200, body = DevicePage),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
    )
)]
#[get("/devices")]
pub(crate) async fn list_devices(
    request: HttpRequest,
    state: web::Data<RegistryApi>,
    Params(p): Params<DeviceParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = within("limit", p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let offset = p.offset.unwrap_or(0);
    let (sort, descending) = sort_order(p.sort.as_deref(), "devices", &DEVICE_SORTS)?;
    let filter = DeviceFilter {
        area: non_empty(p.area),
        floor: non_empty(p.floor),
        label: non_empty(p.label),
        manufacturer: non_empty(p.manufacturer),
        model: non_empty(p.model),
        integration: non_empty(p.integration),
        domain: non_empty(p.domain),
        q: non_empty(p.q),
    };
    let catalog = state.catalog.current();
    // each device's JSON was rendered when the catalog was built, and each page is rendered once
    // per catalog
    let key = format!("{filter:?}|{sort:?}|{descending}|{offset}|{limit}");
    let body = catalog.device_pages.get_or_render(key, || {
        let page = catalog.devices(&filter, sort, descending, offset, limit);
        page_body(
            page.total,
            limit,
            offset,
            page.items.into_iter().map(|d| &*d.json),
        )
        .into()
    });
    Ok(prepared_json_ok(&request, &body))
}

/// A device with its entities.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceDetail {
    /// The device.
    #[serde(flatten)]
    pub device: DeviceSummary,
    /// Its entities with their current states.
    pub entities: Vec<EntityWithState>,
}

/// One device with its entities and their current states.
#[utoipa::path(
    tag = "registry",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, body = DeviceDetail),
        (status = 404, body = ErrorBody),
    )
)]
#[get("/devices/{id}")]
pub(crate) async fn get_device(
    state: web::Data<RegistryApi>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.current();
    let device = catalog
        .device(&id)
        .ok_or_else(|| ApiError::not_found(format!("no device `{id}`")))?;
    // the device's pre-rendered JSON, its closing brace replaced by the entities
    let mut body = String::from(device.json.strip_suffix('}').unwrap_or("{"));
    body.push_str(",\"entities\":[");
    for (k, &i) in device.entities.iter().enumerate() {
        if k > 0 {
            body.push(',');
        }
        body.push_str(&entity_json(&state, &catalog, &catalog.entities[i]));
    }
    body.push_str("]}");
    Ok(json_ok(body))
}

/// Filters and paging of `GET /api/v1/entities`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EntityParams {
    /// Domain (`light`).
    domain: Option<String>,
    /// Device id.
    device_id: Option<String>,
    /// Area id (the entity's own, else its device's).
    area: Option<String>,
    /// `device_class` of the state.
    device_class: Option<String>,
    /// Integration providing the entity.
    platform: Option<String>,
    /// Label id.
    label: Option<String>,
    /// Free text; every word must match the entity id or a name.
    q: Option<String>,
    /// List disabled entities too (default false).
    include_disabled: Option<bool>,
    /// `entity_id` (default), `name`, `domain` or `last_seen`; `-` in front sorts descending.
    #[param(value_type = Option<EntitySortParam>, inline)]
    sort: Option<String>,
    /// Page size, 1..1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 100000000)]
    offset: Option<usize>,
}

/// Entities with their current states, filtered, sorted and paged.
#[utoipa::path(
    tag = "registry",
    params(EntityParams),
    responses(
        (status = 200, body = EntityPage),
        (status = 400, body = ErrorBody, description = "A parameter is invalid; `field` names it"),
    )
)]
#[get("/entities")]
pub(crate) async fn list_entities(
    request: HttpRequest,
    state: web::Data<RegistryApi>,
    Params(p): Params<EntityParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = within("limit", p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let offset = p.offset.unwrap_or(0);
    let (sort, descending) = sort_order(p.sort.as_deref(), "entities", &ENTITY_SORTS)?;
    let filter = EntityFilter {
        domain: non_empty(p.domain),
        device_id: non_empty(p.device_id),
        area: non_empty(p.area),
        device_class: non_empty(p.device_class),
        platform: non_empty(p.platform),
        label: non_empty(p.label),
        q: non_empty(p.q),
        include_disabled: p.include_disabled.unwrap_or(false),
    };
    let catalog = state.catalog.current();
    let page = catalog.entities(&filter, sort, descending, offset, limit);
    if accepts_gzip(&request) {
        return Ok(gzip_json_ok(entity_page_gzip(
            &state,
            &catalog,
            page.total,
            limit,
            offset,
            &page.items,
        )));
    }
    Ok(json_ok(page_body(
        page.total,
        limit,
        offset,
        page.items.iter().map(|e| entity_json(&state, &catalog, e)),
    )))
}

/// One entity: its registry row and current state.
#[utoipa::path(
    tag = "registry",
    params(("entity_id" = String, Path, description = "Entity id, e.g. `light.kitchen`")),
    responses(
        (status = 200, body = EntityWithState),
        (status = 404, body = ErrorBody),
    )
)]
#[get("/entities/{entity_id}")]
pub(crate) async fn get_entity(
    state: web::Data<RegistryApi>,
    entity_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.current();
    let json = |e: &EntityView| json_ok(entity_json(&state, &catalog, e));
    if let Some(e) = catalog.entity(&entity_id) {
        return Ok(json(e));
    }
    // an entity whose first state arrived after the catalog was last loaded
    let current = state
        .states
        .get(&entity_id)
        .ok_or_else(|| ApiError::not_found(format!("no entity `{entity_id}`")))?;
    Ok(json(&EntityView::from_state(&current)))
}

/// An area with its counts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AreaSummary {
    /// The registry row.
    #[serde(flatten)]
    pub area: Area,
    /// Devices in the area.
    pub device_count: usize,
    /// Entities in the area (own or through their device).
    pub entity_count: usize,
}

/// A whole list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ItemList<T> {
    /// Items.
    pub items: Vec<T>,
}

/// Every area with device and entity counts.
#[utoipa::path(tag = "registry", responses((status = 200, body = ItemList<AreaSummary>)))]
#[get("/areas")]
pub(crate) async fn list_areas(state: web::Data<RegistryApi>) -> HttpResponse {
    let catalog = state.catalog.current();
    let items = catalog
        .areas
        .iter()
        .map(|a| AreaSummary {
            device_count: catalog
                .devices
                .iter()
                .filter(|d| d.view.area_id.as_deref() == Some(a.area_id.as_str()))
                .count(),
            entity_count: catalog
                .entities
                .iter()
                .filter(|e| e.effective_area_id.as_deref() == Some(a.area_id.as_str()))
                .count(),
            area: a.clone(),
        })
        .collect();
    HttpResponse::Ok().json(ItemList { items })
}

/// Every floor.
#[utoipa::path(tag = "registry", responses((status = 200, body = ItemList<Floor>)))]
#[get("/floors")]
pub(crate) async fn list_floors(state: web::Data<RegistryApi>) -> HttpResponse {
    HttpResponse::Ok().json(ItemList {
        items: state.catalog.current().floors.clone(),
    })
}

/// Every label.
#[utoipa::path(tag = "registry", responses((status = 200, body = ItemList<Label>)))]
#[get("/labels")]
pub(crate) async fn list_labels(state: web::Data<RegistryApi>) -> HttpResponse {
    HttpResponse::Ok().json(ItemList {
        items: state.catalog.current().labels.clone(),
    })
}

/// Entity and device counts per integration.
#[utoipa::path(tag = "registry", responses((status = 200, body = ItemList<IntegrationCount>)))]
#[get("/integrations")]
pub(crate) async fn list_integrations(state: web::Data<RegistryApi>) -> HttpResponse {
    HttpResponse::Ok().json(ItemList {
        items: state.catalog.current().integrations.clone(),
    })
}

impl From<crate::registry::RegistryError> for ApiError {
    fn from(e: crate::registry::RegistryError) -> Self {
        tracing::error!(error = %e, "metadata database error");
        ApiError::unavailable(format!("the metadata database failed: {e}"))
    }
}
