//! First-run setup: the data directory, the JWT signing key, the first admin
//! account, and (with `--demo`) a demo province.

use std::io::Write;
use std::path::Path;

use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use telehealth_records::{Actor, FacilityInput, FacilityKind, NewUser, Role, Store};

use crate::auth::hash_password;

/// The key for signing tokens: from configuration, or generated once into
/// `<data-dir>/jwt.key` with mode 0600 and reused on every later start.
pub fn jwt_key(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(k) = configured {
        anyhow::ensure!(k.len() >= 32, "TELEHEALTH_JWT_KEY must be at least 32 bytes");
        return Ok(k.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt.key");
    match std::fs::read_to_string(&path) {
        Ok(k) if k.trim().len() >= 64 => return Ok(k.trim().as_bytes().to_vec()),
        Ok(_) => anyhow::bail!("{} is too short; delete it to generate a new one", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(key.as_bytes())?;
    f.sync_all()?;
    tracing::info!(path = %path.display(), "generated a new JWT signing key");
    Ok(key.into_bytes())
}

fn random_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

/// Creates the `admin` account when there is no admin yet. The password comes
/// from `TELEHEALTH_ADMIN_PASSWORD`, or is generated and printed once.
pub async fn first_admin(store: &Store, password: Option<String>) -> anyhow::Result<()> {
    if store.count_admins().await? > 0 {
        return Ok(());
    }
    let (password, generated) = match password {
        Some(p) => (p, false),
        None => (random_password(), true),
    };
    let user = NewUser {
        username: "admin".into(),
        display_name: "Quản trị viên".into(),
        password_hash: hash_password(password.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        role: Role::Admin,
        facility_id: None,
    };
    store.create_user(&Actor::system(), &user).await?;
    if generated {
        // Printed once, to the terminal that started the server, not to the log.
        println!("\n  Tài khoản quản trị / admin account created:\n    username: admin\n    password: {password}\n  (shown only this once; set TELEHEALTH_ADMIN_PASSWORD to choose it)\n");
    } else {
        tracing::info!("admin account created with the configured password");
    }
    Ok(())
}

/// Seeds a demo province: two district hospitals, four commune stations
/// referring to them, one doctor per hospital and one health worker per
/// station. Does nothing if it is already there.
pub async fn demo(store: &Store) -> anyhow::Result<()> {
    if store.facility_by_code("DEMO-H1").await?.is_some() {
        println!("  Dữ liệu mẫu đã có sẵn / demo data already present (passwords were printed when it was created).");
        return Ok(());
    }
    let sys = Actor::system();
    let province = "Lào Cai (demo)";
    let hospital = |code: &str, name: &str| FacilityInput {
        code: code.into(),
        name: name.into(),
        kind: FacilityKind::DistrictHospital,
        referral_hospital_id: None,
        province: province.into(),
    };
    let h1 = store
        .create_facility(&sys, &hospital("DEMO-H1", "Trung tâm Y tế huyện Bát Xát"))
        .await?;
    let h2 = store
        .create_facility(&sys, &hospital("DEMO-H2", "Trung tâm Y tế huyện Sa Pa"))
        .await?;
    let stations = [
        ("DEMO-S1", "Trạm Y tế xã Y Tý", h1.id),
        ("DEMO-S2", "Trạm Y tế xã A Mú Sung", h1.id),
        ("DEMO-S3", "Trạm Y tế xã Tả Van", h2.id),
        ("DEMO-S4", "Trạm Y tế xã Bản Hồ", h2.id),
    ];
    let mut accounts = Vec::new();
    for (i, (code, name, h)) in stations.iter().enumerate() {
        let s = store
            .create_facility(
                &sys,
                &FacilityInput {
                    code: (*code).into(),
                    name: (*name).into(),
                    kind: FacilityKind::CommuneStation,
                    referral_hospital_id: Some(*h),
                    province: province.into(),
                },
            )
            .await?;
        accounts.push((
            format!("yta{}", i + 1),
            format!("Y tá {}", name.trim_start_matches("Trạm Y tế ")),
            Role::HealthWorker,
            s.id,
        ));
    }
    accounts.push(("bacsi1".into(), "BS. Nguyễn Văn Minh".into(), Role::Doctor, h1.id));
    accounts.push(("bacsi2".into(), "BS. Trần Thị Lan".into(), Role::Doctor, h2.id));
    println!("\n  Tỉnh mẫu đã được tạo / demo province created. Accounts:");
    for (username, display, role, facility) in accounts {
        let password = random_password();
        let user = NewUser {
            username: username.clone(),
            display_name: display,
            password_hash: hash_password(password.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            role,
            facility_id: Some(facility),
        };
        store.create_user(&sys, &user).await?;
        println!("    {username:<8} {password}  ({role})");
    }
    println!();
    Ok(())
}
