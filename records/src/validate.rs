//! Validation of what people type: Vietnamese citizen ids (CCCD), health
//! insurance numbers (BHYT), phone numbers, ICD-10 codes, vital signs.
//!
//! Every failure is a [`FieldError`] with a stable `code`, the field's name and
//! a message in Vietnamese (with an English one beside it) that tells a health
//! worker what to fix.

use chrono::{Datelike, NaiveDate};
use schemars::JsonSchema;
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::types::Sex;

/// One thing wrong with one field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FieldError {
    /// The field, as named in the API (`cccd`, `vitals.spo2_pct`…).
    pub field: String,
    /// Stable machine-readable reason, e.g. `invalid_cccd`.
    pub code: &'static str,
    /// What is wrong and what to do, in Vietnamese.
    pub message: String,
    /// The same in English.
    pub message_en: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
        message_en: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
            message_en: message_en.into(),
        }
    }

    pub fn required(field: &str) -> Self {
        Self::new(
            field,
            "required",
            "Trường này không được để trống.",
            "This field is required.",
        )
    }

    pub fn too_long(field: &str, max: usize) -> Self {
        Self::new(
            field,
            "too_long",
            format!("Quá dài: tối đa {max} ký tự."),
            format!("Too long: at most {max} characters."),
        )
    }
}

/// Collects field errors; `finish` turns them into a result.
#[derive(Default, Debug)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
    pub fn check(&mut self, r: Result<(), FieldError>) {
        if let Err(e) = r {
            self.0.push(e);
        }
    }
    pub fn finish(self) -> Result<(), crate::RecordsError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(crate::RecordsError::Invalid(self.0))
        }
    }
}

/// A required, trimmed, non-empty text of at most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let v = value.trim();
    // Only invisible characters (zero-width spaces…) is no text at all.
    if v.chars().all(|c| c.is_whitespace() || invisible(c)) {
        return Err(FieldError::required(field));
    }
    optional_text(field, v, max)
}

/// A trimmed text of at most `max` characters (may be empty).
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(FieldError::too_long(field, max));
    }
    // Controls, and direction overrides (U+202E shows "Thị" as "ịhT", or a
    // file name backwards), have no place in a name or a clinical note.
    if v.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\r' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err(FieldError::new(
            field,
            "control_characters",
            "Có ký tự không hợp lệ.",
            "Contains control characters.",
        ));
    }
    Ok(v.to_owned())
}

