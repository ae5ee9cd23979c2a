-- source: gateway
-- Requests the gateway refused for quota (429; ESPv2's response_code_detail
-- `service_control_quota_error{RESOURCE_EXHAUSTED}`), per API key, over the last day. The key
-- itself never leaves this query: only its first four characters and a short SHA-256
-- fingerprint, enough to tell keys apart and to find the key in the console.
-- Replace PROJECT.DATASET with the output `log_analytics_dataset` of the environment.
SELECT
  IF(JSON_VALUE(json_payload.api_key) IS NULL, '(no key)',
     CONCAT(SUBSTR(JSON_VALUE(json_payload.api_key), 1, 4), '…',
            SUBSTR(TO_HEX(SHA256(JSON_VALUE(json_payload.api_key))), 1, 12))) AS api_key_redacted,
  JSON_VALUE(json_payload.api_method) AS route,
  JSON_VALUE(resource.labels.gateway_id) AS gateway,
  COUNT(*) AS refusals,
  MIN(timestamp) AS first_refusal,
  MAX(timestamp) AS last_refusal
FROM `PROJECT.DATASET._AllLogs`
WHERE resource.type = 'apigateway.googleapis.com/Gateway'
  AND timestamp > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
  AND (http_request.status = 429
       OR STARTS_WITH(JSON_VALUE(json_payload.response_code_detail), 'service_control_quota_error'))
GROUP BY api_key_redacted, route, gateway
ORDER BY refusals DESC;
