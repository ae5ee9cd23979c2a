-- source: service
-- Share of the service's requests answered 5xx (server errors) and 4xx (refused input), per
-- Cloud Run revision and region, over the last day: a revision whose 5xx ratio stands out is
-- the one to roll back (`cargo xtask deploy` shifts traffic revision by revision).
-- revision_name and location are labels of the monitored resource cloud_run_revision.
-- Replace PROJECT.DATASET with the output `log_analytics_dataset` of the environment.
SELECT
  JSON_VALUE(resource.labels.revision_name) AS revision,
  JSON_VALUE(resource.labels.location) AS region,
  COUNT(*) AS requests,
  COUNTIF(http_request.status >= 500) AS server_errors,
  COUNTIF(http_request.status BETWEEN 400 AND 499) AS client_errors,
  SAFE_DIVIDE(COUNTIF(http_request.status >= 500), COUNT(*)) AS server_error_ratio,
  SAFE_DIVIDE(COUNTIF(http_request.status BETWEEN 400 AND 499), COUNT(*)) AS client_error_ratio
FROM `PROJECT.DATASET._AllLogs`
WHERE resource.type = 'cloud_run_revision'
  AND log_name LIKE '%/logs/run.googleapis.com%2Fstdout'
  AND timestamp > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
  AND http_request IS NOT NULL
GROUP BY revision, region
ORDER BY server_error_ratio DESC, requests DESC;
