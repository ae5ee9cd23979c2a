-- source: service
-- p50, p95 and p99 latency of the service itself (its access-log lines on stdout) per route
-- and status, over the last day. The route is the method and the URL path with the one path
-- parameter of openapi/items.openapi.json (`/items/{id}`, `/docs/{asset}`) replaced by its name.
-- Cloud Run's own request log (log run.googleapis.com/requests) is left out: it would count
-- each request twice.
-- Replace PROJECT.DATASET with the output `log_analytics_dataset` of the environment.
SELECT
  CONCAT(
    http_request.request_method, ' ',
    REGEXP_REPLACE(
      REGEXP_REPLACE(REGEXP_EXTRACT(http_request.request_url, r'^[a-z]+://[^/]+(/[^?#]*)'), r'^/items/[^/]+$', '/items/{id}'),
      r'^/docs/[^/]+$', '/docs/{asset}')
  ) AS route,
  http_request.status AS status,
  COUNT(*) AS requests,
  APPROX_QUANTILES(http_request.latency.seconds * 1000 + http_request.latency.nanos / 1e6, 100)[OFFSET(50)] AS p50_ms,
  APPROX_QUANTILES(http_request.latency.seconds * 1000 + http_request.latency.nanos / 1e6, 100)[OFFSET(95)] AS p95_ms,
  APPROX_QUANTILES(http_request.latency.seconds * 1000 + http_request.latency.nanos / 1e6, 100)[OFFSET(99)] AS p99_ms
FROM `PROJECT.DATASET._AllLogs`
WHERE resource.type = 'cloud_run_revision'
  AND log_name LIKE '%/logs/run.googleapis.com%2Fstdout'
  AND timestamp > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
  AND http_request IS NOT NULL
GROUP BY route, status
ORDER BY route, status;
