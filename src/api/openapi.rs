//! The OpenAPI document, generated from the handlers' annotations and the domain types.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{audit, health, ledger, master, reports, users};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "relief-ledger",
        description = "An append-only, audited ledger of donated relief supplies. Quantities and money are decimal strings. Errors are RFC 9457 problem+json.",
    ),
    modifiers(&BearerAuth),
    paths(
        health::healthz, health::readyz,
        users::me, users::list, users::create, users::get, users::patch, users::deactivate,
        users::list_tokens, users::create_token, users::revoke_token,
        master::list_items, master::items::create, master::items::get, master::items::patch, master::items::archive,
        master::list_values, master::add_value,
        master::list_warehouses, master::warehouses::create, master::warehouses::get, master::warehouses::patch, master::warehouses::archive,
        master::list_donors, master::donors::create, master::donors::get, master::donors::patch, master::donors::archive,
        master::list_recipients, master::recipients::create, master::recipients::get, master::recipients::patch, master::recipients::archive,
        audit::events, audit::head, audit::verify,
        ledger::list_pledges, ledger::create_pledge, ledger::get_pledge, ledger::cancel_pledge,
        ledger::list_receipts, ledger::post_receipt, ledger::get_receipt, ledger::reverse_receipt,
        ledger::list_shipments, ledger::create_shipment, ledger::get_shipment, ledger::dispatch_shipment,
        ledger::deliver_shipment, ledger::return_shipment, ledger::cancel_shipment, ledger::reverse_shipment,
        ledger::list_transfers, ledger::create_transfer, ledger::get_transfer, ledger::receive_transfer, ledger::reverse_transfer,
        ledger::list_adjustments, ledger::post_adjustment, ledger::get_adjustment, ledger::reverse_adjustment,
        ledger::stock_count, ledger::lot_trace, ledger::hold_lot, ledger::release_lot,
        ledger::stock, ledger::movements, ledger::integrity,
        reports::report, reports::public_disclosure, reports::journal,
        reports::list_periods, reports::get_period, reports::close_period, reports::sign_off,
    ),
    components(schemas(super::problem::Problem))
)]
pub struct ApiDoc;

/// The interactive page at /docs. It loads the viewer script in the reader's browser; the
/// server itself fetches nothing.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>relief-ledger API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<script id="api-reference" data-url="/api/v1/openapi.json"></script>
<script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
<noscript>The API description is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</noscript>
</body>
</html>"#;
