//! `/api/v1/import`: the status of the last import of Home Assistant's past, and a request to
//! start (or resume) one.

use actix_web::{HttpResponse, get, post, web};

use super::{Import, ImportStatus, ImportTrigger, Refusal};
use crate::http::error::{ApiError, ErrorBody};

/// The import routes (under `/api/v1`).
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(status).service(start);
}

/// The last import: its status, phase, counts per phase (entities or statistic ids planned and
/// done, states and hourly rows imported and skipped), when it started and ended, its error and
/// the position a resume starts from; and the counters since HomeIQ started.
#[utoipa::path(tag = "import", responses((status = 200, body = ImportStatus)))]
#[get("/import")]
pub(crate) async fn status(state: web::Data<Import>) -> HttpResponse {
    HttpResponse::Ok().json(state.status())
}

/// Starts importing what Home Assistant's recorder holds (states of its keep-days window, then
/// hourly long-term statistics), or resumes the last import where it stopped when it failed or
/// was interrupted. Nothing HomeIQ recorded itself is imported again.
#[utoipa::path(
    tag = "import",
    responses(
        (status = 202, body = ImportStatus, description = "Started or resumed; poll `GET /api/v1/import`"),
        (status = 409, body = ErrorBody, description = "An import is under way"),
        (status = 503, body = ErrorBody, description = "The metadata database failed"),
    )
)]
#[post("/import")]
pub(crate) async fn start(state: web::Data<Import>) -> Result<HttpResponse, ApiError> {
    match state.request(ImportTrigger::Manual).await {
        Ok(_) => Ok(HttpResponse::Accepted().json(state.status())),
        Err(e @ Refusal::Busy) => Err(ApiError::conflict(e.to_string())),
        Err(Refusal::Db(e)) => Err(ApiError::from(e)),
    }
}
