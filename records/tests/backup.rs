//! The SQLite backup and restore rules, on the library (the end-to-end test
//! `tests/e2e/backup.rs` runs them through the binary during writes).

use std::path::PathBuf;

use telehealth_records::backup::{backup_sqlite, restore_sqlite, BackupError, DatabaseLock};
use telehealth_records::{Store, StoreOptions};

fn temp_dir(tag: &str) -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("telehealth-backup-{tag}-{n:x}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn store_at(dir: &std::path::Path) -> (Store, String) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("telehealth.db").display());
    (Store::open(&StoreOptions::new(url.clone())).await.unwrap(), url)
}

#[tokio::test]
async fn a_backup_restores_into_a_working_store() {
    let dir = temp_dir("roundtrip");
    let (store, url) = store_at(&dir).await;
    assert_eq!(store.count_admins().await.unwrap(), 0);
    let file = dir.join("copy.db");
    let done = backup_sqlite(&url, &file).await.unwrap();
    assert!(done.schema_version >= 1 && done.bytes > 0);
    assert!(matches!(
        backup_sqlite(&url, &file).await,
        Err(BackupError::DestinationExists(_))
    ));

    let dir2 = temp_dir("roundtrip-target");
    let url2 = format!("sqlite://{}?mode=rwc", dir2.join("telehealth.db").display());
    let restored = restore_sqlite(&url2, &file, false).await.unwrap();
    assert_eq!(restored.schema_version, done.schema_version);
    assert!(restored.replaced.is_none());
    let again = Store::open(&StoreOptions::new(url2)).await.unwrap();
    again.ping().await.unwrap();
    store.close().await;
    again.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[tokio::test]
async fn restore_refuses_while_the_database_is_locked() {
    let dir = temp_dir("locked");
    let (store, url) = store_at(&dir).await;
    let file = dir.join("copy.db");
    backup_sqlite(&url, &file).await.unwrap();
    let lock = DatabaseLock::acquire(&dir.join("telehealth.db")).unwrap();
    assert!(matches!(
        restore_sqlite(&url, &file, true).await,
        Err(BackupError::Locked(_))
    ));
    drop(lock);
    // Released: now only the existing database stands in the way.
    assert!(matches!(
        restore_sqlite(&url, &file, false).await,
        Err(BackupError::TargetExists(_))
    ));
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_backup_from_a_newer_schema_is_refused() {
    let dir = temp_dir("newer");
    let (store, url) = store_at(&dir).await;
    // As if a later version had applied a migration this build lacks.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let file = dir.join("copy.db");
    assert!(matches!(
        backup_sqlite(&url, &file).await,
        Err(BackupError::UnknownMigration { version: 9999, .. })
    ));
    assert!(!file.exists(), "a refused backup leaves no file");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
