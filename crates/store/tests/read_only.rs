//! A store opened read-only beside the writing one: no lock, one snapshot, writes refused,
//! and a path that is no data directory refused without creating anything.

use chartroom_store::{
    Error, HistoryQuery, HistoryScope, PreparedResource, SqliteStore, Store, StoreOptions,
};
use chartroom_store::{WriteOp, WriteUnit};
use fhir::Resource;
use serde_json::json;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chartroom-store-ro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn patient(id: &str, family: &str) -> PreparedResource {
    let value = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
    PreparedResource::new(&Resource::from_value(value).unwrap()).unwrap()
}

fn put(store: &SqliteStore, id: &str, family: &str) {
    store
        .submit(WriteUnit::single(WriteOp::Update { resource: patient(id, family), if_match: None }))
        .wait_blocking()
        .unwrap();
}

fn family_query(family: &str) -> chartroom_store::SearchQuery {
    let key = fhir::search_parameters::search_parameters().get("Patient", "family").unwrap().key;
    chartroom_store::SearchQuery {
        resource_type: "Patient".into(),
        filters: vec![chartroom_store::search::Filter::Param {
            key,
            any: vec![chartroom_store::search::Condition::String {
                value: family.into(),
                mode: chartroom_store::search::StringMode::Prefix,
            }],
        }],
        sort: Vec::new(),
        count: 10,
        cursor: None,
        total: chartroom_store::Total::None,
    }
}

#[test]
fn a_read_only_store_reads_one_snapshot_while_the_writer_goes_on() {
    let dir = temp_dir("snapshot");
    let writer = SqliteStore::open(&dir, StoreOptions::default()).unwrap();
    assert!(writer.created());
    put(&writer, "p1", "Okafor");
    put(&writer, "p2", "Lindqvist");

    // The writer holds the lock; a reader needs none.
    let reader = SqliteStore::open_read_only(&dir).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.count_live().unwrap(), 2);

    // The writer is not held up by the open snapshot, and the snapshot does not move.
    for i in 0..50 {
        put(&writer, &format!("later{i}"), "Okafor");
    }
    put(&writer, "p1", "Okafor-Changed");
    assert_eq!(writer.count_live().unwrap(), 52);
    assert_eq!(reader.count_live().unwrap(), 2);
    let p1 = reader.read("Patient", "p1").unwrap().unwrap();
    assert_eq!(p1.version, 1);
    let found = reader.search(&family_query("okafor")).unwrap();
    assert_eq!(found.matches.len(), 1, "the search sees the snapshot too");
    let mut scanned = 0;
    reader
        .scan_current(&mut |_, _, _| {
            scanned += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(scanned, 2);
    let newest =
        reader.history(&HistoryScope::System, &HistoryQuery { count: 1, ..Default::default() }).unwrap();
    assert_eq!(newest.versions[0].id, "p2");

    // Writes are refused, not queued and not a panic.
    let refused = reader
        .submit(WriteUnit::single(WriteOp::Update { resource: patient("p3", "Nope"), if_match: None }))
        .wait_blocking();
    assert!(matches!(refused, Err(Error::ReadOnly)), "{refused:?}");
    assert!(matches!(reader.reindex(), Err(Error::ReadOnly)));

    // A read from inside a scan of the same snapshot is refused rather than waiting for itself.
    let nested = reader.scan_current(&mut |_, _, _| match reader.count_live() {
        Err(Error::SnapshotBusy) => Err(Error::Stopped),
        other => panic!("a nested read answered {other:?}"),
    });
    assert!(matches!(nested, Err(Error::Stopped)));

    // A new snapshot sees what was committed; a closed one reads nothing.
    let later = SqliteStore::open_read_only(&dir).unwrap();
    assert_eq!(later.count_live().unwrap(), 52);
    reader.close();
    assert!(matches!(reader.count_live(), Err(Error::Closed)));

    // A second writer is still refused, with the reason said once.
    let second = SqliteStore::open(&dir, StoreOptions::default()).err().unwrap();
    assert!(matches!(second, Error::InUse { .. }), "{second}");
    assert_eq!(second.to_string().matches("in use by another Chartroom process").count(), 1, "{second}");
    assert!(std::error::Error::source(&second).is_none());
    drop(later);
    writer.close();
    drop(writer);

    // Without a server too.
    let alone = SqliteStore::open_read_only(&dir).unwrap();
    assert_eq!(alone.count_live().unwrap(), 52);
}

#[test]
fn a_path_that_is_no_data_directory_is_refused_and_nothing_is_created() {
    let base = temp_dir("wrong");
    std::fs::create_dir_all(&base).unwrap();
    let missing = base.join("missing");
    let refused = SqliteStore::open_read_only(&missing).err().unwrap();
    assert!(matches!(refused, Error::NotADataDirectory { .. }), "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains(&missing.display().to_string()) && message.contains("does not exist"),
        "{message}"
    );
    assert!(message.contains("chartroom serve"), "{message}");
    assert!(!missing.exists());

    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let refused = SqliteStore::open_read_only(&empty).err().unwrap();
    assert!(refused.to_string().contains("holds no chartroom.db"), "{refused}");
    // A writer that must not create (reindex) refuses it too.
    let options = StoreOptions { create: false, ..StoreOptions::default() };
    assert!(matches!(SqliteStore::open(&empty, options.clone()), Err(Error::NotADataDirectory { .. })));
    assert!(matches!(SqliteStore::open(&missing, options), Err(Error::NotADataDirectory { .. })));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "nothing was created");
    assert!(!missing.exists());

    // Some other SQLite database under the store's name, or a file that is none.
    let other = base.join("other");
    std::fs::create_dir_all(&other).unwrap();
    rusqlite::Connection::open(other.join("chartroom.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x);")
        .unwrap();
    let refused = SqliteStore::open_read_only(&other).err().unwrap();
    assert!(refused.to_string().contains("holds no Chartroom store"), "{refused}");
    std::fs::write(other.join("chartroom.db"), b"not a database at all, just some text").unwrap();
    let refused = SqliteStore::open_read_only(&other).err().unwrap();
    assert!(matches!(refused, Error::NotADataDirectory { .. }), "{refused}");
}

#[test]
fn a_read_only_store_refuses_what_only_a_writer_may_upgrade() {
    let dir = temp_dir("upgrade");
    {
        let writer = SqliteStore::open(&dir, StoreOptions::default()).unwrap();
        put(&writer, "p1", "Okafor");
    }
    let database = dir.join("chartroom.db");
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute_batch("UPDATE store_meta SET value = '0:0' WHERE key = 'index_format';")
        .unwrap();
    let refused = SqliteStore::open_read_only(&dir).err().unwrap();
    assert!(matches!(refused, Error::NeedsWriter { .. }), "{refused}");
    assert!(refused.to_string().contains("reindex"), "{refused}");
    // Left as it was: only a writer rebuilds the index.
    let format: String = rusqlite::Connection::open(&database)
        .unwrap()
        .query_row("SELECT value FROM store_meta WHERE key = 'index_format'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(format, "0:0");

    rusqlite::Connection::open(&database).unwrap().execute_batch("PRAGMA user_version = 1;").unwrap();
    let refused = SqliteStore::open_read_only(&dir).err().unwrap();
    assert!(refused.to_string().contains("schema version 1"), "{refused}");
    rusqlite::Connection::open(&database).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
    let refused = SqliteStore::open_read_only(&dir).err().unwrap();
    assert!(refused.to_string().contains("newer Chartroom"), "{refused}");
}
