//! Quotas: `x-google-management` limits per minute and per consumer, charged with each
//! operation's `x-google-quota.metricCosts` (esp-v2 `request_builder.cc`;
//! https://cloud.google.com/endpoints/docs/openapi/quotas-configure).
//!
//! The consumer is `api_key:<key>` when the request carries a key (required or not), otherwise
//! `project:<producer project>` (esp-v2 `request_builder.cc`). Windows are calendar minutes.
//! Unlike Service Control's aggregated cache, which lets the first over-quota request through
//! and may keep answering 429 after the minute ends, the local count is exact.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::spec::QuotaLimit;

#[derive(Debug, Default)]
pub struct Quotas {
    /// (consumer, limit name) → (minute, used).
    used: Mutex<HashMap<(String, String), (u64, i64)>>,
}

/// A limit that a request would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: String,
    pub metric: String,
    pub consumer: String,
}

impl Quotas {
    /// Charges `costs` to `consumer` in minute `minute`, or charges nothing and names the first
    /// limit that would be exceeded.
    pub fn allocate(
        &self,
        limits: &[QuotaLimit],
        costs: &[(String, i64)],
        consumer: &str,
        minute: u64,
    ) -> Result<(), Exceeded> {
        if costs.is_empty() {
            return Ok(());
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut charges = Vec::new();
        for limit in limits {
            let cost: i64 = costs
                .iter()
                .filter(|(metric, _)| *metric == limit.metric)
                .map(|(_, c)| *c)
                .sum();
            if cost == 0 {
                continue;
            }
            let key = (consumer.to_owned(), limit.name.clone());
            let current = match used.get(&key) {
                Some((m, n)) if *m == minute => *n,
                _ => 0,
            };
            if current + cost > limit.per_minute {
                return Err(Exceeded {
                    limit: limit.name.clone(),
                    metric: limit.metric.clone(),
                    consumer: consumer.to_owned(),
                });
            }
            charges.push((key, current + cost));
        }
        for (key, n) in charges {
            used.insert(key, (minute, n));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_consumer_and_minute() {
        let limits = [QuotaLimit {
            name: "rpm".into(),
            metric: "requests".into(),
            per_minute: 2,
        }];
        let costs = [("requests".to_owned(), 1)];
        let q = Quotas::default();
        assert!(q.allocate(&limits, &costs, "api_key:a", 1).is_ok());
        assert!(q.allocate(&limits, &costs, "api_key:a", 1).is_ok());
        assert_eq!(
            q.allocate(&limits, &costs, "api_key:a", 1)
                .unwrap_err()
                .limit,
            "rpm"
        );
        assert!(q.allocate(&limits, &costs, "api_key:b", 1).is_ok());
        assert!(q.allocate(&limits, &costs, "api_key:a", 2).is_ok());
        assert!(q.allocate(&limits, &[], "api_key:a", 1).is_ok());
    }
}
