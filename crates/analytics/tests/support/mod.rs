//! A generated population as a read-only store: the NDJSON files held in memory, answering
//! the one thing the extraction reads (`scan_type`), so the ground-truth tests check the
//! analyses on thousands of patients without importing them. The real store's scans are
//! tested in `crates/store`.

use std::collections::HashMap;
use std::path::Path;

use store::{
    Error, HistoryPage, HistoryQuery, HistoryScope, PendingWrite, Result, ScanVisitor, SearchPage,
    SearchQuery, Store, VersionRecord, WriteUnit,
};

pub struct FileStore {
    resources: HashMap<String, Vec<(String, Vec<u8>)>>,
}

impl FileStore {
    pub fn load(dir: &Path) -> FileStore {
        let mut resources: HashMap<String, Vec<(String, Vec<u8>)>> = HashMap::new();
        for entry in std::fs::read_dir(dir).expect("population directory") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "ndjson") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("ndjson");
            for line in text.lines().filter(|l| !l.is_empty()) {
                let value: serde_json::Value = serde_json::from_str(line).expect("json line");
                let kind = value["resourceType"].as_str().expect("type").to_string();
                let id = value["id"].as_str().expect("id").to_string();
                resources.entry(kind).or_default().push((id, line.as_bytes().to_vec()));
            }
        }
        FileStore { resources }
    }

    pub fn count(&self) -> usize {
        self.resources.values().map(Vec::len).sum()
    }
}

impl Store for FileStore {
    fn read(&self, _: &str, _: &str) -> Result<Option<VersionRecord>> {
        Err(Error::ReadOnly)
    }
    fn vread(&self, _: &str, _: &str, _: u64) -> Result<Option<VersionRecord>> {
        Err(Error::ReadOnly)
    }
    fn history(&self, _: &HistoryScope, _: &HistoryQuery) -> Result<HistoryPage> {
        Err(Error::ReadOnly)
    }
    fn submit(&self, _: WriteUnit) -> PendingWrite {
        PendingWrite::refused(Error::ReadOnly)
    }
    fn count_live(&self) -> Result<u64> {
        Ok(self.count() as u64)
    }
    fn scan_current(&self, visit: &mut ScanVisitor<'_>) -> Result<u64> {
        let mut count = 0;
        for (kind, resources) in &self.resources {
            for (id, body) in resources {
                visit(kind, id, body)?;
                count += 1;
            }
        }
        Ok(count)
    }
    fn scan_type(&self, kind: &str, _: Option<i64>, visit: &mut ScanVisitor<'_>) -> Result<u64> {
        let mut count = 0;
        for (id, body) in self.resources.get(kind).into_iter().flatten() {
            visit(kind, id, body)?;
            count += 1;
        }
        Ok(count)
    }
    fn search(&self, _: &SearchQuery) -> Result<SearchPage> {
        Err(Error::ReadOnly)
    }
    fn read_many(&self, _: &[(String, String)]) -> Result<Vec<VersionRecord>> {
        Err(Error::ReadOnly)
    }
    fn referencing(
        &self,
        _: &[fhir::search_parameters::ParamKey],
        _: &[(String, String)],
    ) -> Result<Vec<VersionRecord>> {
        Err(Error::ReadOnly)
    }
    fn reindex(&self) -> Result<u64> {
        Err(Error::ReadOnly)
    }
}
