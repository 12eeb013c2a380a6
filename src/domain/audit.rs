//! The audit trail: a hash chain of events, one per change, that anyone can recompute.
//!
//! Each event's hash is SHA-256 over the canonical JSON of all its other fields, including
//! the previous event's hash. Changing, removing or reordering any stored event breaks the
//! chain at that point, and `ChainVerifier` names where.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit event exactly as stored. Text fields hold what the hash was computed over, so
/// verification never depends on how a database or JSON library renders values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    /// RFC 3339, UTC, microseconds.
    pub occurred_at: String,
    pub actor_id: String,
    pub actor_name: String,
    pub actor_role: String,
    /// What happened, as `entity.verb` (`donor.create`, `token.revoke`).
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub request_id: Option<String>,
    /// Canonical JSON of the entity before the change (absent on creation).
    pub before: Option<String>,
    /// Canonical JSON of the entity after the change.
    pub after: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// An event before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub occurred_at: DateTime<Utc>,
    pub actor_id: String,
    pub actor_name: String,
    pub actor_role: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub request_id: Option<String>,
    /// Canonical JSON (`canonical::to_canonical`) of the entity before and after.
    pub before: Option<String>,
    pub after: Option<String>,
}

impl NewEvent {
    /// Places the event after `prev` (the current head) and seals it with its hash.
    pub fn seal(self, prev: Option<(i64, &str)>) -> AuditEvent {
        let (prev_seq, prev_hash) = prev.unwrap_or((0, GENESIS_HASH));
        let mut ev = AuditEvent {
            seq: prev_seq + 1,
            occurred_at: timestamp(self.occurred_at),
            actor_id: self.actor_id,
            actor_name: self.actor_name,
            actor_role: self.actor_role,
            action: self.action,
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            request_id: self.request_id,
            before: self.before,
            after: self.after,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        ev.hash = ev.compute_hash();
        ev
    }
}

impl AuditEvent {
    /// SHA-256 of the canonical JSON of every field but the hash itself. Written out field
    /// by field, in canonical (sorted) key order, rather than built as a `Value` first: the
    /// payloads are kilobytes and this runs inside every write (the same bytes as
    /// `canonical_json` of that object; the test `hash_body_is_the_canonical_json` holds it).
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.hash_body()))
    }

    fn hash_body(&self) -> Vec<u8> {
        let fields: [(&str, Option<&str>); 11] = [
            ("action", Some(&self.action)),
            ("actor_id", Some(&self.actor_id)),
            ("actor_name", Some(&self.actor_name)),
            ("actor_role", Some(&self.actor_role)),
            ("after", self.after.as_deref()),
            ("before", self.before.as_deref()),
            ("entity_id", Some(&self.entity_id)),
            ("entity_type", Some(&self.entity_type)),
            ("occurred_at", Some(&self.occurred_at)),
            ("prev_hash", Some(&self.prev_hash)),
            ("request_id", self.request_id.as_deref()),
        ];
        let size: usize = fields.iter().map(|(_, v)| v.map_or(4, str::len) + 16).sum();
        let mut out = Vec::with_capacity(size + 64);
        out.push(b'{');
        for (key, value) in fields {
            write_str(key, &mut out);
            out.push(b':');
            match value {
                Some(v) => write_str(v, &mut out),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b',');
        }
        // "seq" sorts last.
        out.extend_from_slice(format!("\"seq\":{}}}", self.seq).as_bytes());
        out
    }
}

/// The one timestamp format the ledger stores: fixed width, so text order is time order.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// JSON with object keys sorted and no insignificant white space. Numbers are written by
/// serde_json; the ledger only puts integers in them (decimals travel as strings).
pub fn canonical_json(value: &Value) -> String {
    crate::domain::canonical::to_canonical(value)
}

/// The definition of canonical JSON, walked over a `Value` the plain way: what the tests
/// hold `canonical::to_canonical` to.
#[cfg(test)]
pub(crate) fn canonical_json_walked(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[cfg(test)]
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(s, out),
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a JSON scalar serializes"),
    }
}

/// A JSON string literal, escaped as serde_json escapes it.
fn write_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// Where and why a chain stopped verifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChainBreak {
    /// The sequence number of the first event that does not verify (or that is missing).
    pub seq: i64,
    pub reason: String,
}

/// Checks events one at a time in stored order, so a long chain is verified in constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
        }
    }
}

impl ChainVerifier {
    pub fn push(&mut self, ev: &AuditEvent) -> Result<(), ChainBreak> {
        if ev.seq != self.expected_seq {
            return Err(ChainBreak {
                seq: self.expected_seq,
                reason: format!(
                    "event {} is missing: the next stored event is {}",
                    self.expected_seq, ev.seq
                ),
            });
        }
        if ev.prev_hash != self.prev_hash {
            return Err(ChainBreak {
                seq: ev.seq,
                reason: "prev_hash does not match the hash of the event before it".into(),
            });
        }
        if ev.compute_hash() != ev.hash {
            return Err(ChainBreak {
                seq: ev.seq,
                reason: "its contents do not match its hash: the event was altered".into(),
            });
        }
        self.expected_seq += 1;
        self.prev_hash = ev.hash.clone();
        Ok(())
    }

