//! What the SQL warehouses (BigQuery, Snowflake) share: validated and quoted
//! identifiers, `.sql` templates rendered with named parameters, the natural
//! keys a merge matches on, the column lists and predicates a merge is made
//! of, the counts that become a load's report, and the drivers of a merge,
//! the views, benchmarks and alert log. A warehouse crate brings its dialect
//! (quoting, types, literals), its statements and a way to run them
//! ([`Warehouse`]), and its staging ([`crate::load::Destination`]).

use crate::load::TableReport;
use crate::raw::RawFile;
use crate::storage::Location;
use crate::{Error, Result};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;

/// The natural key of each loaded table; a table without one (quarantine,
/// which keeps duplicates on purpose) is replaced by date.
pub fn natural_key(table: &str) -> &'static [&'static str] {
    match table {
        "creator_performance" => &[
            "date",
            "hour",
            "platform",
            "placement",
            "account_id",
            "ad_id",
            "content_id",
        ],
        "attribution_windows" => &[
            "date",
            "hour",
            "platform",
            "account_id",
            "ad_id",
            "content_id",
            "action",
            "window",
        ],
        _ => &[],
    }
}

/// A column's description, as the canonical schema documents it ("" if none).
pub fn description(f: &arrow::datatypes::Field) -> &str {
    f.metadata().get("description").map(String::as_str).unwrap_or("")
}

/// The column that orders duplicates of a key: the latest wins.
pub fn latest_column(schema: &Schema) -> &'static str {
    if schema.field_with_name("extracted_at").is_ok() {
        "extracted_at"
    } else {
        "run_id"
    }
}

/// A name from config (dataset, schema, database, warehouse, role): letters,
/// digits and underscores, not starting with a digit. Anything else is refused
/// rather than quoted, so no config value can reach SQL as SQL.
pub fn ident<'a>(what: &str, name: &'a str) -> Result<&'a str> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(name)
    } else {
        Err(Error::Config(format!(
            "{what} '{name}' is not a valid name: use letters, digits and underscores, not starting with a digit"
        )))
    }
}

/// Renders a `.sql` template: every `{{name}}` is replaced by its parameter.
/// A placeholder without a parameter is a bug in crest, reported as such.
pub fn render(template: &str, params: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::Data("a SQL template has an unclosed {{".into()))?;
        let name = after[..end].trim();
        let value = params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                Error::Data(format!(
                    "a SQL template names {{{{{name}}}}} but crest gave no value for it"
                ))
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    // Comments are for people reading the .sql files, not for the warehouse's log.
    Ok(out
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// A view's column list for `CREATE VIEW v (…) AS`, each column as `column`
/// spells it with its description (from [`crate::views::VIEWS`]).
pub fn view_columns(view: &str, column: impl Fn(&str, &str) -> String) -> Result<String> {
    let v = crate::views::VIEWS
        .iter()
        .find(|v| v.name == view)
        .ok_or_else(|| Error::Data(format!("crest has no metadata for the view {view}")))?;
    Ok(v.columns
        .iter()
        .map(|c| column(c.name, c.about))
        .collect::<Vec<_>>()
        .join(",\n  "))
}

/// How a dialect spells names.
pub trait Quote {
    /// A column or table name, quoted.
    fn quote(&self, name: &str) -> String;
    /// The value a nullable key column of this type compares as when null
    /// (so keys with nulls match; ids are never empty strings).
    fn null_sentinel(&self, t: &DataType) -> &'static str {
        match t {
            DataType::Utf8 | DataType::LargeUtf8 => "''",
            _ => "-1",
        }
    }
}

