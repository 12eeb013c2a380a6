//! `relief-ledger demo`: the scenario of the seed report, loaded through the service layer
//! (every rule and audit event applies), into an empty database.
//!
//! A provincial work group raised 13,000 masks, 2,300 jin of 75% medical alcohol and 2,400
//! bottles of alcohol spray, worth close to 100,000 yuan, and handed them to the workers of
//! an electronics factory in Qufu and to communities and a village nearby. One lot of spray
//! arrived already past its expiry date and is written off; one receipt entered twice by
//! mistake is reversed.

use chrono::Duration;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::access::Principal;
use crate::domain::catalog::{Item, ItemInput, ItemValueInput};
use crate::domain::ledger::document::*;
use crate::domain::parties::{
    Donor, DonorInput, Recipient, RecipientInput, Warehouse, WarehouseInput,
};
use crate::error::{Error, Result};
use crate::service::ledger::documents as ledger;
use crate::service::{catalog, master, Ctx};
use crate::store::Db;

#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub warehouse_id: Uuid,
    pub items: Vec<(String, Uuid)>,
    pub donors: Vec<(String, Uuid)>,
    pub recipients: Vec<(String, Uuid)>,
    pub pledges: Vec<Uuid>,
    pub receipts: Vec<Uuid>,
    pub shipments: Vec<Uuid>,
    pub written_off_lot: Uuid,
    pub reversed_receipt: Uuid,
}

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("demo inputs are well-formed")
}

