//! CEL rules (`x-kubernetes-validations`) of the schema: they refuse at admission
//! what `validate.rs` refuses in status, where CEL can say it; `.ci/operator-check.sh`
//! evaluates them against the examples and `operator/testdata/invalid-environments.yaml`.
//! Every string a rule reads has a maxLength, so the API server's cost estimate stays
//! small. Each backend's rules apply only when it is enabled and provisioned, as
//! validate.rs.

/// RFC 1123 subdomain, as CEL's RE2 reads it.
macro_rules! dns_subdomain {
    ($field:literal) => {
        concat!($field, r".matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
    };
}

/// A tag other than `latest`, or a digest (see `validate::is_pinned`).
macro_rules! pinned {
    ($field:literal) => {
        concat!(
            "(",
            $field,
            ".contains('@sha256:') || (",
            $field,
            r".matches('^(.*/)?[^/:]+:[^/]+$') && !",
            $field,
            r".matches('^(.*/)?[^/:]+:latest$')))"
        )
    };
}

/// A provisioned backend's storage is at least one byte.
macro_rules! storage_size_rule {
    ($key:literal) => {
        Rule::new("!self.enabled || has(self.external) || quantity(self.storage.size).compareTo(quantity('1')) >= 0")
            .message(concat!("spec.", $key, ".storage.size must be a positive size"))
    };
}

/// A provisioned backend's StorageClass, if named, is a valid name.
macro_rules! storage_class_rule {
    ($key:literal) => {
        Rule::new(concat!(
            "!self.enabled || has(self.external) || !has(self.storage.storageClassName) || ",
            dns_subdomain!("self.storage.storageClassName")
        ))
        .message(concat!("spec.", $key, ".storage.storageClassName is not a valid name"))
    };
}
