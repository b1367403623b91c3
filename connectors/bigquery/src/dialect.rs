//! BigQuery as a SQL warehouse: its statements and dialect for the shared
//! merge, views, benchmarks and alert log (`crest_core::warehouse`).
use super::*;

/// BigQuery's statements. One MERGE for tables with and without a key:
/// without one its match is FALSE, so the run's dates are replaced whole.
pub(crate) static STATEMENTS: Statements = Statements {
    merge: MERGE,
    replace: None,
    counts: COUNTS,
    benchmarks_create: BENCHMARKS_CREATE,
    benchmarks_replace: BENCHMARKS_REPLACE,
    benchmarks_evolve: BENCHMARKS_EVOLVE,
    alert_log_create: ALERT_LOG_CREATE,
    append: APPEND,
    utm_hygiene_create: UTM_HYGIENE_CREATE,
    utm_hygiene_evolve: UTM_HYGIENE_EVOLVE,
    alert_log_delivered: ALERT_LOG_DELIVERED,
    views: VIEWS,
};

#[async_trait::async_trait(?Send)]
impl warehouse::Warehouse for BigQuery {
    fn quoting(&self) -> &dyn Quote {
        &Bq
    }

    fn literals(&self) -> &dyn Literal {
        &Bq
    }

    fn date_bound(&self, d: chrono::NaiveDate) -> String {
        format!("DATE '{d}'")
    }

    fn table_name(&self, table: &str) -> String {
        self.name(table)
    }

    fn statements(&self) -> &'static Statements {
        &STATEMENTS
    }

    fn view_column(&self, column: &str, about: &str) -> String {
        // Each column with its description, as BigQuery shows it in the schema.
        format!("{} OPTIONS(description = {})", Bq.quote(column), Bq.string(about))
    }

    fn view_params(&self) -> Vec<(&'static str, String)> {
        // BigQuery views name their tables with the dataset.
        vec![(
            "dataset",
            format!("`{}`.`{}`", self.target.project, self.target.dataset),
        )]
    }

    fn benchmark_types(&self) -> [&'static str; 3] {
        ["NUMERIC", "STRING", "INT64"]
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        BigQuery::query(self, sql).await
    }

    async fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        Ok(self.run(sql).await?.text())
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        self.run(sql).await?;
        self.count(0);
        Ok(())
    }

    async fn drop_staging_table(&self, table: &str, load_id: &str) {
        let staging = warehouse::staging_name(table, load_id);
        self.count(0);
        let dropped = self
            .call("BigQuery tables.delete", || {
                self.client
                    .table()
                    .delete(&self.target.project, &self.target.dataset, &staging)
            })
            .await;
        match dropped {
            Err(e) if !Self::is_not_found(&e) => {
                tracing::warn!(table = %staging, error = %one_line(&e), "cannot drop a staging table; it is harmless, drop it by hand")
            }
            _ => {}
        }
    }
}
