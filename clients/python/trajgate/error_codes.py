"""The gateway's error catalogue (packages/sdk/src/contract/error-codes.ts): the `code` of every error
answer, with its HTTP status. test/python-client.test.ts checks that this copy matches the contract."""

ERROR_STATUS = {
    "invalid_request": 400,
    "invalid_run_id": 400,
    "invalid_step": 400,
    "malformed_checkpoint": 400,
    "truncated_body": 400,
    "length_mismatch": 400,
    "checksum_mismatch": 400,
    "invalid_checksum_header": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "run_not_found": 404,
    "checkpoint_not_found": 404,
    "policy_not_found": 404,
    "token_not_found": 404,
    "checkpoint_conflict": 409,
    "checkpoint_discarded": 410,
    "checkpoint_not_restorable": 409,
    "request_timeout": 408,
    "header_too_large": 413,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "range_not_satisfiable": 416,
    "unsupported_dtype": 422,
    "shape_mismatch": 422,
    "non_finite_weights": 422,
    "limit_exceeded": 422,
    "rate_limited": 429,
    "storage_unavailable": 503,
    "catalog_unavailable": 503,
    "internal": 500,
}

ERROR_CODES = frozenset(ERROR_STATUS)
