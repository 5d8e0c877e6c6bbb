//! Credentials are generated once and never again while their data exists.
//!
//! MariaDB and MinIO write the passwords they were started with into their volume
//! on first start. If the credentials Secret is deleted (or loses keys) while those
//! volumes exist, generating new values would lock the application out of its own
//! data while everything looked healthy. Instead the reconcile stops and reports
//! `Degraded` with reason `CredentialsLost` and the two ways out.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use crate::Result;
use crate::builders::Environment;
use crate::credentials;
use crate::names::{self, Backend};
use crate::status::Refusal;

pub const CREDENTIALS_LOST: &str = "CredentialsLost";

/// Backends whose credentials are missing while their volume claims exist, with
/// the claims' names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LostCredentials(pub Vec<(Backend, Vec<String>)>);

/// Looks for volume claims only when some credentials are missing (a new
/// environment, or a Secret deleted or edited by hand).
pub async fn lost_credentials(
    e: &Environment<'_>,
    claims: &Api<PersistentVolumeClaim>,
    existing: Option<&BTreeMap<String, ByteString>>,
) -> Result<LostCredentials> {
    let missing = credentials::missing_for(existing);
    if missing.is_empty() {
        return Ok(LostCredentials::default());
    }
    let found = claims.list(&ListParams::default().labels(&names::environment_selector(&e.name))).await?.items;
    let lost = missing
        .into_iter()
        .filter_map(|backend| {
            let mut of_backend: Vec<String> = found
                .iter()
                .filter(|claim| claim.labels().get(names::LABEL_NAME).map(String::as_str) == Some(backend.key()))
                .map(|claim| claim.name_any())
                .collect();
            of_backend.sort();
            (!of_backend.is_empty()).then_some((backend, of_backend))
        })
        .collect();
    Ok(LostCredentials(lost))
}

impl LostCredentials {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The condition: what is missing, why nothing was generated, and the way out.
    pub fn refusal(&self, e: &Environment<'_>) -> Refusal {
        let secret = e.credentials_secret();
        let backends: Vec<_> = self.0.iter().map(|(b, _)| b.key()).collect();
        let claims: Vec<_> = self.0.iter().flat_map(|(_, c)| c.iter().map(String::as_str)).collect();
        let selectors: Vec<_> = self
            .0
            .iter()
            .map(|(b, _)| {
                format!(
                    "kubectl -n {ns} delete pvc -l {},{}={}",
                    names::environment_selector(&e.name),
                    names::LABEL_NAME,
                    b.key(),
                    ns = e.namespace
                )
            })
            .collect();
        let message = format!(
            "Secret {secret:?} lacks the credentials of {} while volume claims {} hold data created with them; \
             new passwords would lock the application out, so nothing is generated or applied. Either restore \
             the Secret from a backup (same name, keys {}), or, to start {} from scratch and lose its data, \
             delete the claims: {}",
            backends.join(", "),
            claims.join(", "),
            self.0.iter().flat_map(|(b, _)| credentials::keys_of(*b).iter().copied()).collect::<Vec<_>>().join(", "),
            backends.join(", "),
            selectors.join("; "),
        );
        Refusal { ready_reason: CREDENTIALS_LOST, reason: CREDENTIALS_LOST, message }
    }
}
