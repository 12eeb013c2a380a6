//! Chinese identification codes that donors and recipients carry.

/// Characters of the unified social credit code (GB 32100-2015): digits and
/// capitals without I, O, Z, S and V. A character's index is its numeric value.
const CREDIT_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("must be 18 characters")]
    CreditLength,
    #[error("contains '{0}', which a unified social credit code never uses")]
    CreditChar(char),
    #[error("has check character '{found}' but its first 17 characters give '{expected}'")]
    CreditCheck { found: char, expected: char },
    #[error("must be a 6-digit administrative division code")]
    RegionFormat,
    #[error("starts with {0}, which is not a province-level division")]
    RegionProvince(String),
}

/// The check character for the first 17 characters of a credit code.
pub fn credit_check_char(first17: &[u8]) -> Result<char, CodeError> {
    let mut sum = 0u32;
    for (i, &b) in first17.iter().enumerate() {
        let v = CREDIT_CHARSET
            .iter()
            .position(|&c| c == b)
            .ok_or(CodeError::CreditChar(b as char))? as u32;
        sum += v * CREDIT_WEIGHTS[i];
    }
    let check = (31 - sum % 31) % 31;
    Ok(CREDIT_CHARSET[check as usize] as char)
}

/// Validates a unified social credit code (统一社会信用代码), check character included.
/// Lower-case input is accepted and returned upper-cased.
pub fn credit_code(input: &str) -> Result<String, CodeError> {
    let code = input.trim().to_ascii_uppercase();
    if code.chars().count() != 18 || !code.is_ascii() {
        return Err(CodeError::CreditLength);
    }
    let bytes = code.as_bytes();
    let expected = credit_check_char(&bytes[..17])?;
    let found = bytes[17] as char;
    if !CREDIT_CHARSET.contains(&bytes[17]) {
        return Err(CodeError::CreditChar(found));
    }
    if found != expected {
        return Err(CodeError::CreditCheck { found, expected });
    }
    Ok(code)
}

/// Province-level prefixes of GB/T 2260 administrative division codes.
const PROVINCES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82",
];

/// Validates a 6-digit administrative division code (e.g. 370881, Qufu in Shandong).
pub fn region_code(input: &str) -> Result<String, CodeError> {
    let code = input.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeError::RegionFormat);
    }
    if !PROVINCES.contains(&&code[..2]) {
        return Err(CodeError::RegionProvince(code[..2].to_string()));
    }
    Ok(code.to_string())
}

/// A region filter may name a province (2 digits), a city (4) or a county (6).
pub fn region_prefix(input: &str) -> Result<String, CodeError> {
    let code = input.trim();
    if ![2, 4, 6].contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeError::RegionFormat);
    }
    Ok(code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_published_credit_code_and_lower_case() {
        // A code printed on a public business licence sample.
        assert_eq!(
            credit_code("91350100M000100Y43").unwrap(),
            "91350100M000100Y43"
        );
        assert_eq!(
            credit_code("91350100m000100y43").unwrap(),
            "91350100M000100Y43"
        );
    }

    #[test]
    fn every_single_character_change_of_the_check_is_caught() {
        let good = "91350100M000100Y43";
        for c in CREDIT_CHARSET.iter().map(|&b| b as char) {
            let candidate = format!("{}{}", &good[..17], c);
            assert_eq!(credit_code(&candidate).is_ok(), c == '3', "{candidate}");
        }
    }

    #[test]
    fn refuses_bad_credit_codes() {
        assert_eq!(credit_code("12345"), Err(CodeError::CreditLength));
        assert_eq!(
            credit_code("91350100M000100I43"),
            Err(CodeError::CreditChar('I'))
        );
        assert!(matches!(
            credit_code("91350100M000100Y44"),
            Err(CodeError::CreditCheck { .. })
        ));
    }

    #[test]
    fn region_codes() {
        assert_eq!(region_code("370881").unwrap(), "370881");
        assert_eq!(region_code("37088"), Err(CodeError::RegionFormat));
        assert_eq!(region_code("37a881"), Err(CodeError::RegionFormat));
        assert_eq!(
            region_code("990881"),
            Err(CodeError::RegionProvince("99".into()))
        );
        assert!(region_prefix("3708").is_ok());
        assert!(region_prefix("370").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn body() -> impl Strategy<Value = String> {
        proptest::collection::vec(0usize..31, 17)
            .prop_map(|ix| ix.into_iter().map(|i| CREDIT_CHARSET[i] as char).collect())
    }

    proptest! {
        /// A code with its computed check character is accepted; changing any one character
        /// to another valid one is refused.
        #[test]
        fn check_character_catches_single_changes(b in body(), pos in 0usize..18, to in 0usize..31) {
            let check = credit_check_char(b.as_bytes()).unwrap();
            let code = format!("{b}{check}");
            prop_assert_eq!(credit_code(&code).unwrap(), code.clone());
            let mut bytes = code.clone().into_bytes();
            let replacement = CREDIT_CHARSET[to];
            prop_assume!(bytes[pos] != replacement);
            bytes[pos] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(credit_code(&changed).is_err(), "{} accepted", changed);
        }

        /// Region codes: six digits under a province; prefixes of 2, 4 or 6 digits.
        #[test]
        fn region_codes(n in 0u32..1_000_000) {
            let code = format!("{n:06}");
            let ok = PROVINCES.contains(&&code[..2]);
            prop_assert_eq!(region_code(&code).is_ok(), ok);
            prop_assert!(region_prefix(&code[..4]).is_ok());
            prop_assert!(region_prefix(&code[..3]).is_err());
        }

        /// Nothing panics on arbitrary input.
        #[test]
        fn arbitrary_input_never_panics(s in ".{0,40}") {
            let _ = credit_code(&s);
            let _ = region_code(&s);
        }
    }
}
