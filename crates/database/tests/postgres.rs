//! The PostgreSQL side of the connection: values of every column type bound and read back,
//! a transaction that fails leaves nothing, and a connection the server closed is opened
//! again. Skipped without a PostgreSQL server (`CHARTROOM_TEST_POSTGRES`), except under
//! `CI=true`.

use chartroom_database as database;
use database::{Database, Value, params};

#[test]
fn values_transactions_and_a_closed_connection() -> database::Result<()> {
    let Some(url) = testkit::postgres_url() else { return Ok(()) };
    let schema = format!("t_database_{}", std::process::id());
    let db = Database::postgres(&url, &schema)?;
    db.create_tables(
        "DROP TABLE IF EXISTS t; CREATE TABLE t (a TEXT PRIMARY KEY, b BIGINT, c INTEGER, d BYTEA, e BOOLEAN, f TEXT)",
    )?;
    db.execute(
        "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            Value::from("x"),
            Value::Integer(1 << 40),
            Value::Integer(7),
            Value::Blob(vec![0, 1, 255]),
            Value::Integer(1),
            Value::Null,
        ],
    )?;
    let row = db.query_opt("SELECT a, b, c, d, e, f FROM t WHERE a = ?1", params!["x"])?.expect("the row");
    assert_eq!(row.text(0)?, "x");
    assert_eq!((row.integer(1)?, row.integer(2)?, row.integer(4)?), (1 << 40, 7, 1));
    assert_eq!((row.blob(3)?, row.opt_text(5)?), (vec![0, 1, 255], None));

    // All or nothing: the second insert's key is taken, so the first is not kept either.
    let failed = db.transaction(|handle| {
        handle.execute("INSERT INTO t (a) VALUES (?1)", params!["y"])?;
        handle.execute("INSERT INTO t (a) VALUES (?1)", params!["x"])
    });
    assert!(
        matches!(failed, Err(database::Error::Postgres { ref code, .. }) if code == "23505"),
        "{failed:?}"
    );
    assert!(db.query_opt("SELECT a FROM t WHERE a = ?1", params!["y"])?.is_none());

    // The server ends the connection (a restart, a failover): the next statement reconnects.
    let pid = db.query_opt("SELECT pg_backend_pid()", &[])?.expect("a pid").integer(0)?;
    let other = db.another()?;
    other.execute("SELECT pg_terminate_backend(?1)", &[Value::Integer(pid)])?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let found = loop {
        match db.query_opt("SELECT count(*) FROM t", &[]) {
            Ok(row) => break row,
            // The statement that meets the closed socket fails; the next one reconnects.
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(error) => return Err(error),
        }
    };
    assert_eq!(found.expect("a count").integer(0)?, 1);
    assert_ne!(db.query_opt("SELECT pg_backend_pid()", &[])?.expect("a pid").integer(0)?, pid);
    other.batch(&format!("DROP SCHEMA {schema} CASCADE"))?;
    Ok(())
}