/// Lower-case, diacritic-free form used to search names: "Nguyễn Thị Đào" →
/// "nguyen thi dao", so a search without accents still finds the patient.
pub fn fold_for_search(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfd() {
        if ('\u{0300}'..='\u{036f}').contains(&c) || invisible(c) {
            continue;
        }
        match c {
            'đ' | 'Đ' => out.push('d'),
            c => out.extend(c.to_lowercase()),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Characters that show nothing: controls (NUL, which ends a string for
/// SQLite's LIKE, among them), zero-width characters and direction overrides
/// (U+202E turns "gpj.exe" into "exe.jpg" on screen).
pub fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Province codes used in the first three digits of a CCCD (Circular
/// 07/2016/TT-BCA, 63 provinces and cities).
const CCCD_PROVINCES: &[u16] = &[
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37, 38, 40,
    42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77, 79, 80, 82, 83,
    84, 86, 87, 89, 91, 92, 93, 94, 95, 96,
];

/// Validates a 12-digit citizen id (căn cước công dân).
///
/// Layout: 3 digits province of birth, 1 digit century-and-sex (0/1 = male/
/// female born 1900-1999, 2/3 = 2000-2099, …), 2 digits year of birth, 6
/// random digits. When the date of birth and sex are known, they must agree
/// with the number: a mismatch is almost always a typing mistake.
pub fn cccd(value: &str, dob: Option<NaiveDate>, sex: Option<Sex>) -> Result<String, FieldError> {
    let v: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if v.len() != 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(
            "cccd",
            "invalid_cccd",
            "Số CCCD phải gồm đúng 12 chữ số.",
            "A citizen id (CCCD) has exactly 12 digits.",
        ));
    }
    let digits: Vec<u16> = v.bytes().map(|b| u16::from(b - b'0')).collect();
    let province = digits[0] * 100 + digits[1] * 10 + digits[2];
    if !CCCD_PROVINCES.contains(&province) {
        return Err(FieldError::new(
            "cccd",
            "invalid_cccd",
            format!("Mã tỉnh {province:03} trong số CCCD không tồn tại. Kiểm tra lại 3 số đầu."),
            format!("Province code {province:03} in the CCCD does not exist. Check the first 3 digits."),
        ));
    }
    let century_sex = digits[3];
    let year_2 = i32::from(digits[4] * 10 + digits[5]);
    let century = 1900 + 100 * i32::from(century_sex / 2);
    let female = century_sex % 2 == 1;
    if let Some(dob) = dob {
        if dob.year() != century + year_2 {
            return Err(FieldError::new(
                "cccd",
                "cccd_mismatch",
                format!(
                    "Số CCCD cho năm sinh {}, nhưng ngày sinh nhập là năm {}. Kiểm tra lại số CCCD hoặc ngày sinh.",
                    century + year_2,
                    dob.year()
                ),
                format!(
                    "The CCCD encodes birth year {}, but the date of birth is in {}. Check one of them.",
                    century + year_2,
                    dob.year()
                ),
            ));
        }
    }
    match (sex, female) {
        (Some(Sex::Male), true) | (Some(Sex::Female), false) => Err(FieldError::new(
            "cccd",
            "cccd_mismatch",
            "Số CCCD không khớp với giới tính đã chọn. Kiểm tra lại số CCCD hoặc giới tính.",
            "The CCCD does not match the selected sex. Check one of them.",
        )),
        _ => Ok(v),
    }
}

/// Validates a health insurance number (mã thẻ BHYT): either the 15-character
/// card code (2 letters for the beneficiary group, 1 digit benefit level 1-5,
/// 2 digits province, 10 digits social insurance number) or the 10-digit
/// social insurance number alone, which newer cards use.
pub fn bhyt(value: &str) -> Result<String, FieldError> {
    let v: String = value
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let b = v.as_bytes();
    let ok = match b.len() {
        10 => b.iter().all(u8::is_ascii_digit),
        15 => {
            b[0].is_ascii_uppercase()
                && b[1].is_ascii_uppercase()
                && (b'1'..=b'5').contains(&b[2])
                && b[3..].iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    if ok {
        Ok(v)
    } else {
        Err(FieldError::new(
            "bhyt",
            "invalid_bhyt",
            "Mã thẻ BHYT gồm 15 ký tự (ví dụ DN4010123456789) hoặc 10 chữ số mã BHXH.",
            "A BHYT number has 15 characters (e.g. DN4010123456789) or is the 10-digit social insurance number.",
        ))
    }
}

/// Validates and normalizes a Vietnamese phone number to the `0…` form.
pub fn phone(value: &str) -> Result<String, FieldError> {
    let v: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
        .collect();
    let national = if let Some(rest) = v.strip_prefix("+84") {
        format!("0{rest}")
    } else if let Some(rest) = v.strip_prefix("84").filter(|r| r.len() == 9) {
        format!("0{rest}")
    } else {
        v
    };
    let b = national.as_bytes();
    if b.len() == 10 && b[0] == b'0' && b[1] != b'0' && b.iter().all(u8::is_ascii_digit) {
        Ok(national)
    } else {
        Err(FieldError::new(
            "phone",
            "invalid_phone",
            "Số điện thoại gồm 10 chữ số, bắt đầu bằng 0 (ví dụ 0912345678).",
            "A phone number has 10 digits starting with 0 (e.g. 0912345678).",
        ))
    }
}

/// Validates a date of birth: a real date, not in the future, not before 1900.
pub fn date_of_birth(value: &str, today: NaiveDate) -> Result<NaiveDate, FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(
            "date_of_birth",
            "required",
            "Nhập ngày sinh của bệnh nhân.",
            "Enter the patient's date of birth.",
        ));
    }
    let d = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| {
        FieldError::new(
            "date_of_birth",
            "invalid_date",
            "Ngày sinh không hợp lệ. Dùng dạng NNNN-TT-NN (ví dụ 1985-03-27).",
            "Invalid date of birth. Use YYYY-MM-DD (e.g. 1985-03-27).",
        )
    })?;
    if d > today || d.year() < 1900 {
        return Err(FieldError::new(
            "date_of_birth",
            "date_out_of_range",
            "Ngày sinh phải sau năm 1900 và không ở tương lai.",
            "The date of birth must be after 1900 and not in the future.",
        ));
    }
    Ok(d)
}

/// Validates an ICD-10 code (WHO format: a letter, two digits, optionally a
/// dot and one to four more characters), upper-casing it.
/// Every ICD-10 category and subcategory of WHO's 2019 edition
/// (`records/icd10/generate.py` writes the list; the page's code search
/// loads the same codes with their titles).
static ICD10_CODES: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| include_str!("../icd10/codes.txt").lines().collect());

