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

diesel::allow_tables_to_appear_in_same_query!(
    warehouses,
    users,
    api_tokens,
    items,
    item_values,
    donors,
    recipients,
    audit_events,
);
