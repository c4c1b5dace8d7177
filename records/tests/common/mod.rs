//! Opens a fresh store on each backend: a new SQLite file, or a new database
//! on the PostgreSQL server named by `TELEHEALTH_TEST_POSTGRES_URL` (started
//! by `tests/run.sh`).

#![allow(dead_code)]

use telehealth_records::*;

pub async fn sqlite() -> Store {
    let dir = std::env::temp_dir().join(format!("telehealth-test-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
    Store::open(&StoreOptions::new(url)).await.unwrap()
}

pub async fn postgres() -> Store {
    let base = std::env::var("TELEHEALTH_TEST_POSTGRES_URL").expect(
        "TELEHEALTH_TEST_POSTGRES_URL is not set: run the suite with tests/run.sh, which starts PostgreSQL",
    );
    let name = format!("t_{}", uuid_like());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => panic!("bad postgres url"),
    };
    let mut opts = StoreOptions::new(url);
    opts.max_connections = 4;
    Store::open(&opts).await.unwrap()
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

/// Runs an async test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::common::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::common::postgres().await).await
            }
        }
    };
}

/// Two hospitals, a station referring to each, and one user of each role
/// per facility.
pub struct World {
    pub h1: Facility,
    pub h2: Facility,
    pub s1: Facility,
    pub s2: Facility,
    pub admin: User,
    pub hw1: User,
    pub hw2: User,
    pub doc1: User,
    pub doc1b: User,
    pub doc2: User,
}

impl World {
    pub fn actor(&self, u: &User) -> Actor {
        Actor::user(u.id, u.role, Some("127.0.0.1".into()))
    }
}

pub async fn world(store: &Store) -> World {
    let sys = Actor::system();
    let fac = |code: &str, kind: FacilityKind, referral: Option<FacilityId>| FacilityInput {
        code: code.into(),
        name: format!("Cơ sở {code}"),
        kind,
        referral_hospital_id: referral,
        province: "Lào Cai".into(),
    };
    let h1 = store
        .create_facility(&sys, &fac("H1", FacilityKind::DistrictHospital, None))
        .await
        .unwrap();
    let h2 = store
        .create_facility(&sys, &fac("H2", FacilityKind::DistrictHospital, None))
        .await
        .unwrap();
    let s1 = store
        .create_facility(&sys, &fac("S1", FacilityKind::CommuneStation, Some(h1.id)))
        .await
        .unwrap();
    let s2 = store
        .create_facility(&sys, &fac("S2", FacilityKind::CommuneStation, Some(h2.id)))
        .await
        .unwrap();
    let user = |name: &str, role: Role, f: Option<FacilityId>| NewUser {
        username: name.into(),
        display_name: name.to_uppercase(),
        password_hash: "x".into(),
        role,
        facility_id: f,
    };
    let admin = store
        .create_user(&sys, &user("admin", Role::Admin, None))
        .await
        .unwrap();
    let hw1 = store
        .create_user(&sys, &user("hw1", Role::HealthWorker, Some(s1.id)))
        .await
        .unwrap();
    let hw2 = store
        .create_user(&sys, &user("hw2", Role::HealthWorker, Some(s2.id)))
        .await
        .unwrap();
    let doc1 = store
        .create_user(&sys, &user("doc1", Role::Doctor, Some(h1.id)))
        .await
        .unwrap();
    let doc1b = store
        .create_user(&sys, &user("doc1b", Role::Doctor, Some(h1.id)))
        .await
        .unwrap();
    let doc2 = store
        .create_user(&sys, &user("doc2", Role::Doctor, Some(h2.id)))
        .await
        .unwrap();
    World {
        h1,
        h2,
        s1,
        s2,
        admin,
        hw1,
        hw2,
        doc1,
        doc1b,
        doc2,
    }
}

impl World {
    /// Records the patient's own consent at station 1 (hw1 attests it), as
    /// before a first consultation.
    pub async fn consent(&self, store: &Store, patient: telehealth_records::PatientId) {
        let input = telehealth_records::ConsentInput {
            decision: Some(telehealth_records::ConsentDecision::Granted),
            given_by: Some(telehealth_records::ConsentGiver::Patient),
            guardian_name: None,
            guardian_relation: None,
            text_version: Some(telehealth_records::current_consent_text().version.to_owned()),
        };
        store
            .record_consent(&self.actor(&self.hw1), patient, self.s1.id, &input)
            .await
            .unwrap();
    }
}

pub fn patient_input(name: &str) -> PatientInput {
    PatientInput {
        full_name: Pii(name.into()),
        date_of_birth: Pii("1985-03-27".into()),
        sex: Some(Sex::Female),
        phone: Some(Pii("0912345678".into())),
        address: Some(Pii("Thôn 3, xã Bản Lầu".into())),
        cccd: None,
        bhyt: None,
    }
}

/// Whether the database refuses to change and to delete rows of `table`
/// (`set` is an assignment for the UPDATE): what an append-only record is.
pub async fn refuses_rewrites(store: &Store, table: &str, set: &str) -> bool {
    let update = sqlx::query(&format!("UPDATE {table} SET {set}"))
        .execute(store.pool())
        .await;
    let delete = sqlx::query(&format!("DELETE FROM {table}"))
        .execute(store.pool())
        .await;
    update.is_err() && delete.is_err()
}
