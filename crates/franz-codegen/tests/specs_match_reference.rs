//! Cross-checks `protocol-specs/` against Apache Kafka's JSON message
//! definitions, field by field and version by version, and checks that the
//! committed generated code is what the generator makes today.
//!
//! The reference folder is `$FRANZ_KAFKA_SPECS`, by default
//! `../shared/kafka-message-specs` beside the workspace. Without it the
//! cross-check says so and passes, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report

use std::path::PathBuf;

use franz_codegen::spec::{ApiSpec, FieldSpec, VersionRange};
use serde_json::Value;

/// APIs whose top version we deliberately keep below the reference's highest
/// stable one, and why.
const CAPPED: &[(&str, i16, &str)] = &[(
    "AddPartitionsToTxn",
    3,
    "v4+ is the broker-to-broker verification form (KIP-890)",
)];

/// APIs whose top version the reference marks unstable but a real broker
/// serves as stable (the peer wins over the file): (name, top version, why).
const PEER_STABLE: &[(&str, i16, &str)] = &[
    (
        "ConsumerGroupHeartbeat",
        1,
        "Kafka 4.1.1 advertises ConsumerGroupHeartbeat 0-1 and resolves SubscribedTopicRegex (KIP-848 regex subscriptions)",
    ),
    (
        "Produce",
        12,
        "Kafka 4.1.1 advertises Produce 0-13; v12 (fields as v11) is KIP-890's transaction version 2, where partitions join a transaction implicitly",
    ),
    (
        "EndTxn",
        5,
        "Kafka 4.1.1 advertises EndTxn 0-5 and returns the bumped producer id and epoch (KIP-890)",
    ),
    (
        "TxnOffsetCommit",
        5,
        "Kafka 4.1.1 advertises TxnOffsetCommit 0-5; v5 (fields as v4) adds the offsets to the transaction without AddOffsetsToTxn (KIP-890)",
    ),
];

fn reference_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FRANZ_KAFKA_SPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| franz_codegen::workspace_root().join("../shared/kafka-message-specs"));
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "reference specs not found at {} (set FRANZ_KAFKA_SPECS)",
        dir.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{msg}; CI requires them"
    );
    eprintln!("{msg}: cross-check not run");
    None
}

fn load_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The reference files carry // comment lines.
    let stripped: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&stripped).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn range(v: &Value) -> Option<VersionRange> {
    match v.as_str() {
        None | Some("none") => None,
        Some(s) => Some(VersionRange::parse(s).unwrap()),
    }
}

fn overlaps(r: &VersionRange, lo: i16, hi: i16) -> bool {
    r.lo <= hi && r.hi.is_none_or(|h| h >= lo)
}

