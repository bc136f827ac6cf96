"""DynamoDB access, one module per aggregate. Nothing outside this package calls DynamoDB.

Single-table layout (pk / sk):

    ORG#<org>        ORGANIZATION               the organisation
    ORG#<org>        INTEGRATION#<id>           an integration's configuration (JSON document)
    ORG#<org>        INTEGRATION_NAME#<name>    reserves a name within the organisation
    ORG#<org>        CREDENTIALS#<id>           the KMS envelope of an integration's credentials
    ORG#<org>        APIKEY#<key_id>            an API key's metadata and status
    APIKEY#<sha256>  APIKEY                     lookup of a presented key, deleted on revocation
    ORG#<org>        SYNC#<integration>#<sync>  a sync run (document, status, version, cancel flag)
    ORG#<org>        SYNC_LOCK#<integration>    the running sync and its lease (one sync at a time)
    ORG#<org>        SYNC_CURSOR#<integration>  final per-entity state of the last successful sync
    ORG#<org>        CIRCUIT#<integration>      the integration's circuit breaker (shared by all invocations)
    ORG#<org>        WEBHOOK#<provider>         the organisation's webhook endpoint for a provider: configuration
                                                document, KMS envelope of its secrets, ignored-event counter
    ORG#<org>        DEADLETTER#<message key>   a webhook event that exhausted its retries, with its error (DLQ API)
    ORG#<org>        RUNSTATS#<integration>     the integration's recent runs, for the dashboard (run_history)
    ORG#<org>        ALERT#<alert_id>           an alert and its state (alerts)
    ORG#<org>        ALERT_OPEN#<rule>#<subject>  held while that alert is unresolved: one at a time
    ORG#<org>        ALERT_SETTINGS             alert rules, thresholds, the chat webhook's KMS envelope
    ORGANIZATIONS    <org>                      the organisation index the alert function walks
    STATS#<org>      H#<yyyy-mm-ddThh>          the organisation's counters for an hour (activity); TTL
    STATS#<org>      D#<integration>#<day>      an integration's counters for a day (activity); TTL
    WHEVENT#<org>#<endpoint>#<event id>  -      dedupe claim of a provider event (pending + lease, then queued); TTL
    WHRATE#<org>#<minute>                -      fixed-window webhook rate counter; TTL
    RECSTATE#<org>#<integration>#<entity>#<key>  -  newest event time applied to a record (out-of-order guard); TTL

Uniqueness and revocation use plain items in transactions rather than indexes: index reads are
eventually consistent, which would let a duplicate name in or a revoked key keep working.
"""
