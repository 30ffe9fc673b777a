"""Facts of the RDS spec that several tests check against (shared/spec/rds-openapi.md)."""

# §2.5: the keys of ReplicationInfo, every value a string.
REPLICATION_INFO_KEYS = frozenset(
    {
        "Status",
        "ReceiveStartLsn",
        "ReceiveStartTli",
        "ReceivedLsn",
        "ReceivedTli",
        "LatestEndLsn",
        "LatestEndTime",
        "LastMsgSendTime",
        "LastMsgReceiptTime",
        "ReplayLsn",
        "ReplayTimestamp",
        "ReplayLag",
        "Synced",
        "IsSlave",
        "Conninfo",
    }
)
