//! Where a `bigquery://PROJECT/DATASET[?location=L]` target points.
use super::*;

/// Where a `bigquery://` target points.
#[derive(Debug, Clone)]
pub struct BigQueryTarget {
    pub project: String,
    pub dataset: String,
    /// Where `--create` makes the dataset (`?location=EU`); BigQuery's default otherwise.
    pub location: Option<String>,
}

impl BigQueryTarget {
    pub fn parse(target: &str) -> Result<Self> {
        let usage = |why: &str| {
            Error::Config(format!(
                "--target {target}: {why}; write bigquery://PROJECT/DATASET[?location=EU]"
            ))
        };
        let rest = target
            .strip_prefix("bigquery://")
            .ok_or_else(|| usage("not a bigquery:// URL"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [project, dataset] = parts[..] else {
            return Err(usage("it needs a project and a dataset"));
        };
        // Project ids: lower-case letters, digits, hyphens; older ones carry a domain ("example.com:proj").
        let project_ok = !project.is_empty()
            && project.len() <= 100
            && project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':');
        if !project_ok {
            return Err(usage(&format!("'{project}' is not a project id")));
        }
        let mut location = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("location", v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                    location = Some(v.to_string())
                }
                _ => return Err(usage(&format!("unknown or bad parameter '{pair}'"))),
            }
        }
        Ok(BigQueryTarget {
            project: project.to_string(),
            dataset: warehouse::ident("dataset", dataset)?.to_string(),
            location,
        })
    }
}
