use super::{Store, StoreError};

impl Store {
    /// Returns the stored value of `key`, storing `candidate` first if there is none. Replicas
    /// racing here all end up with the first value written.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        candidate: &str,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(candidate)
        .execute(&self.writer)
        .await?;
        let value: String = sqlx::query_scalar("SELECT value FROM server_settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.writer)
            .await?;
        Ok(value)
    }
}
