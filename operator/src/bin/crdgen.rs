//! Prints the `DouyinEnvironment` CRD as YAML (committed as `k8s/operator/crd.yaml`).

use douyin_operator::DouyinEnvironment;
use kube::CustomResourceExt;

fn main() -> anyhow::Result<()> {
    print!("{}", serde_yaml::to_string(&DouyinEnvironment::crd())?);
    Ok(())
}