fn json_default(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Compares one list of reference fields with ours, recursively.
fn compare_fields(
    path: &str,
    reference: &[Value],
    ours: &[FieldSpec],
    lo: i16,
    hi: i16,
    errors: &mut Vec<String>,
) {
    let relevant: Vec<&Value> = reference
        .iter()
        .filter(|f| overlaps(&range(&f["versions"]).unwrap(), lo, hi))
        .collect();
    let ref_names: Vec<&str> = relevant
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let our_names: Vec<&str> = ours.iter().map(|f| f.name.as_str()).collect();
    if ref_names != our_names {
        errors.push(format!(
            "{path}: fields {our_names:?}, reference {ref_names:?}"
        ));
        return;
    }
    for (r, o) in relevant.iter().zip(ours) {
        let p = format!("{path}.{}", o.name);
        let mut check = |what: &str, ok: bool, ours: String, theirs: String| {
            if !ok {
                errors.push(format!("{p}: {what} is {ours}, reference {theirs}"));
            }
        };
        check(
            "type",
            r["type"].as_str() == Some(o.ty.spec_name().as_str()),
            o.ty.spec_name(),
            r["type"].to_string(),
        );
        check(
            "versions",
            range(&r["versions"]) == Some(o.versions),
            o.versions.to_string(),
            r["versions"].to_string(),
        );
        check(
            "nullable",
            range(&r["nullableVersions"]) == o.nullable,
            format!("{:?}", o.nullable),
            r["nullableVersions"].to_string(),
        );
        check(
            "tag",
            r["tag"].as_u64().map(|t| t as u32) == o.tag,
            format!("{:?}", o.tag),
            r["tag"].to_string(),
        );
        check(
            "tagged",
            range(&r["taggedVersions"]) == o.tagged,
            format!("{:?}", o.tagged),
            r["taggedVersions"].to_string(),
        );
        let flexible = if r["flexibleVersions"].is_null() {
            None
        } else {
            Some(range(&r["flexibleVersions"]))
        };
        check(
            "flexible",
            flexible == o.flexible,
            format!("{:?}", o.flexible),
            r["flexibleVersions"].to_string(),
        );
        check(
            "default",
            json_default(&r["default"]) == o.default,
            format!("{:?}", o.default),
            r["default"].to_string(),
        );
        check(
            "ignorable",
            r["ignorable"].as_bool().unwrap_or(false) == o.ignorable,
            o.ignorable.to_string(),
            r["ignorable"].to_string(),
        );
        let sub = r["fields"].as_array().cloned().unwrap_or_default();
        compare_fields(&p, &sub, &o.fields, lo, hi, errors);
    }
}

/// `unstable_top`: the reference marks its highest version unstable (the
/// flag sits on the request file only).
fn compare_message(
    api: &ApiSpec,
    kind: &str,
    reference: &Value,
    unstable_top: bool,
    errors: &mut Vec<String>,
) {
    let ours = if kind == "Request" {
        &api.request
    } else {
        &api.response
    };
    let (lo, hi) = (api.min_version(), api.max_version());
    if reference["name"].as_str() != Some(ours.name.as_str()) {
        errors.push(format!(
            "{}: name differs from {}",
            ours.name, reference["name"]
        ));
    }
    if reference["apiKey"].as_i64() != Some(i64::from(api.key)) {
        errors.push(format!(
            "{}: key {} vs {}",
            ours.name, api.key, reference["apiKey"]
        ));
    }
    let valid = range(&reference["validVersions"]).unwrap();
    let mut stable_max = valid.hi.unwrap();
    if unstable_top {
        stable_max -= 1;
    }
    if let Some((_, v, _)) = PEER_STABLE.iter().find(|(n, _, _)| *n == api.name) {
        stable_max = *v;
    }
    let cap = CAPPED
        .iter()
        .find(|(n, _, _)| *n == api.name)
        .map(|(_, c, _)| *c);
    let want_max = cap.map_or(stable_max, |c| c.min(stable_max));
    if hi != want_max {
        errors.push(format!(
            "{}: top version {hi}, reference's highest stable {stable_max}",
            ours.name
        ));
    }
    if lo < valid.lo {
        errors.push(format!(
            "{}: floor {lo} below the reference's {}",
            ours.name, valid.lo
        ));
    }
    if range(&reference["flexibleVersions"]) != api.flexible {
        errors.push(format!(
            "{}: flexible {:?}, reference {}",
            ours.name, api.flexible, reference["flexibleVersions"]
        ));
    }
    let fields = reference["fields"].as_array().cloned().unwrap_or_default();
    compare_fields(&ours.name, &fields, &ours.fields, lo, hi, errors);
    let common: Vec<Value> = reference["commonStructs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| overlaps(&range(&c["versions"]).unwrap(), lo, hi))
        .collect();
    let ref_names: Vec<&str> = common.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let our_names: Vec<&str> = ours.common.iter().map(|c| c.name.as_str()).collect();
    if ref_names != our_names {
        errors.push(format!(
            "{}: common structs {our_names:?}, reference {ref_names:?}",
            ours.name
        ));
        return;
    }
    for (r, o) in common.iter().zip(&ours.common) {
        if range(&r["versions"]) != Some(o.versions) {
            errors.push(format!("{}.{}: versions differ", ours.name, o.name));
        }
        let fields = r["fields"].as_array().cloned().unwrap_or_default();
        compare_fields(
            &format!("{}.{}", ours.name, o.name),
            &fields,
            &o.fields,
            lo,
            hi,
            &mut *errors,
        );
    }
}

#[test]
fn protocol_specs_match_the_reference_field_by_field() {
    let Some(dir) = reference_dir() else { return };
    let apis =
        franz_codegen::load_specs(&franz_codegen::workspace_root().join("protocol-specs")).unwrap();
    assert!(apis.len() >= 40, "{} specs", apis.len());
    let mut errors = Vec::new();
    for api in &apis {
        let request = load_json(&dir.join(format!("{}Request.json", api.name)));
        let response = load_json(&dir.join(format!("{}Response.json", api.name)));
        let unstable = [&request, &response]
            .iter()
            .any(|m| m["latestVersionUnstable"].as_bool() == Some(true));
        compare_message(api, "Request", &request, unstable, &mut errors);
        compare_message(api, "Response", &response, unstable, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "{} differences:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn the_cross_check_catches_a_wrong_spec() {
    let Some(dir) = reference_dir() else { return };
    let text = std::fs::read_to_string(
        franz_codegen::workspace_root().join("protocol-specs/find_coordinator.spec"),
    )
    .unwrap();
    // One attribute changed: the check must notice.
    let broken = text.replace(
        "KeyType int8 versions=1+ default=0",
        "KeyType int8 versions=1+ default=1",
    );
    assert_ne!(text, broken);
    let api = franz_codegen::spec::parse(&broken).unwrap();
    let mut errors = Vec::new();
    compare_message(
        &api,
        "Request",
        &load_json(&dir.join("FindCoordinatorRequest.json")),
        false,
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("KeyType: default"), "{errors:?}");
}

#[test]
fn committed_generated_code_is_up_to_date() {
    let root = franz_codegen::workspace_root();
    let apis = franz_codegen::load_specs(&root.join("protocol-specs")).unwrap();
    let files = franz_codegen::generate::generate_all(&apis);
    let tmp = std::env::temp_dir().join(format!("franz-codegen-check-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (name, text) in &files {
        std::fs::write(tmp.join(name), text).unwrap();
    }
    let status = std::process::Command::new("rustfmt")
        .arg("--edition=2024")
        .args(files.iter().map(|(n, _)| tmp.join(n)))
        .status()
        .expect("rustfmt");
    assert!(status.success());
    let out = franz_codegen::output_dir();
    let mut stale = Vec::new();
    for (name, _) in &files {
        let fresh = std::fs::read_to_string(tmp.join(name)).unwrap();
        let committed = std::fs::read_to_string(out.join(name)).unwrap_or_default();
        if fresh != committed {
            stale.push(name.clone());
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        stale.is_empty(),
        "stale generated files (run `cargo run -p franz-codegen`): {stale:?}"
    );
}
