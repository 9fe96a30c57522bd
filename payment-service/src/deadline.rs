//! Honouring the caller's deadline (the `grpc-timeout` metadata).
//!
//! tonic's server already drops a call whose `grpc-timeout` has passed, but it answers CANCELLED, and the
//! tonic client's own timer fires at the same instant with CANCELLED too. So the handler stops its work a
//! little *before* the deadline and answers DEADLINE_EXCEEDED itself, early enough for that answer to reach
//! the caller first. Dropping the work future cancels the pending MongoDB or JWKS call with it.
use std::{future::Future, time::Duration};

use tonic::{Status, metadata::MetadataMap};

/// The most time reserved for the DEADLINE_EXCEEDED answer to travel back; short deadlines reserve a tenth.
const MAX_RESPONSE_MARGIN: Duration = Duration::from_millis(50);

/// The time the caller allows for the whole call, from `grpc-timeout`; `None` when absent or malformed.
pub fn client_timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// `grpc-timeout` is 1 to 8 ASCII digits followed by a unit: H, M, S, m (milli), u (micro) or n (nano).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..split)?, value.get(split..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// How long the handler may work so that its answer still arrives within `timeout`.
fn work_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(MAX_RESPONSE_MARGIN))
}

/// Runs `work`, answering DEADLINE_EXCEEDED when the caller's deadline (if any) is about to pass.
pub async fn within_client_deadline<T>(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let Some(timeout) = timeout else {
        return work.await;
    };
    match tokio::time::timeout(work_budget(timeout), work).await {
        Ok(result) => result,
        Err(_elapsed) => {
            tracing::info!(timeout_ms = timeout.as_millis() as u64, "the caller's deadline passed; call abandoned");
            Err(Status::deadline_exceeded("the deadline passed before the call completed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_grpc_timeout("1n"), Some(Duration::from_nanos(1)));
    }

    #[test]
    fn malformed_grpc_timeout_values_are_ignored() {
        for value in ["", "m", "10", "123456789S", "-1S", "1.5S", "10x", "1é"] {
            assert_eq!(parse_grpc_timeout(value), None, "{value:?}");
        }
    }

    #[test]
    fn the_work_budget_leaves_room_for_the_answer() {
        assert_eq!(work_budget(Duration::from_millis(100)), Duration::from_millis(90));
        assert_eq!(work_budget(Duration::from_secs(10)), Duration::from_millis(9950));
        assert_eq!(work_budget(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn work_outliving_the_deadline_ends_with_deadline_exceeded() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let status = within_client_deadline(Some(Duration::from_millis(20)), slow).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        let fast = within_client_deadline(Some(Duration::from_secs(5)), async { Ok(7) }).await;
        assert_eq!(fast.unwrap(), 7);
    }
}
