//! Job keys as clients see them: `"42"` names job 42; `"42-3"` names job 42 under its third
//! lease. Workers get lease-qualified keys from activation, which is how a worker whose lease
//! has passed to another worker is kept from completing or failing the job (fencing).

use std::fmt;
use std::str::FromStr;

use super::JobId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub id: JobId,
    /// The lease the key was handed out under; `None` addresses the job whatever its lease.
    pub lease: Option<u32>,
}

impl JobKey {
    pub fn job(id: JobId) -> JobKey {
        JobKey { id, lease: None }
    }

    pub fn leased(id: JobId, lease: u32) -> JobKey {
        JobKey {
            id,
            lease: Some(lease),
        }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lease {
            Some(lease) => write!(f, "{}-{}", self.id, lease),
            None => write!(f, "{}", self.id),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "job key '{0}' is not valid: expected a job number such as 42, or 42-3 as handed out by ActivateJobs"
)]
pub struct InvalidJobKey(pub String);

impl FromStr for JobKey {
    type Err = InvalidJobKey;

    fn from_str(text: &str) -> Result<JobKey, InvalidJobKey> {
        let invalid = || InvalidJobKey(text.chars().take(64).collect());
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let (id, lease) = match text.split_once('-') {
            Some((id, lease)) if digits(id) && digits(lease) => {
                (id, Some(lease.parse().map_err(|_| invalid())?))
            }
            None if digits(text) => (text, None),
            _ => return Err(invalid()),
        };
        let id = id.parse().map_err(|_| invalid())?;
        Ok(JobKey { id, lease })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_leased_keys_round_trip() {
        for text in ["42", "42-3"] {
            assert_eq!(text.parse::<JobKey>().unwrap().to_string(), text);
        }
        assert_eq!("7-2".parse::<JobKey>().unwrap(), JobKey::leased(7, 2));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for text in [
            "",
            "-",
            "a1",
            "1-",
            "-1",
            "1-2-3",
            "1 ",
            "99999999999999999999",
        ] {
            assert!(text.parse::<JobKey>().is_err(), "{text:?} parsed");
        }
    }
}
