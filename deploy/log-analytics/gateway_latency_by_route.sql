-- source: gateway
-- p50, p95 and p99 latency of the API Gateway per route and status, over the last day.
-- The route is the OpenAPI operation ESPv2 logs as api_method (`<Unknown Operation Name>` for
-- paths the config does not know). Latency is the gateway's: client to gateway to Cloud Run and
-- back. http_request.latency is a Duration (seconds + nanos) in the log view's schema
-- (GoogleCloudPlatform/logging-analytics-samples, samples/serverless/cloud_run/*.sql).
-- Replace PROJECT.DATASET with the output `log_analytics_dataset` of the environment.
SELECT
  JSON_VALUE(json_payload.api_method) AS route,
  http_request.status AS status,
  COUNT(*) AS requests,
  APPROX_QUANTILES(http_request.latency.seconds * 1000 + http_request.latency.nanos / 1e6, 100)[OFFSET(50)] AS p50_ms,
  APPROX_QUANTILES(http_request.latency.seconds * 1000 + http_request.latency.nanos / 1e6, 100)[OFFSET(95)] AS p95_ms,
  APPROX_QUANTILES(http_request.latency.seconds * 1000 + http_request.latency.nanos / 1e6, 100)[OFFSET(99)] AS p99_ms
FROM `PROJECT.DATASET._AllLogs`
WHERE resource.type = 'apigateway.googleapis.com/Gateway'
  AND timestamp > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
  AND http_request IS NOT NULL
GROUP BY route, status
ORDER BY route, status;
