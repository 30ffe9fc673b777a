"""One error tree. Every error knows its RDS error Code and its HTTP status."""

from __future__ import annotations


class CloudmigError(Exception):
    """Base of every error that reaches a user. Subclasses fix code and status."""

    code: str = "InternalError"
    status: int = 500
    default_message: str = "The request processing has failed due to some unknown error."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)


# ---- request / protocol errors (api layer raises these) -------------------------------------------


class MissingParameter(CloudmigError):
    code, status = "MissingParameter", 400

    def __init__(self, name: str) -> None:
        self.parameter = name
        super().__init__(
            f'The input parameter "{name}" that is mandatory for processing this request is not supplied.'
        )


class InvalidParameter(CloudmigError):
    code, status = "InvalidParameter", 400

    def __init__(self, name: str, reason: str = "") -> None:
        self.parameter = name
        text = f'The specified parameter "{name}" is not valid.'
        super().__init__(f"{text} {reason}".strip())


class IllegalTimestamp(CloudmigError):
    code, status = "IllegalTimestamp", 400
    default_message = (
        'The input parameter "Timestamp" that is mandatory for processing this request is not supplied.'
    )


class TimestampExpired(CloudmigError):
    code, status = "InvalidTimeStamp.Expired", 400
    default_message = "Specified time stamp or date value is expired."


class SignatureNonceUsed(CloudmigError):
    code, status = "SignatureNonceUsed", 400
    default_message = "Specified signature nonce was used already."


class SignatureDoesNotMatch(CloudmigError):
    code, status = "SignatureDoesNotMatch", 400

    def __init__(self, string_to_sign: str) -> None:
        # aliyunsdkcore splits this message on ':' to detect a wrong secret; keep the form exact.
        super().__init__(
            "Specified signature is not matched with our calculation. server string to sign is:"
            + string_to_sign
        )


class IncompleteSignature(CloudmigError):
    code, status = "IncompleteSignature", 400
    default_message = "The request signature does not conform to Aliyun standards."


class AccessKeyNotFound(CloudmigError):
    code, status = "InvalidAccessKeyId.NotFound", 404
    default_message = "Specified access key is not found."


class AccessKeyInactive(CloudmigError):
    code, status = "InvalidAccessKeyId.Inactive", 400
    default_message = "Specified access key is disabled."


class Throttling(CloudmigError):
    code, status = "Throttling", 400
    default_message = "Request was denied due to request throttling."


class ActionNotFound(CloudmigError):
    code, status = "InvalidAction.NotFound", 404
    default_message = "Specified api is not found, please check your url and method."


class InvalidVersion(CloudmigError):
    code, status = "InvalidVersion", 400
    default_message = "Specified parameter Version is not valid."


class InternalError(CloudmigError):
    code, status = "InternalError", 500


class StoreFull(CloudmigError):
    """The store cannot write because its disk is full. ServiceUnavailable (503) is the gateway's
    documented code for a server-side condition the caller cannot fix by changing the request; the
    message says which disk and what still works. Nothing was written."""

    code, status = "ServiceUnavailable", 503

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(
            f"cloudmig cannot write to its store: the disk holding {where} is full, so nothing was "
            "changed. Describe calls and DeleteDBInstance still work; free space on that disk and "
            "call again."
        )


# ---- domain errors (services raise these) ---------------------------------------------------------


class InstanceNotFound(CloudmigError):
    code, status = "InvalidDBInstanceName.NotFound", 404
    default_message = "The database instance does not exist."


class IncorrectInstanceState(CloudmigError):
    code, status = "IncorrectDBInstanceState", 400
    default_message = "The current instance state does not support this operation."


class InvalidInstanceClass(CloudmigError):
    code, status = "InvalidDBInstanceClass.NotFound", 400
    default_message = "Specified DB instance class is not found."


class InvalidEngineVersion(CloudmigError):
    code, status = "InvalidEngineVersion.Malformed", 400
    default_message = "Specified engine version is not valid."


class InvalidEngine(CloudmigError):
    code, status = "InvalidEngine.Malformed", 400
    default_message = "Specified engine is not valid."


class TaskNotFound(CloudmigError):
    code, status = "InvalidTaskId.NotFound", 404
    default_message = "The specified task does not exist."


class TaskNameConflict(CloudmigError):
    code, status = "InvalidTaskName.Duplicate", 400
    default_message = "The specified task name already exists for this instance."


class AccountAlreadyExists(CloudmigError):
    code, status = "InvalidAccountName.Duplicate", 400
    default_message = "The specified account name already exists."


class AccountNotFound(CloudmigError):
    code, status = "InvalidAccountName.NotFound", 404
    default_message = "The specified account does not exist."


class QuotaExceeded(CloudmigError):
    code, status = "QuotaExceeded", 400
    default_message = "No free port is left for a new instance."


class ExternalFailure(CloudmigError):
    code, status = "ExternalFailure", 500
    default_message = "The request processing has failed due to external service failure."


# ---- engine-side failures (never cross the API as exceptions; recorded on tasks) ---------------------
#
# A task that fails records the failure's `code` (Describe's ReasonCode) and its text (Reason).


class TaskFailure(Exception):
    """A migration cannot go on; the task fails with this reason and its stage's work is undone."""

    code: str = "MigrationFailed"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class PrecheckFailed(TaskFailure):
    code = "PrecheckFailed"


class RetriesExhausted(TaskFailure):
    """A stage kept failing for longer than the retry budget (settings.retry_seconds)."""

    code = "RetriesExhausted"


class SlotInvalidated(TaskFailure):
    """The source removed WAL the standby still needed (max_slot_wal_keep_size)."""

    code = "SlotInvalidated"


class SourceWalLimit(TaskFailure):
    """The task's slot held more WAL on the source than allowed (settings.slot_wal_limit_mb)."""

    code = "SourceWalLimitExceeded"


class StorageQuotaExceeded(TaskFailure):
    """The target reached its DBInstanceStorage quota or its file system is nearly full."""

    code = "StorageQuotaExceeded"
