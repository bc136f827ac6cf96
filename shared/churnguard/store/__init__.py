"""DynamoDB access, one module per aggregate. Nothing outside this package calls DynamoDB.

Single-table layout (pk / sk):

    ORG#<org>        ORGANIZATION               the organisation
    ORG#<org>        INTEGRATION#<id>           an integration's configuration (JSON document)
    ORG#<org>        INTEGRATION_NAME#<name>    reserves a name within the organisation
    ORG#<org>        CREDENTIALS#<id>           the KMS envelope of an integration's credentials
    ORG#<org>        APIKEY#<key_id>            an API key's metadata and status
    APIKEY#<sha256>  APIKEY                     lookup of a presented key, deleted on revocation

Uniqueness and revocation use plain items in transactions rather than indexes: index reads are
eventually consistent, which would let a duplicate name in or a revoked key keep working.
"""
