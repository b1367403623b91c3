//! Output locations: a plain path, `file://`, `s3://`, `gs://`, `az://` or
//! `memory://`, all through `object_store`. A `put` is atomic on each of them
//! (local files are written aside and renamed; object stores commit on PUT),
//! which is what the raw writer and the manifest rely on.

use crate::{Error, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, PutPayload};
use std::fmt;
use std::sync::Arc;

#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
    /// The store from its root and the URL of that root, for libraries that
    /// address objects by URL (Delta Lake): a local folder's own store is
    /// rooted at the folder, so these are the file system's root and its path.
    root: Option<(Arc<dyn ObjectStore>, url::Url)>,
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl Location {
    /// Opens a folder-like location to write to. Local folders are created if missing.
    pub fn parse(spec: &str) -> Result<Self> {
        Self::open(spec, true)
    }

    /// Opens a folder-like location to read from: a missing local folder is an error.
    pub fn parse_existing(spec: &str) -> Result<Self> {
        Self::open(spec, false)
    }

    fn open(spec: &str, create: bool) -> Result<Self> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::Config(
                "an output location is empty: give a path or a URL".into(),
            ));
        }
        let display = spec.trim_end_matches('/').to_string();
        let Some((scheme, _)) = spec.split_once("://") else {
            return Self::local(std::path::Path::new(spec), display, create);
        };
        let url = url::Url::parse(spec).map_err(|e| Error::Config(format!("'{spec}' is not a valid URL: {e}")))?;
        let prefix =
            Path::from_url_path(url.path()).map_err(|e| Error::Config(format!("'{spec}' has an invalid path: {e}")))?;
        let store: Arc<dyn ObjectStore> = match scheme {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| Error::Config(format!("'{spec}' is not a local file URL")))?;
                return Self::local(&path, display, create);
            }
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(spec)
                    .build()
                    .map_err(|e| Error::Config(format!("cannot open {spec}: {e}")))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(spec)
                    .build()
                    .map_err(|e| Error::Config(format!("cannot open {spec}: {e}")))?,
            ),
            "az" | "abfs" | "abfss" | "azure" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(spec)
                    .build()
                    .map_err(|e| Error::Config(format!("cannot open {spec}: {e}")))?,
            ),
            other => {
                return Err(Error::Config(format!(
                    "'{spec}': unsupported scheme '{other}://'; use a path, file://, s3://, gs:// or az://"
                )))
            }
        };
        let mut root = url.clone();
        root.set_path("/");
        root.set_query(None);
        root.set_fragment(None);
        Ok(Location {
            root: Some((store.clone(), root)),
            store,
            prefix,
            display,
        })
    }

    fn local(path: &std::path::Path, display: String, create: bool) -> Result<Self> {
        if create {
            std::fs::create_dir_all(path)
                .map_err(|e| Error::storage(format!("cannot create {}", path.display()), e))?;
        } else if !path.is_dir() {
            return Err(Error::Config(format!("{} does not exist", path.display())));
        }
        let abs =
            std::fs::canonicalize(path).map_err(|e| Error::storage(format!("cannot open {}", path.display()), e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
            .map_err(|e| Error::storage(format!("cannot open {}", abs.display()), e))?;
        let dir_url = url::Url::from_directory_path(&abs)
            .map_err(|_| Error::Config(format!("{} is not an absolute path", abs.display())))?;
        Ok(Location {
            store: Arc::new(store),
            prefix: Path::default(),
            display,
            root: Some((Arc::new(object_store::local::LocalFileSystem::new()), dir_url)),
        })
    }

    /// A location over an existing store (tests, embedding).
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, display: &str) -> Self {
        let root = url::Url::parse(display).ok().map(|mut u| {
            u.set_path("/");
            (store.clone(), u)
        });
        Location {
            store,
            prefix: Path::from(prefix),
            display: display.to_string(),
            root,
        }
    }

    /// The URL of `rel` and the store from the root that URL's path is on
    /// (Delta Lake opens a table by URL over a root store).
    pub fn url(&self, rel: &str) -> Result<(Arc<dyn ObjectStore>, url::Url)> {
        let (store, root) = self
            .root
            .as_ref()
            .ok_or_else(|| Error::Config(format!("{} has no URL form", self.display)))?;
        let mut url = root.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| Error::Config(format!("{} has no URL form", self.display)))?;
            segments.pop_if_empty();
            for part in self.prefix.parts() {
                segments.push(part.as_ref());
            }
            for part in rel.split('/').filter(|s| !s.is_empty()) {
                segments.push(part);
            }
        }
        Ok((store.clone(), url))
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object path of `rel` (a `/`-separated path below this location).
    pub fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.child(part);
        }
        p
    }

    /// `rel` relative to this location, for manifests.
    pub fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"),
            None => path.to_string(),
        }
    }

    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| Error::storage(format!("cannot write {}/{rel}", self.display), e))
    }

    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| Error::storage(format!("cannot read {}/{rel}", self.display), e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(format!("cannot read {}/{rel}", self.display), e)),
        }
    }

    pub async fn put_json<T: serde::Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::storage(format!("cannot encode {rel}"), e))?;
        self.put(rel, Bytes::from(bytes)).await
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        match self.get(rel).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::Storage(format!(
                    "{}/{rel} is not valid crest JSON ({e}); move it away to start over",
                    self.display
                ))
            }),
        }
    }

    /// Deletes `rel`; a missing object is not an error (deletes are retried on resume).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(format!("cannot delete {}/{rel}", self.display), e)),
        }
    }

    /// Objects directly or indirectly below `rel`.
    pub async fn list(&self, rel: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = self.path(rel);
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::storage(format!("cannot list {}/{rel}", self.display), e))
    }

    /// Proves the location is writable before any API call is made, so an
    /// unwritable `--out` fails fast and leaves nothing behind.
    pub async fn probe_writable(&self, run_id: &str) -> Result<()> {
        let rel = format!("_runs/.probe-{run_id}");
        self.put(&rel, Bytes::from_static(b"ok")).await?;
        self.delete(&rel).await
    }
}

