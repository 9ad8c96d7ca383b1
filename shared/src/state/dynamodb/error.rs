//! SDK errors mapped to [`StateError`], the conditional-write outcomes the store branches on, and
//! the backoff between retries of writes that lost a race.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use crate::state::StateError;

/// Attempts of an optimistic write (read, then write conditionally) before giving up. Each
/// retry means another writer won in between, so this many in a row is a hot spot, not luck.
pub(super) const MAX_ATTEMPTS: u32 = 12;

/// A failed SDK call as a backend error, with what was being done and the whole error chain.
pub(super) fn backend<E, R>(what: &str, err: SdkError<E, R>) -> StateError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StateError::Backend(format!("{what}: {}", DisplayErrorContext(&err)))
}

/// A request that could not even be built (a missing required field: a bug, not bad luck).
pub(super) fn invalid_request(what: &str, err: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!("{what}: invalid request: {err}"))
}

/// Whether a single-item write was refused by its condition expression.
pub(super) fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException")
}

/// How a `TransactWriteItems` call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transaction {
    Committed,
    /// The condition of the action at this index failed; nothing was written.
    ConditionFailed(usize),
    /// Another transaction or write touched the same items at the same time; nothing was
    /// written and the caller may try again.
    Conflict,
}

/// Sorts a transaction's result into the outcomes callers handle; anything else is an error.
pub(super) fn transaction_outcome<R: std::fmt::Debug>(
    what: &str,
    result: Result<(), SdkError<TransactWriteItemsError, R>>,
) -> Result<Transaction, StateError> {
    let err = match result {
        Ok(()) => return Ok(Transaction::Committed),
        Err(err) => err,
    };
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            let codes: Vec<&str> = cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("")).collect();
            if let Some(index) = codes.iter().position(|code| *code == "ConditionalCheckFailed") {
                return Ok(Transaction::ConditionFailed(index));
            }
            if codes.contains(&"TransactionConflict") {
                return Ok(Transaction::Conflict);
            }
            Err(backend(what, err))
        }
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => Ok(Transaction::Conflict),
        _ => Err(backend(what, err)),
    }
}

/// The error when every attempt lost a race.
pub(super) fn contended(what: &str) -> StateError {
    StateError::Backend(format!("{what}: still contended after {MAX_ATTEMPTS} attempts"))
}

/// Waits before retry number `attempt` (from 0): exponential from 10 ms, capped at 1 s, with
/// full jitter so racing writers spread out instead of colliding again.
pub(super) async fn backoff(attempt: u32) {
    let ceiling = (10u64 << attempt.min(7)).min(1000);
    // RandomState is seeded per instance: enough randomness for jitter without another crate.
    let random = RandomState::new().build_hasher().finish();
    tokio::time::sleep(Duration::from_millis(random % (ceiling + 1))).await;
}
