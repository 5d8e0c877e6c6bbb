//! The CRD's CEL rules (`x-kubernetes-validations`) evaluated by a real CEL
//! implementation (kube-cel, the Kubernetes CEL library for Rust) against example
//! resources, as the API server evaluates them at admission: defaults applied
//! first, then every rule of every schema node.
//!
//! - Every DouyinEnvironment in k8s/examples/ and operator/testdata/valid-environments.yaml
//!   is admitted, and validate.rs accepts it too.
//! - Every one in operator/testdata/invalid-environments.yaml is refused with the
//!   message its annotation names, and validate.rs refuses it too: the two stay in
//!   step.
//!
//! It reads the committed k8s/operator/crd.yaml (.ci/operator-check.sh checks that it
//! is what crdgen prints).

use std::path::{Path, PathBuf};

use douyin_operator::DouyinEnvironment;
use kube::core::cel::{Validator, compile_schema};
use serde::Deserialize;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(repo().join("k8s/operator/crd.yaml")).expect("crd.yaml");
    let crd: Value = serde_yaml::from_str(&text).expect("crd parses");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The DouyinEnvironments of a YAML file, by case name (annotation or file#index).
fn environments(path: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .enumerate()
        .filter_map(|(i, document)| {
            let value: Value = serde_json::to_value(serde_yaml::Value::deserialize(document).unwrap()).unwrap();
            (value["kind"] == "DouyinEnvironment").then(|| {
                let case = value["metadata"]["annotations"]["test.douyin.rs/case"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("{}#{i}", path.display()));
                (case, value)
            })
        })
        .collect()
}

/// validate.rs on the same resource.
fn operator_accepts(value: &Value) -> Result<(), String> {
    let env: DouyinEnvironment = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let name = env.metadata.name.clone().unwrap_or_default();
    douyin_operator::validate::validate(&name, &env.spec).map_err(|e| e.message)
}

#[test]
fn every_rule_compiles() {
    let compiled = compile_schema(&schema());
    let errors: Vec<String> = compiled.compilation_errors().iter().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let text = serde_json::to_string(&schema()).unwrap();
    assert!(text.matches("x-kubernetes-validations").count() >= 8, "the CRD carries the CEL rules");
}

#[test]
fn valid_environments_are_admitted() {
    let schema = schema();
    let validator = Validator::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("k8s/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.push(repo().join("operator/testdata/valid-environments.yaml"));
    let mut checked = 0;
    for file in files {
        for (case, value) in environments(&file) {
            if let Err(errors) = validator.validate(&schema, &value, None) {
                panic!("{case}: refused by CEL: {:?}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>());
            }
            assert_eq!(operator_accepts(&value), Ok(()), "{case}: refused by validate.rs");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} valid environments");
}

#[test]
fn invalid_environments_are_refused_with_their_message() {
    let schema = schema();
    let validator = Validator::new();
    let cases = environments(&repo().join("operator/testdata/invalid-environments.yaml"));
    assert!(cases.len() >= 15);
    for (case, value) in cases {
        let expected = value["metadata"]["annotations"]["test.douyin.rs/refused"].as_str().expect("refused message");
        let errors = match validator.validate(&schema, &value, None) {
            Ok(()) => panic!("{case}: admitted, expected a refusal naming {expected:?}"),
            Err(errors) => errors,
        };
        let messages: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert!(
            errors.iter().all(|e| format!("{:?}", e.kind) == "ValidationFailure"),
            "{case}: a rule failed to evaluate instead of refusing: {errors:?}"
        );
        assert!(messages.iter().any(|m| m.contains(expected)), "{case}: expected {expected:?}, got {messages:?}");
        assert!(operator_accepts(&value).is_err(), "{case}: CEL refuses it but validate.rs accepts it");
    }
}