pub async fn load(db: &Db) -> Result<DemoSummary> {
    let empty = db.read(|c| {
        crate::store::ledger::list_documents(
            c,
            &crate::store::ledger::DocFilter {
                limit: 1,
                ..Default::default()
            },
        )
    })?;
    if !empty.is_empty() {
        return Err(Error::Conflict {
            field: None,
            detail: "the demo loads into a database without documents".into(),
        });
    }
    let ctx = Ctx::new(Principal::operator(), Some("demo".into()));
    let now = ctx.now;
    let day = |d: i64| Some(now - Duration::days(d));
    let date = |d: i64| (now + Duration::days(d)).date_naive();

    let wh: Warehouse = master::create(
        db,
        &ctx,
        from::<WarehouseInput>(json!({
        "name": "曲阜市防疫物资临时仓库", "address": "山东省济宁市曲阜市", "region_code": "370881"})),
    ).await?;
    let w = wh.meta.id;

    let item = async |code: &str,
                      name: &str,
                      category: &str,
                      base: &str,
                      units: serde_json::Value,
                      attrs: serde_json::Value,
                      value: &str|
           -> Result<Item> {
        let it: Item = master::create(
            db,
            &ctx,
            from::<ItemInput>(json!({
            "code": code, "name": name, "category": category, "base_unit": base, "units": units,
            "attributes": attrs, "tracks_lots": true, "tracks_expiry": true})),
        )
        .await?;
        catalog::add_value(
            db,
            &ctx,
            it.meta.id,
            from::<ItemValueInput>(json!({
            "effective_from": date(-60).to_string(), "unit_value": value, "basis": "market_quote",
            "evidence": "工作组采购询价记录"})),
        )
        .await?;
        Ok(it)
    };
    let mask = item(
        "MASK-KN95",
        "KN95 防护口罩",
        "mask",
        "piece",
        json!([{"name": "box", "factor": "50"}]),
        json!({"product_standard": "GB 2626-2019"}),
        "3.5",
    )
    .await?;
    let alcohol = item(
        "ALC-75",
        "75% 医用酒精",
        "disinfectant",
        "kg",
        json!([{"name": "jin", "factor": "0.5"}, {"name": "tonne", "factor": "1000"}]),
        json!({"alcohol_concentration": "75"}),
        "20",
    )
    .await?;
    let spray = item(
        "SPRAY-75",
        "75% 酒精喷雾 500ml",
        "disinfectant",
        "bottle",
        json!([{"name": "carton", "factor": "24"}]),
        json!({"alcohol_concentration": "75"}),
        "12",
    )
    .await?;

    let donor =
        async |name: &str, kind: &str, region: &str, credit: Option<&str>| -> Result<Donor> {
            master::create(
            db,
            &ctx,
            from::<DonorInput>(
                json!({"name": name, "kind": kind, "region_code": region, "credit_code": credit}),
            ),
        ).await
        };
    let d_masks = donor("济宁爱心企业联合会", "organisation", "370800", None).await?;
    let d_alcohol = donor(
        "济宁某医药有限公司",
        "enterprise",
        "370800",
        Some("91350100M000100Y43"),
    )
    .await?;
    let d_spray = donor("匿名捐赠人", "anonymous", "370800", None).await?;

    let recipient = async |name: &str, kind: &str, region: &str, heads: u32| -> Result<Recipient> {
        master::create(
            db,
            &ctx,
            from::<RecipientInput>(
                json!({"name": name, "kind": kind, "region_code": region, "headcount": heads}),
            ),
        )
        .await
    };
    let factory = recipient("曲阜瑞翔电子有限公司", "enterprise", "370881", 320).await?;
    let community = recipient("曲阜市鲁城街道某社区", "community", "370881", 6800).await?;
    let village = recipient("曲阜市时庄街道某村", "village", "370881", 1500).await?;

    let pledge = async |d: &Donor,
                        item: &Item,
                        qty: &str,
                        unit: &str,
                        declared: &str|
           -> Result<Uuid> {
        Ok(ledger::create_pledge(db, &ctx, from::<PledgeInput>(json!({
            "donor_id": d.meta.id, "expected_date": date(20).to_string(), "note": "大众报业集团工作组募集",
            "lines": [{"item_id": item.meta.id, "quantity": qty, "unit": unit, "declared_value": declared}]}))).await?
            .document
            .id)
    };
    let p_masks = pledge(&d_masks, &mask, "260", "box", "45500").await?;
    let p_alcohol = pledge(&d_alcohol, &alcohol, "2300", "jin", "23000").await?;
    let p_spray = pledge(&d_spray, &spray, "100", "carton", "28800").await?;

    let receive = async |d: &Donor,
                         p: Uuid,
                         at: i64,
                         lines: serde_json::Value|
           -> Result<crate::service::ledger::DocumentView> {
        ledger::post_receipt(
            db,
            &ctx,
            from::<ReceiptInput>(json!({
            "warehouse_id": w, "donor_id": d.meta.id, "pledge_id": p, "occurred_at": day(at), "lines": lines})),
        ).await
    };
    let r1 = receive(
        &d_masks,
        p_masks,
        12,
        json!([
        {"item_id": mask.meta.id, "quantity": "160", "unit": "box", "pledge_line_no": 1, "lot_number": "KN2003A", "expiry_date": date(700).to_string()},
        {"item_id": mask.meta.id, "quantity": "100", "unit": "box", "pledge_line_no": 1, "lot_number": "KN2003B", "expiry_date": date(400).to_string()}]),
    ).await?;
    let r2 = receive(
        &d_alcohol,
        p_alcohol,
        11,
        json!([
        {"item_id": alcohol.meta.id, "quantity": "2300", "unit": "jin", "pledge_line_no": 1, "lot_number": "JJ-0311", "expiry_date": date(500).to_string()}]),
    ).await?;
    let r3 = receive(
        &d_spray,
        p_spray,
        11,
        json!([
        {"item_id": spray.meta.id, "quantity": "2000", "pledge_line_no": 1, "lot_number": "PW-0218", "expiry_date": date(300).to_string()},
        {"item_id": spray.meta.id, "quantity": "400", "pledge_line_no": 1, "lot_number": "PW-1902", "expiry_date": date(-1).to_string()}]),
    ).await?;
    // The alcohol entered a second time by mistake, without the pledge; reversed below.
    let dup = ledger::post_receipt(
        db,
        &ctx,
        from::<ReceiptInput>(json!({
        "warehouse_id": w, "donor_id": d_alcohol.meta.id, "occurred_at": day(11), "note": "重复录入",
        "lines": [{"item_id": alcohol.meta.id, "quantity": "2300", "unit": "jin", "lot_number": "JJ-0311", "expiry_date": date(500).to_string()}]})),
    ).await?;
    ledger::reverse(
        db,
        &ctx,
        DocType::Receipt,
        dup.document.id,
        StepInput {
            occurred_at: day(10),
            reason: Some("同一批酒精重复录入".into()),
        },
    )
    .await?;

    let expired_lot = r3.document.lines[1]
        .lot_id
        .expect("receipt lines have lots");
    ledger::post_adjustment(
        db,
        &ctx,
        from::<AdjustmentInput>(json!({
        "warehouse_id": w, "reason": "expired", "occurred_at": day(10), "note": "到货时已过有效期",
        "lines": [{"lot_id": expired_lot, "quantity": "-400"}]})),
    )
    .await?;

    let ship = async |r: &Recipient,
                      at: i64,
                      lines: serde_json::Value,
                      signed: &str|
           -> Result<Uuid> {
        let s = ledger::create_shipment(
            db,
            &ctx,
            from::<ShipmentInput>(json!({
            "warehouse_id": w, "recipient_id": r.meta.id, "occurred_at": day(at), "dispatch": true, "lines": lines})),
        ).await?;
        ledger::deliver_shipment(
            db,
            &ctx,
            s.document.id,
            from::<DeliverInput>(json!({"signed_by": signed, "delivered_at": day(at)})),
        )
        .await?;
        Ok(s.document.id)
    };
    let s1 = ship(
        &factory,
        8,
        json!([
        {"item_id": mask.meta.id, "quantity": "8000"},
        {"item_id": alcohol.meta.id, "quantity": "600"},
        {"item_id": spray.meta.id, "quantity": "1200"}]),
        "瑞翔电子 行政部 孔经理",
    )
    .await?;
    let s2 = ship(
        &community,
        6,
        json!([
        {"item_id": mask.meta.id, "quantity": "3000"},
        {"item_id": alcohol.meta.id, "quantity": "300"},
        {"item_id": spray.meta.id, "quantity": "500"}]),
        "鲁城街道某社区 颜主任",
    )
    .await?;
    let s3 = ship(
        &village,
        5,
        json!([
        {"item_id": mask.meta.id, "quantity": "1500"},
        {"item_id": alcohol.meta.id, "quantity": "150"},
        {"item_id": spray.meta.id, "quantity": "200"}]),
        "时庄街道某村 村委会 孟书记",
    )
    .await?;

    Ok(DemoSummary {
        warehouse_id: w,
        items: vec![
            (mask.code, mask.meta.id),
            (alcohol.code, alcohol.meta.id),
            (spray.code, spray.meta.id),
        ],
        donors: [d_masks, d_alcohol, d_spray]
            .into_iter()
            .map(|d| (d.name, d.meta.id))
            .collect(),
        recipients: [factory, community, village]
            .into_iter()
            .map(|r| (r.name, r.meta.id))
            .collect(),
        pledges: vec![p_masks, p_alcohol, p_spray],
        receipts: vec![r1.document.id, r2.document.id, r3.document.id],
        shipments: vec![s1, s2, s3],
        written_off_lot: expired_lot,
        reversed_receipt: dup.document.id,
    })
}
