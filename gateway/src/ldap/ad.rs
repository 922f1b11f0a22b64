//! Active Directory specifics: the account state in `userAccountControl`, and the diagnostic
//! code AD puts in a failed bind's message (`80090308: LdapErr: DSID-0C09042A, comment:
//! AcceptSecurityContext error, data 532, v4563`).
//!
//! What may be shown (security-relevant): AD returns 530, 531, 532, 533, 701 and 773 only when
//! the password was right, so they become an [`AccountProblem`] with a message for the user.
//! 775 (locked out) comes back whatever the password, and 525/52e are "no such user"/"wrong
//! password": those read like any wrong password, or the form would tell an attacker which
//! names exist. `userAccountControl` is read from the user's entry and judged only after the
//! user's own bind succeeded, for the same reason.

use crate::password_signin::{AccountProblem, Refusal};

/// `userAccountControl` ACCOUNTDISABLE.
pub const ACCOUNTDISABLE: u32 = 0x2;
/// `userAccountControl` LOCKOUT.
pub const LOCKOUT: u32 = 0x10;

/// The attribute.
pub const UAC: &str = "userAccountControl";

/// The account state in a `userAccountControl` value (decimal, as AD writes it); `None` when
/// the flags allow a sign-in. An unreadable value refuses (fail closed).
pub fn account_control(value: &str) -> Option<AccountProblem> {
    let Ok(flags) = value.trim().parse::<u32>() else {
        return Some(AccountProblem::Disabled);
    };
    if flags & ACCOUNTDISABLE != 0 {
        Some(AccountProblem::Disabled)
    } else if flags & LOCKOUT != 0 {
        Some(AccountProblem::LockedOut)
    } else {
        None
    }
}

/// The `data NNN` code of an AD bind error message, if any.
fn data_code(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("data ")?;
    let code = rest.split([',', ' ']).next()?;
    (!code.is_empty() && code.len() <= 8 && code.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(code)
}

/// What a bind refused with invalidCredentials (49) and `message` means for the user.
pub fn bind_refusal(message: &str) -> Refusal {
    match data_code(message).map(str::to_ascii_lowercase).as_deref() {
        Some("532") => Refusal::Account(AccountProblem::PasswordExpired),
        Some("773") => Refusal::Account(AccountProblem::MustChangePassword),
        Some("533") => Refusal::Account(AccountProblem::Disabled),
        Some("701") => Refusal::Account(AccountProblem::AccountExpired),
        Some("530" | "531") => Refusal::Account(AccountProblem::Restricted),
        // 775 (locked) is returned even for a wrong password; 525, 52e and anything else are
        // a wrong name or password: the same answer as every failure.
        _ => Refusal::WrongPassword,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(code: &str) -> String {
        format!("80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data {code}, v4563\0")
    }

    #[test]
    fn diagnostic_codes_after_a_right_password_are_told_the_rest_read_as_wrong() {
        let table = [
            ("532", Refusal::Account(AccountProblem::PasswordExpired)),
            ("773", Refusal::Account(AccountProblem::MustChangePassword)),
            ("533", Refusal::Account(AccountProblem::Disabled)),
            ("701", Refusal::Account(AccountProblem::AccountExpired)),
            ("530", Refusal::Account(AccountProblem::Restricted)),
            ("531", Refusal::Account(AccountProblem::Restricted)),
            ("775", Refusal::WrongPassword),
            ("52e", Refusal::WrongPassword),
            ("525", Refusal::WrongPassword),
        ];
        for (code, want) in table {
            assert_eq!(bind_refusal(&msg(code)), want, "data {code}");
        }
        assert_eq!(
            bind_refusal(""),
            Refusal::WrongPassword,
            "OpenLDAP says nothing"
        );
        assert_eq!(bind_refusal("data "), Refusal::WrongPassword);
        assert_eq!(bind_refusal("data 532x"), Refusal::WrongPassword);
    }

    #[test]
    fn account_control_flags() {
        assert_eq!(account_control("512"), None, "NORMAL_ACCOUNT");
        assert_eq!(
            account_control("66048"),
            None,
            "NORMAL | DONT_EXPIRE_PASSWORD"
        );
        assert_eq!(account_control("514"), Some(AccountProblem::Disabled));
        assert_eq!(account_control("528"), Some(AccountProblem::LockedOut));
        assert_eq!(
            account_control("530"),
            Some(AccountProblem::Disabled),
            "both: disabled wins"
        );
        assert_eq!(
            account_control("junk"),
            Some(AccountProblem::Disabled),
            "fail closed"
        );
        assert_eq!(account_control("-1"), Some(AccountProblem::Disabled));
    }
}
