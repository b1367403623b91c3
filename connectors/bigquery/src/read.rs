//! Reading tables that live in BigQuery for a source (the GA4 export): the
//! same client, credentials, endpoint and retry policy as the target.

use super::*;

impl BigQuery {
    /// Whether the dataset this client points at exists.
    pub async fn dataset_exists(&self) -> Result<bool> {
        self.count(0);
        match self
            .call("BigQuery datasets.get", || {
                self.client.dataset().get(&self.target.project, &self.target.dataset)
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if Self::is_not_found(&e) => Ok(false),
            Err(e) => Err(self.error(e, &format!("reading dataset {}", self.describe_target()))),
        }
    }

    /// A table's top-level column names, or `None` when it does not exist.
    pub async fn columns(&self, table: &str) -> Result<Option<Vec<String>>> {
        Ok(self.table(table).await?.map(|t| {
            t.schema
                .fields
                .unwrap_or_default()
                .into_iter()
                .map(|f| f.name)
                .collect()
        }))
    }

    /// Runs a query to completion and returns its rows as text (all pages).
    pub async fn select_text(&self, sql: &str, what: &str) -> Result<Vec<Vec<Option<String>>>> {
        Ok(self.fetch(sql, false, what).await?.text())
    }

    /// A table of this dataset as SQL names it: `` `project`.`dataset`.`table` ``.
    pub fn qualified(&self, table: &str) -> String {
        self.name(table)
    }

    /// API calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}
