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
use kube::core::cel::{CompiledSchema, ScopeContext, Validator, WarningKind, analyze_rule, compile_schema};
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

/// Every schema node with its path, depth first.
fn nodes<'a>(node: &'a CompiledSchema, path: String, out: &mut Vec<(String, &'a CompiledSchema)>) {
    out.push((path.clone(), node));
    let mut children: Vec<_> = node.properties.iter().collect();
    children.sort_by(|a, b| a.0.cmp(b.0));
    for (name, child) in children {
        nodes(child, format!("{path}.{name}"), out);
    }
    if let Some(items) = &node.items {
        nodes(items, format!("{path}[]"), out);
    }
    if let Some(values) = &node.additional_properties {
        nodes(values, format!("{path}{{}}"), out);
    }
}

/// Whether the variable a scope warning names is one the rule binds itself, in a
/// macro such as `self.all(n, …)`: kube-cel's scope check counts those among the
/// free variables, while the API server (and kube-cel's evaluator) bind them.
fn binds_its_variable(rule: &str, message: &str) -> bool {
    let Some(variable) = message.split('\'').nth(1) else { return false };
    ["all", "exists", "exists_one", "map", "filter"].iter().any(|m| rule.contains(&format!(".{m}({variable},")))
}

/// Each rule parses, names only variables a CRD rule may use, and stays within
/// the API server's cost budget (strings it reads are bounded): a CRD failing
/// any of these is refused when it is applied.
#[test]
fn every_rule_compiles_and_fits_the_cost_budget() {
    let compiled = compile_schema(&schema());
    let mut all = Vec::new();
    nodes(&compiled, String::new(), &mut all);
    let mut rules = 0;
    let mut problems = Vec::new();
    for (path, node) in all {
        for validation in &node.validations {
            match validation {
                Err(error) => problems.push(format!("{path}: {error}")),
                Ok(result) => {
                    rules += 1;
                    for warning in analyze_rule(&result.rule.rule, node, ScopeContext::CrdValidation) {
                        if warning.kind == WarningKind::WrongScope
                            && binds_its_variable(&result.rule.rule, &warning.message)
                        {
                            continue;
                        }
                        if matches!(warning.kind, WarningKind::WrongScope | WarningKind::CostExceeded) {
                            problems.push(format!("{path}: {}: {}", warning.rule, warning.message));
                        }
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(rules >= 20, "the CRD carries the CEL rules ({rules} found)");
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
