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

/// Documents the errors every operation can answer with, as problem+json, so the document
/// tells clients (and the fuzzer) the whole truth: authentication, limits, bad input.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |why: &str| {
            ResponseBuilder::new()
                .description(why)
                .content(
                    super::problem::CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let reads = [&mut item.get].into_iter().flatten().map(|op| (op, false));
            let writes = [
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ]
            .into_iter()
            .flatten()
            .map(|op| (op, true));
            for (op, writes) in reads.chain(writes) {
                let secured = op.security.is_some();
                let has_body = op.request_body.is_some();
                let mut add = |code: &str, why: &str| {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| problem(why).into());
                };
                add(
                    "400",
                    "Malformed request: bad JSON, query parameter or header",
                );
                add("500", "Internal error; nothing was written");
                add("503", "Database unavailable; retry");
                if secured {
                    add("401", "No valid token");
                    add("403", "The role may not do this, or not at this warehouse");
                    add("429", "Too many failed authentications (Retry-After)");
                }
                if path.contains('{') {
                    add("404", "No such record");
                }
                if has_body {
                    add("413", "Body too large");
                    add("415", "Body is not JSON");
                    add("422", "Invalid fields, all named");
                }
                if writes {
                    add("409", "Conflicts with the current state");
                }
                // Errors declared on handlers say `body = Problem`; their media type is problem+json.
                for (code, response) in op.responses.responses.iter_mut() {
                    let is_error = code.parse::<u16>().is_ok_and(|c| c >= 400);
                    if let (true, utoipa::openapi::RefOr::T(r)) = (is_error, response) {
                        if let Some(c) = r.content.shift_remove("application/json") {
                            r.content
                                .insert(super::problem::CONTENT_TYPE.to_string(), c);
                        }
                    }
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "relief-ledger",
        description = "An append-only, audited ledger of donated relief supplies. Quantities and money are decimal strings. Errors are RFC 9457 problem+json.",
    ),
    modifiers(&BearerAuth, &CommonErrors),
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
