//! API Gateway configuration rendering. Filled in by the gateway-spec issue: it turns the route
//! table of `items-http` plus one environment's settings into an OpenAPI 2.0 API config.
