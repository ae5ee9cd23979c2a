-- source: service
-- The 50 slowest requests the service answered in the last hour, each with its trace: the
-- LogEntry trace `projects/P/traces/T` (Cloud Trace's resource name) and a console link built
-- from it. The link format (console.cloud.google.com/traces/list?project=P&tid=T) is the one
-- the console uses; it is not in Google's reference documentation [not confirmed].
-- Replace PROJECT.DATASET with the output `log_analytics_dataset` of the environment.
SELECT
  timestamp,
  http_request.request_method AS method,
  http_request.request_url AS url,
  http_request.status AS status,
  http_request.latency.seconds * 1000 + http_request.latency.nanos / 1e6 AS latency_ms,
  JSON_VALUE(resource.labels.revision_name) AS revision,
  trace AS trace_name,
  span_id,
  CONCAT('https://console.cloud.google.com/traces/list?project=',
         REGEXP_EXTRACT(trace, r'^projects/([^/]+)/traces/'),
         '&tid=', REGEXP_EXTRACT(trace, r'/traces/([0-9a-f]{32})$')) AS trace_link
FROM `PROJECT.DATASET._AllLogs`
WHERE resource.type = 'cloud_run_revision'
  AND log_name LIKE '%/logs/run.googleapis.com%2Fstdout'
  AND timestamp > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR)
  AND http_request IS NOT NULL
ORDER BY latency_ms DESC
LIMIT 50;