/// Splits a file URL or path into its folder location (created when
/// `create`) and file name.
pub fn split_file(spec: &str, create: bool) -> Result<(Location, String)> {
    let spec = spec.trim();
    match spec.rsplit_once('/') {
        Some((dir, name)) if !name.is_empty() && !dir.is_empty() && !dir.ends_with("//") && !dir.ends_with(':') => {
            Ok((Location::open(dir, create)?, name.to_string()))
        }
        Some((dir, name)) if !name.is_empty() && dir.ends_with("//") => Err(Error::Config(format!(
            "'{spec}': give a file inside a bucket, e.g. {dir}bucket/{name}"
        ))),
        None if !spec.is_empty() => Ok((Location::open(".", create)?, spec.to_string())),
        _ => Err(Error::Config(format!("'{spec}' does not name a file"))),
    }
}

/// Reads a whole file from a path or URL; `None` when it does not exist.
pub async fn read_file(spec: &str) -> Result<Option<Bytes>> {
    match split_file(spec, false) {
        Ok((dir, name)) => dir.get(&name).await,
        Err(Error::Config(m)) if m.ends_with("does not exist") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_put_get_list_delete_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        loc.put("a/b/c.json", Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(loc.get("a/b/c.json").await.unwrap().unwrap().as_ref(), b"{}");
        let listed = loc.list("a").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(loc.relative(&listed[0].location), "a/b/c.json");
        loc.delete("a/b/c.json").await.unwrap();
        loc.delete("a/b/c.json").await.unwrap();
        assert!(loc.get("a/b/c.json").await.unwrap().is_none());
    }

    #[test]
    fn unknown_scheme_is_a_config_error() {
        assert!(matches!(Location::parse("ftp://x/y"), Err(Error::Config(_))));
    }
}