pub fn icd10(field: &str, value: &str) -> Result<String, FieldError> {
    let v = value.trim().to_ascii_uppercase();
    let b = v.as_bytes();
    let head_ok = b.len() >= 3
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && (b[2].is_ascii_digit() || (b[0] == b'U' || b[0] == b'C' || b[0] == b'D'));
    let tail_ok = match b.len() {
        3 => true,
        5..=8 => b[3] == b'.' && b[4..].iter().all(|c| c.is_ascii_alphanumeric()),
        _ => false,
    };
    if head_ok && tail_ok && b[2].is_ascii_alphanumeric() {
        if ICD10_CODES.contains(v.as_str()) {
            return Ok(v);
        }
        Err(FieldError::new(
            field,
            "unknown_icd10",
            format!(
                "Mã “{v}” không có trong danh mục ICD-10 (WHO, bản 2019). Gõ tên bệnh vào ô mã ICD-10 để chọn đúng mã."
            ),
            format!("“{v}” is not in the ICD-10 list (WHO, 2019 edition). Type the condition's name in the ICD-10 box to pick the right code."),
        ))
    } else {
        Err(FieldError::new(
            field,
            "invalid_icd10",
            format!(
                "“{}” không phải mã ICD-10 hợp lệ (ví dụ J18.9, A09).",
                value.trim()
            ),
            format!("“{}” is not a valid ICD-10 code (e.g. J18.9, A09).", value.trim()),
        ))
    }
}

/// Checks that a measurement lies in the range a living patient can show;
/// outside it the value is a typing mistake or a unit mix-up.
pub fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
    unit: &str,
) -> Result<T, FieldError> {
    if value < min || value > max {
        Err(FieldError::new(
            field,
            "out_of_range",
            format!("Giá trị {value} {unit} nằm ngoài khoảng cho phép ({min}–{max} {unit}). Kiểm tra lại số đo và đơn vị."),
            format!("{value} {unit} is outside the plausible range ({min}–{max} {unit}). Check the reading and the unit."),
        ))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn cccd_accepts_a_consistent_number() {
        // Hà Nội (001), female born 1985 (century digit 1, year 85).
        assert_eq!(
            cccd("001 185 012345", Some(d("1985-03-27")), Some(Sex::Female)).unwrap(),
            "001185012345"
        );
        // Born 2004, male: century digit 2.
        assert!(cccd("079204000001", Some(d("2004-01-01")), Some(Sex::Male)).is_ok());
    }

    #[test]
    fn cccd_refuses_bad_numbers() {
        assert_eq!(cccd("12345", None, None).unwrap_err().code, "invalid_cccd");
        assert_eq!(cccd("00118501234a", None, None).unwrap_err().code, "invalid_cccd");
        // 003 is not a province code.
        assert_eq!(cccd("003185012345", None, None).unwrap_err().code, "invalid_cccd");
        // Year mismatch and sex mismatch.
        assert_eq!(
            cccd("001185012345", Some(d("1990-01-01")), None)
                .unwrap_err()
                .code,
            "cccd_mismatch"
        );
        assert_eq!(
            cccd("001185012345", None, Some(Sex::Male)).unwrap_err().code,
            "cccd_mismatch"
        );
    }

    #[test]
    fn bhyt_formats() {
        assert_eq!(bhyt("dn4010123456789").unwrap(), "DN4010123456789");
        assert!(bhyt("0123456789").is_ok());
        assert!(bhyt("DN6010123456789").is_err());
        assert!(bhyt("D14010123456789").is_err());
        assert!(bhyt("123").is_err());
    }

    #[test]
    fn phone_normalizes() {
        assert_eq!(phone("+84 912 345 678").unwrap(), "0912345678");
        assert_eq!(phone("0912.345.678").unwrap(), "0912345678");
        assert!(phone("12345").is_err());
        assert!(phone("0012345678").is_err());
    }

    #[test]
    fn icd10_codes() {
        for ok in ["J18.9", "a09", "I10", "E11.6", "U07.1", "S52.5", " b08.4 "] {
            assert!(icd10("icd10_codes", ok).is_ok(), "{ok}");
        }
        for bad in ["", "J1", "18.9", "J18.", "J18.9.1", "JJ8", "J18-9"] {
            assert_eq!(
                icd10("icd10_codes", bad).unwrap_err().code,
                "invalid_icd10",
                "{bad}"
            );
        }
        // The right shape, but not a WHO code (US ICD-10-CM extensions, a made-up subcategory).
        for unknown in ["E11.65", "S52.501A", "J18.7", "Z99.99"] {
            assert_eq!(
                icd10("icd10_codes", unknown).unwrap_err().code,
                "unknown_icd10",
                "{unknown}"
            );
        }
    }

    #[test]
    fn search_folding_drops_accents() {
        assert_eq!(fold_for_search("  Nguyễn   Thị Đào "), "nguyen thi dao");
        assert_eq!(fold_for_search("TRẦN VĂN Ổn"), "tran van on");
    }

    #[test]
    fn date_of_birth_range() {
        let today = d("2026-11-23");
        assert!(date_of_birth("1985-03-27", today).is_ok());
        assert_eq!(
            date_of_birth("2027-01-01", today).unwrap_err().code,
            "date_out_of_range"
        );
        assert_eq!(
            date_of_birth("27/03/1985", today).unwrap_err().code,
            "invalid_date"
        );
        assert_eq!(
            date_of_birth("1985-02-30", today).unwrap_err().code,
            "invalid_date"
        );
    }
}
