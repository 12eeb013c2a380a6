// The tables as diesel sees them, identical on SQLite and PostgreSQL.
// Kept by hand alongside migrations/{sqlite,postgres}.

diesel::table! {
    warehouses (id) {
        id -> Text,
        name -> Text,
        address -> Nullable<Text>,
        region_code -> Text,
        version -> BigInt,
        created_at -> Text,
        updated_at -> Text,
        archived_at -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        name -> Text,
        role -> Text,
        warehouse_ids -> Text,
        version -> BigInt,
        created_at -> Text,
        updated_at -> Text,
        archived_at -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        user_id -> Text,
        token_hash -> Text,
        hint -> Text,
        label -> Nullable<Text>,
        created_at -> Text,
        expires_at -> Nullable<Text>,
        revoked_at -> Nullable<Text>,
        last_used_at -> Nullable<Text>,
    }
}

diesel::table! {
    items (id) {
        id -> Text,
        code -> Text,
        name -> Text,
        category -> Text,
        base_unit -> Text,
        units -> Text,
        attributes -> Text,
        tracks_lots -> Bool,
        tracks_expiry -> Bool,
        version -> BigInt,
        created_at -> Text,
        updated_at -> Text,
        archived_at -> Nullable<Text>,
    }
}

diesel::table! {
    item_values (id) {
        id -> Text,
        item_id -> Text,
        effective_from -> Text,
        unit_value_e4 -> BigInt,
        currency -> Text,
        basis -> Text,
        evidence -> Nullable<Text>,
        set_by -> Text,
        recorded_at -> Text,
    }
}

diesel::table! {
    donors (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        contact -> Text,
        region_code -> Nullable<Text>,
        credit_code -> Nullable<Text>,
        version -> BigInt,
        created_at -> Text,
        updated_at -> Text,
        archived_at -> Nullable<Text>,
    }
}

diesel::table! {
    recipients (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        region_code -> Text,
        contact -> Text,
        headcount -> Nullable<Integer>,
        version -> BigInt,
        created_at -> Text,
        updated_at -> Text,
        archived_at -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        occurred_at -> Text,
        actor_id -> Text,
        actor_name -> Text,
        actor_role -> Text,
        action -> Text,
        entity_type -> Text,
        entity_id -> Text,
        request_id -> Nullable<Text>,
        before -> Nullable<Text>,
        after -> Nullable<Text>,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(item_values -> items (item_id));

diesel::table! {
    documents (id) {
        id -> Text,
        doc_type -> Text,
        status -> Text,
        warehouse_id -> Nullable<Text>,
        to_warehouse_id -> Nullable<Text>,
        donor_id -> Nullable<Text>,
        recipient_id -> Nullable<Text>,
        pledge_id -> Nullable<Text>,
        occurred_at -> Text,
        details -> Text,
        reverses_id -> Nullable<Text>,
        reversed_by_id -> Nullable<Text>,
        created_by -> Text,
        created_at -> Text,
        updated_at -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    lots (id) {
        id -> Text,
        item_id -> Text,
        lot_number -> Nullable<Text>,
        expiry_date -> Nullable<Text>,
        manufactured_on -> Nullable<Text>,
        donor_id -> Text,
        pledge_id -> Nullable<Text>,
        pledge_line_no -> Nullable<Integer>,
        receipt_id -> Text,
        earmark -> Nullable<Text>,
        on_hold -> Bool,
        hold_reason -> Nullable<Text>,
        created_at -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    document_lines (document_id, line_no) {
        document_id -> Text,
        line_no -> Integer,
        item_id -> Text,
        lot_id -> Nullable<Text>,
        quantity_milli -> BigInt,
        unit -> Text,
        unit_quantity -> Text,
        pledge_line_no -> Nullable<Integer>,
        declared_value_cents -> Nullable<BigInt>,
        details -> Text,
    }
}

diesel::table! {
    movements (seq) {
        seq -> BigInt,
        document_id -> Text,
        document_type -> Text,
        line_no -> Integer,
        item_id -> Text,
        lot_id -> Text,
        quantity_milli -> BigInt,
        from_kind -> Text,
        from_id -> Text,
        to_kind -> Text,
        to_id -> Text,
        unit_value_e4 -> BigInt,
        value_cents -> BigInt,
        value_id -> Nullable<Text>,
        occurred_at -> Text,
        recorded_at -> Text,
        recorded_by -> Text,
        reverses_seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    balances (lot_id, location_kind, location_id) {
        lot_id -> Text,
        location_kind -> Text,
        location_id -> Text,
        item_id -> Text,
        quantity_milli -> BigInt,
        fefo -> Text,
    }
}

diesel::table! {
    idempotency_keys (user_id, idem_key) {
        user_id -> Text,
        idem_key -> Text,
        request_hash -> Text,
        response_status -> Integer,
        response_body -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    periods (id) {
        id -> Text,
        starts_at -> Nullable<Text>,
        closed_until -> Text,
        closed_at -> Text,
        closed_by -> Text,
        audit_seq -> BigInt,
        audit_hash -> Text,
        signed_off_at -> Nullable<Text>,
        signed_off_by -> Nullable<Text>,
        sign_off_note -> Nullable<Text>,
    }
}

diesel::table! {
    period_balances (period_id, lot_id, location_kind, location_id) {
        period_id -> Text,
        lot_id -> Text,
        location_kind -> Text,
        location_id -> Text,
        item_id -> Text,
        quantity_milli -> BigInt,
        value_cents -> BigInt,
    }
}

diesel::joinable!(document_lines -> documents (document_id));
diesel::joinable!(balances -> lots (lot_id));
diesel::joinable!(movements -> lots (lot_id));

diesel::table! {
    /// Counts changes to master data (triggers on its tables); see `store::group`.
    master_generation (id) {
        id -> Integer,
        n -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    warehouses,
    users,
    api_tokens,
    items,
    item_values,
    donors,
    recipients,
    audit_events,
    documents,
    lots,
    document_lines,
    movements,
    balances,
    idempotency_keys,
    periods,
    period_balances,
);