/// The pieces of a merge for one table, quoted for one dialect.
pub struct MergeParts {
    /// `a, b, c`
    pub columns: String,
    /// `S.a, S.b, S.c`
    pub source_columns: String,
    /// `T.k1 = S.k1 AND COALESCE(T.k2, '') = COALESCE(S.k2, '')`; `FALSE` without a key
    pub key_match: String,
    /// `k1, k2`
    pub key: String,
    /// `T.a IS DISTINCT FROM S.a OR …` over the columns outside the key
    pub changed: String,
    /// `a = S.a, …` over the columns outside the key
    pub update_set: String,
    pub keyed: bool,
    /// `QUALIFY …` keeping the latest row of each key; empty without a key
    pub dedup: String,
    /// The SELECT list of a tombstone: the key (or, without one, the date)
    /// from alias `O`, NULL elsewhere (typed by a UNION's first branch)
    pub tombstone_columns: String,
    /// The key match between the staging table (`X`) and the target (`O`)
    pub staged_key_match: String,
    key_terms: Vec<(String, Option<&'static str>)>,
}

impl MergeParts {
    pub fn new(q: &dyn Quote, schema: &Schema, key: &[&str]) -> Self {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let key_terms: Vec<(String, Option<&'static str>)> = key
            .iter()
            .map(|k| {
                let sentinel = match schema.field_with_name(k) {
                    Ok(f) if f.is_nullable() => Some(q.null_sentinel(f.data_type())),
                    _ => None,
                };
                (q.quote(k), sentinel)
            })
            .collect();
        let rest: Vec<&str> = names.iter().copied().filter(|n| !key.contains(n)).collect();
        let mut parts = MergeParts {
            columns: names.iter().map(|n| q.quote(n)).collect::<Vec<_>>().join(", "),
            source_columns: names
                .iter()
                .map(|n| format!("S.{}", q.quote(n)))
                .collect::<Vec<_>>()
                .join(", "),
            key_match: String::new(),
            key: key_terms.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "),
            changed: if rest.is_empty() {
                "FALSE".into()
            } else {
                rest.iter()
                    .map(|n| format!("T.{0} IS DISTINCT FROM S.{0}", q.quote(n)))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            },
            update_set: rest
                .iter()
                .map(|n| format!("{0} = S.{0}", q.quote(n)))
                .collect::<Vec<_>>()
                .join(", "),
            keyed: !key.is_empty(),
            dedup: String::new(),
            tombstone_columns: String::new(),
            staged_key_match: String::new(),
            key_terms,
        };
        parts.key_match = parts.key_match_between("T", "S");
        parts.staged_key_match = parts.key_match_between("X", "O");
        if parts.keyed {
            let latest = q.quote(latest_column(schema));
            parts.dedup = format!(
                "QUALIFY ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {latest} DESC NULLS LAST) = 1",
                parts.key
            );
        }
        parts.tombstone_columns = names
            .iter()
            .map(|n| {
                let c = q.quote(n);
                let carried = if parts.keyed { key.contains(n) } else { *n == "date" };
                if carried {
                    format!("O.{c}")
                } else {
                    format!("NULL AS {c}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        parts
    }

    /// The parameters a dialect's merge and counts templates take, after
    /// the statement's own (target, staging, date bounds).
    pub fn params<'a>(&'a self, own: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut p = own.to_vec();
        p.extend([
            ("columns", self.columns.as_str()),
            ("source_columns", &self.source_columns),
            ("key", &self.key),
            ("key_match", &self.key_match),
            ("staged_key_match", &self.staged_key_match),
            ("changed", &self.changed),
            ("update_set", &self.update_set),
            ("dedup", &self.dedup),
            ("tombstone_columns", &self.tombstone_columns),
        ]);
        p
    }

    /// The key match between two aliases (`FALSE` for a table without a key).
    pub fn key_match_between(&self, a: &str, b: &str) -> String {
        if self.key_terms.is_empty() {
            return "FALSE".into();
        }
        self.key_terms
            .iter()
            .map(|(c, sentinel)| match sentinel {
                Some(z) => format!("COALESCE({a}.{c}, {z}) = COALESCE({b}.{c}, {z})"),
                None => format!("{a}.{c} = {b}.{c}"),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// A whole number from a result's first row, column `k`. A warehouse may
/// type a COUNT or SUM as a decimal or float ("2.0"); counts are whole.
pub fn number(rows: &[Vec<Option<String>>], k: usize) -> u64 {
    rows.first()
        .and_then(|r| r.get(k).cloned().flatten())
        .and_then(|v| {
            v.parse::<u64>()
                .ok()
                .or_else(|| v.parse::<f64>().ok().map(|f| f.round() as u64))
        })
        .unwrap_or(0)
}

/// What a table held and what the run brings, counted before the merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounts {
    /// Rows of the run after de-duplication on the key.
    pub staged: u64,
    /// Of those, keys the table held already …
    pub matched: u64,
    /// … and of those, rows whose values differ.
    pub changed: u64,
    /// Rows the table held in the run's dates.
    pub held: u64,
}

impl MergeCounts {
    /// From the first row of `counts.sql`'s result, as text.
    pub fn from_row(rows: &[Vec<Option<String>>]) -> Self {
        let num = |k: usize| number(rows, k);
        MergeCounts {
            staged: num(0),
            matched: num(1),
            changed: num(2),
            held: num(3),
        }
    }

    pub fn report(&self, table: &str) -> TableReport {
        let unchanged = self.matched - self.changed.min(self.matched);
        TableReport {
            table: table.to_string(),
            inserted: self.staged - self.matched.min(self.staged),
            replaced: self.changed,
            // Rows the merge replaced or removed: the changed ones and those the run no longer has.
            replaced_old: self.held.saturating_sub(unchanged),
            unchanged,
        }
    }
}

/// One of the run's files, checked against the manifest's checksum: a file
/// changed after the transform stops the load before anything is merged.
pub async fn verify_file(input: &Location, file: &RawFile) -> Result<bytes::Bytes> {
    use sha2::{Digest, Sha256};
    let what = format!("{input}/{}", file.path);
    let bytes = input
        .get(&file.path)
        .await?
        .ok_or_else(|| Error::Data(format!("{what} is named by the manifest but missing")))?;
    if hex::encode(Sha256::digest(&bytes)) != file.sha256 {
        return Err(Error::Data(format!(
            "{what} does not match its checksum in the manifest: it changed after the transform; run crest transform again"
        )));
    }
    Ok(bytes)
}

/// The record batches of one of the run's files, read once and checked
/// against the manifest's checksum first.
pub async fn file_batches(
    input: &Location,
    file: &RawFile,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let what = format!("{input}/{}", file.path);
    let bytes = verify_file(input, file).await?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| Error::Data(format!("{what} is not readable Parquet: {e}")))?
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| Error::Data(format!("{what}: {e}")))?;
    Ok(reader.map(move |b| b.map_err(|e| Error::Data(format!("reading {what}: {e}")))))
}

/// Compares a warehouse table's columns (name → the warehouse's type name)
/// with the input's: returns the input columns to add, or what differs.
pub fn compare_columns(
    table: &str,
    held: &[(String, String)],
    input: &[(String, String, bool)],
) -> std::result::Result<Vec<usize>, Vec<String>> {
    let mut problems = Vec::new();
    let find = |name: &str| input.iter().position(|(n, _, _)| n.eq_ignore_ascii_case(name));
    for (name, ty) in held {
        match find(name) {
            None => problems.push(format!("{table}.{name} is missing from the input")),
            Some(i) if !input[i].1.eq_ignore_ascii_case(ty) => problems.push(format!(
                "{table}.{name} is {ty} in the target but {} in the input",
                input[i].1
            )),
            Some(_) => {}
        }
    }
    let mut added = Vec::new();
    for (i, (name, _, nullable)) in input.iter().enumerate() {
        if !held.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            if *nullable {
                added.push(i);
            } else {
                problems.push(format!(
                    "{table}.{name} is new but not nullable: old rows cannot hold it"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(added)
    } else {
        Err(problems)
    }
}

/// How a dialect writes literals.
/// The condition that limits a merge's deletes to the platform × account
/// pairs the run speaks for, on rows of `alias`: `TRUE` when the run does not
/// say (an older crest), `FALSE` when it speaks for none.
pub fn scope_predicate(
    q: &dyn Quote,
    lit: &dyn Literal,
    alias: &str,
    scope: Option<&std::collections::BTreeSet<String>>,
) -> String {
    match scope {
        None => "TRUE".into(),
        Some(pairs) if pairs.is_empty() => "FALSE".into(),
        Some(pairs) => format!(
            "CONCAT({alias}.{}, '/', {alias}.{}) IN ({})",
            q.quote("platform"),
            q.quote("account_id"),
            pairs.iter().map(|p| lit.string(p)).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub trait Literal {
    fn string(&self, s: &str) -> String;
    /// `YYYY-MM-DD`
    fn date(&self, d: &str) -> String {
        format!("DATE '{d}'")
    }
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, UTC
    fn timestamp(&self, t: &str) -> String {
        format!("TIMESTAMP '{t}'")
    }
}

/// Each row of a batch as a SQL `(v1, v2, …)` tuple of literals, for the
/// batched multi-row INSERT a warehouse takes when it cannot read the files.
pub fn value_rows(batch: &RecordBatch, dialect: &dyn Literal) -> Result<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::new()
        .with_null("NULL")
        .with_date_format(Some("%Y-%m-%d"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.6f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.6f"));
    let bad = |e: arrow::error::ArrowError| Error::Data(format!("cannot write a value as SQL: {e}"));
    let columns: Vec<(ArrayFormatter, &DataType, &dyn arrow::array::Array)> = batch
        .columns()
        .iter()
        .map(|c| {
            Ok((
                ArrayFormatter::try_new(c.as_ref(), &options).map_err(bad)?,
                c.data_type(),
                c.as_ref(),
            ))
        })
        .collect::<Result<_>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut row = String::new();
    for i in 0..batch.num_rows() {
        row.clear();
        row.push('(');
        for (k, (f, t, a)) in columns.iter().enumerate() {
            if k > 0 {
                row.push_str(", ");
            }
            if a.is_null(i) {
                row.push_str("NULL");
                continue;
            }
            let v = f.value(i).to_string();
            match t {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => row.push_str(&dialect.string(&v)),
                DataType::Date32 | DataType::Date64 => row.push_str(&dialect.date(&v)),
                DataType::Timestamp(..) => row.push_str(&dialect.timestamp(&v)),
                DataType::Float32 | DataType::Float64 if !v.parse::<f64>().is_ok_and(f64::is_finite) => {
                    return Err(Error::Data(format!("{v} cannot be loaded into a warehouse number")));
                }
                _ => row.push_str(&v),
            }
        }
        row.push(')');
        rows.push(row.clone());
    }
    Ok(rows)
}

/// `loaded.sql` rendered for a dialect: the rows of the last successful load
/// of a manifest (`checksum` already a literal of the dialect).
pub fn render_loaded(template: &str, q: &dyn Quote, loads: &str, checksum: &str) -> Result<String> {
    let columns = [
        "load_id",
        "target_table",
        "rows",
        "inserted",
        "replaced",
        "replaced_before",
        "unchanged",
        "manifest_checksum",
        "status",
    ];
    let quoted: Vec<(&str, String)> = columns.iter().map(|c| (*c, q.quote(c))).collect();
    let mut params: Vec<(&str, &str)> = quoted.iter().map(|(c, v)| (*c, v.as_str())).collect();
    params.extend([("loads", loads), ("checksum", checksum)]);
    render(template, &params)
}

/// A dialect's statements, from its folder of `.sql` files (`crest-sql`).
pub struct Statements {
    /// MERGE of a table with a natural key (and, without `replace`, of one without).
    pub merge: &'static str,
    /// Replace by date of a table without a key, where the MERGE cannot.
    pub replace: Option<&'static str>,
    pub counts: &'static str,
    pub benchmarks_create: &'static str,
    pub benchmarks_replace: &'static str,
    /// Adds the columns `benchmarks` gained to a table an earlier crest created.
    pub benchmarks_evolve: &'static str,
    pub alert_log_create: &'static str,
    /// `INSERT INTO {{table}} ({{columns}}) VALUES {{rows}}`: the alert log, links audits.
    pub append: &'static str,
    pub utm_hygiene_create: &'static str,
    /// Adds the columns `utm_hygiene` gained to a table an earlier crest created.
    pub utm_hygiene_evolve: &'static str,
    pub alert_log_delivered: &'static str,
    /// The decision layer's views: (name, SQL taking `{{columns}}`).
    pub views: &'static [(&'static str, &'static str)],
}

/// What a SQL warehouse brings to be a target: its dialect, its statements
/// and a way to run them. Merging a load, the views, benchmarks and the
/// alert log are driven from here, the same for every warehouse; with a
/// [`crate::load::Destination`], [`SqlTarget`] makes it a
/// [`crate::target::Target`].
#[async_trait::async_trait(?Send)]
pub trait Warehouse {
    fn quoting(&self) -> &dyn Quote;
    fn literals(&self) -> &dyn Literal;
    fn statements(&self) -> &'static Statements;
    /// A date as a merge's bound is written, e.g. `DATE '2026-01-31'`.
    fn date_bound(&self, d: chrono::NaiveDate) -> String;
    /// A table's name as statements write it: qualified and quoted.
    fn table_name(&self, table: &str) -> String;
    /// A view column's entry: its name with its description as the dialect keeps it.
    fn view_column(&self, column: &str, about: &str) -> String;
    /// Parameters the views take besides `columns` (BigQuery's `dataset`).
    fn view_params(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The benchmarks' column types: decimal, text, integer.
    fn benchmark_types(&self) -> [&'static str; 3];
    /// Runs a statement and returns its rows as text.
    async fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>>;
    /// Runs a statement for its effect.
    async fn execute(&self, sql: &str) -> Result<()>;
    /// Runs a user's SQL with the target's dataset or schema as the default.
    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>>;
    /// Drops a load's staging table of `table`, best effort: one left behind
    /// is named by its load and harmless.
    async fn drop_staging_table(&self, table: &str, load_id: &str);
}

/// Merges each staged table into its target, one statement per table,
/// counting first so the report says what the merge changed; then drops the
/// staging table. Every SQL warehouse's `Destination::merge`.
pub async fn merge_staged<W: Warehouse>(
    w: &W,
    plan: &crate::load::LoadPlan,
    load_id: &str,
    staged: Vec<(&'static str, arrow::datatypes::SchemaRef)>,
) -> Result<Vec<TableReport>> {
    let (q, lit) = (w.quoting(), w.literals());
    let date = q.quote("date");
    let start = w.date_bound(plan.range.start);
    let end = w.date_bound(plan.range.end);
    let scope_t = scope_predicate(q, lit, "T", plan.scope.as_ref());
    let scope_o = scope_predicate(q, lit, "O", plan.scope.as_ref());
    let mut reports = Vec::new();
    for (table, schema) in staged {
        let parts = MergeParts::new(q, &schema, natural_key(table));
        let staging = w.table_name(&staging_name(table, load_id));
        let target = w.table_name(table);
        let params = parts.params(&[
            ("target", &target),
            ("staging", &staging),
            ("date", &date),
            ("start", &start),
            ("end", &end),
            ("scope_t", &scope_t),
            ("scope_o", &scope_o),
        ]);
        let sql = w.statements();
        let counts = MergeCounts::from_row(&w.rows(&render(sql.counts, &params)?).await?);
        let merge = match (parts.keyed, sql.replace) {
            (false, Some(replace)) => replace,
            _ => sql.merge,
        };
        w.execute(&render(merge, &params)?).await?;
        w.drop_staging_table(table, load_id).await;
        reports.push(counts.report(table));
    }
    Ok(reports)
}

/// Drops every staging table of a load (after a failure).
pub async fn drop_staging<W: Warehouse>(w: &W, plan: &crate::load::LoadPlan, load_id: &str) {
    for t in &plan.tables {
        w.drop_staging_table(t.table, load_id).await;
    }
}

/// `crest views apply`: the benchmarks and alert log tables where missing,
/// then each view with its columns' descriptions.
pub async fn apply_views<W: Warehouse>(w: &W) -> Result<()> {
    ensure_table(w, w.statements().benchmarks_create, crate::benchmarks::TABLE).await?;
    ensure_table(w, w.statements().benchmarks_evolve, crate::benchmarks::TABLE).await?;
    ensure_alert_log(w).await?;
    ensure_utm_hygiene(w).await?;
    for (name, sql) in w.statements().views {
        let columns = view_columns(name, |c, about| w.view_column(c, about))?;
        let mut params = w.view_params();
        params.push(("columns", columns));
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        w.query(&render(sql, &params)?)
            .await
            .map_err(|e| Error::Upstream(format!("view {name}: {e}")))?;
    }
    Ok(())
}

async fn ensure_table<W: Warehouse>(w: &W, create: &str, table: &str) -> Result<()> {
    w.execute(&render(create, &[("table", &w.table_name(table))])?).await
}

/// `utm_hygiene`, created where missing and given the columns it gained.
async fn ensure_utm_hygiene<W: Warehouse>(w: &W) -> Result<()> {
    ensure_table(w, w.statements().utm_hygiene_create, crate::utm_hygiene::TABLE).await?;
    ensure_table(w, w.statements().utm_hygiene_evolve, crate::utm_hygiene::TABLE).await
}

/// `crest alerts`: the log, created where it does not exist yet.
pub async fn ensure_alert_log<W: Warehouse>(w: &W) -> Result<()> {
    ensure_table(w, w.statements().alert_log_create, crate::alert_log::TABLE).await
}

/// A batch's rows appended to `table` in one INSERT: all of them or none.
async fn append<W: Warehouse>(w: &W, table: &str, batch: &RecordBatch) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let columns = batch
        .schema()
        .fields()
        .iter()
        .map(|f| w.quoting().quote(f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = value_rows(batch, w.literals())?.join(",\n");
    let table = w.table_name(table);
    w.execute(&render(
        w.statements().append,
        &[("table", &table), ("columns", &columns), ("rows", &rows)],
    )?)
    .await
}

/// `crest alerts`: one evaluation's rows, appended in one INSERT.
pub async fn append_alert_log<W: Warehouse>(w: &W, batch: &RecordBatch) -> Result<()> {
    append(w, crate::alert_log::TABLE, batch).await
}

/// `crest links audit`: one audit's rows, appended in one INSERT (the table
/// created where missing); `v_utm_hygiene` reads the latest audit.
pub async fn append_utm_hygiene<W: Warehouse>(w: &W, batch: &RecordBatch) -> Result<()> {
    ensure_utm_hygiene(w).await?;
    append(w, crate::utm_hygiene::TABLE, batch).await
}

/// `crest alerts`: the evaluation reached every channel.
pub async fn mark_alerts_delivered<W: Warehouse>(
    w: &W,
    evaluation_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let at = w.literals().timestamp(&at.format("%Y-%m-%d %H:%M:%S%.6f").to_string());
    let table = w.table_name(crate::alert_log::TABLE);
    w.execute(&render(
        w.statements().alert_log_delivered,
        &[
            ("table", &table),
            ("at", &at),
            ("evaluation_id", &w.literals().string(evaluation_id)),
        ],
    )?)
    .await
}

/// `crest benchmarks load`: the rows replace the table in one statement.
pub async fn load_benchmarks<W: Warehouse>(w: &W, rows: &[crate::benchmarks::Benchmark]) -> Result<()> {
    let [decimal, text, integer] = w.benchmark_types();
    let select = crate::benchmarks::select_sql(rows, w.literals(), decimal, text, integer);
    let table = w.table_name(crate::benchmarks::TABLE);
    w.execute(&render(
        w.statements().benchmarks_replace,
        &[("table", &table), ("rows", &select)],
    )?)
    .await
}

/// A SQL warehouse as a `crest` target, with the canonical tables' schemas
/// (`Opening::tables`): views need every table they read, loaded or not.
pub struct SqlTarget<W>(pub W, pub Vec<(&'static str, arrow::datatypes::SchemaRef)>);

#[async_trait::async_trait(?Send)]
impl<W: Warehouse + crate::load::Destination> crate::target::Target for SqlTarget<W> {
    fn describe(&self) -> String {
        crate::load::Destination::describe(&self.0)
    }

    async fn load(
        &self,
        plan: &crate::load::LoadPlan,
        schemas: &[(&'static str, arrow::datatypes::SchemaRef)],
        options: crate::load::LoadOptions,
    ) -> Result<crate::load::LoadOutcome> {
        crate::load::run_load(&self.0, plan, schemas, options).await
    }

    fn traffic(&self) -> Option<(u64, u64)> {
        crate::load::Destination::traffic(&self.0)
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Warehouse::query(&self.0, sql).await
    }

    async fn apply_views(&self) -> Result<()> {
        // A table no load has written yet (creator_attribution before the
        // first attribution) is created empty, so every view applies.
        crate::load::Destination::prepare(&self.0, &self.1, false)
            .await
            .map_err(|e| e.context("the views read the canonical tables"))?;
        apply_views(&self.0).await
    }

    async fn load_benchmarks(&self, rows: &[crate::benchmarks::Benchmark]) -> Result<()> {
        load_benchmarks(&self.0, rows).await
    }

    async fn ensure_alert_log(&self) -> Result<()> {
        ensure_alert_log(&self.0).await
    }

    async fn append_alert_log(&self, _evaluation_id: &str, batch: &RecordBatch) -> Result<()> {
        append_alert_log(&self.0, batch).await
    }

    async fn mark_alerts_delivered(&self, evaluation_id: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        mark_alerts_delivered(&self.0, evaluation_id, at).await
    }

    async fn append_utm_hygiene(&self, batch: &RecordBatch) -> Result<()> {
        append_utm_hygiene(&self.0, batch).await
    }
}

/// A staging table's name for a load: the table, then the load id's unique part.
pub fn staging_name(table: &str, load_id: &str) -> String {
    let id: String = load_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("_crest_stage_{table}_{}", id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    struct Ticks;
    impl Quote for Ticks {
        fn quote(&self, name: &str) -> String {
            format!("`{name}`")
        }
    }

    #[test]
    fn names_from_config_are_validated_not_quoted() {
        assert!(ident("dataset", "crest_prod").is_ok());
        for bad in ["", "1abc", "a-b", "x; DROP TABLE y", "a\"b", "é"] {
            assert!(ident("dataset", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_take_named_parameters_and_name_a_missing_one() {
        let sql = render("-- why\nSELECT {{a}} FROM {{ b }}", &[("a", "x"), ("b", "t")]).unwrap();
        assert_eq!(sql, "SELECT x FROM t");
        assert!(render("SELECT {{c}}", &[]).unwrap_err().to_string().contains("{{c}}"));
    }

    #[test]
    fn merge_parts_match_nullable_keys_null_safe() {
        let schema = Schema::new(vec![
            Field::new("date", DataType::Date32, false),
            Field::new("ad_id", DataType::Utf8, true),
            Field::new("hour", DataType::Int32, true),
            Field::new("spend", DataType::Int64, true),
        ]);
        let p = MergeParts::new(&Ticks, &schema, &["date", "ad_id", "hour"]);
        assert_eq!(
            p.key_match,
            "T.`date` = S.`date` AND COALESCE(T.`ad_id`, '') = COALESCE(S.`ad_id`, '') AND COALESCE(T.`hour`, -1) = COALESCE(S.`hour`, -1)"
        );
        assert_eq!(p.changed, "T.`spend` IS DISTINCT FROM S.`spend`");
        assert_eq!(p.update_set, "`spend` = S.`spend`");
        assert!(p.key_match_between("O", "X").starts_with("O.`date` = X.`date`"));
        let none = MergeParts::new(&Ticks, &schema, &[]);
        assert_eq!(none.key_match, "FALSE");
    }

    #[test]
    fn counts_become_a_report() {
        let c = MergeCounts {
            staged: 10,
            matched: 6,
            changed: 2,
            held: 8,
        };
        let r = c.report("t");
        assert_eq!((r.inserted, r.replaced, r.unchanged, r.replaced_old), (4, 2, 4, 4));
    }

    #[test]
    fn schema_changes_add_nullable_columns_and_refuse_the_rest() {
        let held = vec![("a".to_string(), "INT64".to_string())];
        let input = vec![
            ("a".to_string(), "INT64".to_string(), false),
            ("b".to_string(), "STRING".to_string(), true),
        ];
        assert_eq!(compare_columns("t", &held, &input).unwrap(), vec![1]);
        let retyped = vec![("a".to_string(), "STRING".to_string(), false)];
        let err = compare_columns("t", &held, &retyped).unwrap_err();
        assert!(err[0].contains("INT64 in the target but STRING"), "{err:?}");
    }
}
