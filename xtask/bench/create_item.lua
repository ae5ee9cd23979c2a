-- POST /items with a small JSON body (no Idempotency-Key: every request creates a row).
wrk.method = "POST"
wrk.path = "/items"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name": "bench item", "description": "created by cargo xtask bench"}'