    /// Events verified so far.
    pub fn count(&self) -> i64 {
        self.expected_seq - 1
    }

    pub fn head_hash(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(n: i64) -> NewEvent {
        NewEvent {
            occurred_at: Utc::now(),
            actor_id: "u".into(),
            actor_name: "张三".into(),
            actor_role: "staff".into(),
            action: "donor.create".into(),
            entity_type: "donor".into(),
            entity_id: format!("d{n}"),
            request_id: Some("r".into()),
            before: None,
            after: Some(canonical_json(
                &json!({"name": "捐赠人", "n": n, "a": [1, {"z": 1, "b": 2}]}),
            )),
        }
    }

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut out: Vec<AuditEvent> = vec![];
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let ev = event(i).seal(prev);
            out.push(ev);
        }
        out
    }

    fn verify(events: &[AuditEvent]) -> Result<i64, ChainBreak> {
        let mut v = ChainVerifier::default();
        for e in events {
            v.push(e)?;
        }
        Ok(v.count())
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": {"d": [true, null], "c": "é"}})),
            r#"{"a":{"c":"é","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn hash_body_is_the_canonical_json() {
        for ev in chain(3).into_iter().chain([AuditEvent {
            request_id: None,
            before: None,
            actor_name: "名字 \"quoted\" \\ \n".into(),
            ..chain(1).remove(0)
        }]) {
            let reference = serde_json::json!({
                "seq": ev.seq,
                "occurred_at": ev.occurred_at,
                "actor_id": ev.actor_id,
                "actor_name": ev.actor_name,
                "actor_role": ev.actor_role,
                "action": ev.action,
                "entity_type": ev.entity_type,
                "entity_id": ev.entity_id,
                "request_id": ev.request_id,
                "before": ev.before,
                "after": ev.after,
                "prev_hash": ev.prev_hash,
            });
            assert_eq!(
                String::from_utf8(ev.hash_body()).unwrap(),
                canonical_json(&reference)
            );
        }
    }

    #[test]
    fn a_sealed_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(chain(1)[0].prev_hash, GENESIS_HASH);
    }

    #[test]
    fn alteration_deletion_and_reordering_are_located() {
        let good = chain(5);

        let mut altered = good.clone();
        altered[2].after = Some(r#"{"name":"改过"}"#.into());
        assert_eq!(verify(&altered).unwrap_err().seq, 3);

        let mut deleted = good.clone();
        deleted.remove(3);
        assert_eq!(verify(&deleted).unwrap_err().seq, 4);

        let mut swapped = good.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&swapped).unwrap_err().seq, 2);

        // Renumbering after a deletion still breaks the link to the previous hash.
        let mut renumbered = good.clone();
        renumbered.remove(1);
        for (i, e) in renumbered.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
        }
        assert_eq!(verify(&renumbered).unwrap_err().seq, 2);

        // Re-hashing an altered event breaks the next link.
        let mut rehashed = good.clone();
        rehashed[1].actor_name = "李四".into();
        rehashed[1].hash = rehashed[1].compute_hash();
        assert_eq!(verify(&rehashed).unwrap_err().seq, 3);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Written straight from a value (as every write does) or through `Value`, the
        /// canonical JSON is the same bytes.
        #[test]
        fn canonical_writer_agrees_with_canonical_json(v in json_value()) {
            prop_assert_eq!(canonical_json(&v), canonical_json_walked(&v));
        }

        /// Canonical JSON is valid JSON for the same value, and stable when re-parsed.
        #[test]
        fn canonical_json_round_trips(v in json_value()) {
            let c = canonical_json(&v);
            let back: Value = serde_json::from_str(&c).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back), c);
        }

        /// Changing any field of a sealed event changes its hash.
        #[test]
        fn every_field_is_covered_by_the_hash(v in json_value(), name in ".{1,10}") {
            let ev = NewEvent {
                occurred_at: Utc::now(),
                actor_id: "a".into(),
                actor_name: "n".into(),
                actor_role: "staff".into(),
                action: "donor.create".into(),
                entity_type: "donor".into(),
                entity_id: "e".into(),
                request_id: None,
                before: None,
                after: Some(canonical_json(&v)),
            }
            .seal(None);
            let mut changed = ev.clone();
            prop_assume!(changed.actor_name != name);
            changed.actor_name = name;
            prop_assert_ne!(changed.compute_hash(), ev.hash.clone());
            let mut renumbered = ev.clone();
            renumbered.seq += 1;
            prop_assert_ne!(renumbered.compute_hash(), ev.hash);
        }
    }
}
