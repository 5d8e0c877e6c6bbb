fn main() {
    // The migrations are embedded by `sqlx::migrate!`: a new file rebuilds.
    println!("cargo:rerun-if-changed=migrations");
}
