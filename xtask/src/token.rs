//! `cargo xtask token`: a JWT the local gateway accepts, for the issuer and audience of an
//! environment's rendered config, signed by the local issuer key (whose JWKS the local gateway
//! uses for every `x-google-jwks_uri`). Prints the token alone on stdout.

use std::process::ExitCode;

use anyhow::Context as _;
use items_gateway_spec::Environment;
use items_local_gateway::{Spec, TokenRequest, user_token};

use crate::util;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Environment whose rendered config names the issuer and audiences.
    #[arg(long, default_value = "dev")]
    env: String,
    /// Region of the config (default: the environment's first).
    #[arg(long)]
    region: Option<String>,
    /// JWT provider (securityDefinitions name; default: the config's first).
    #[arg(long)]
    provider: Option<String>,
    /// Subject (`sub`, also `user_id` and the local part of `email`).
    #[arg(long, default_value = "local-user")]
    sub: String,
    /// Audience (default: the provider's first `x-google-audiences`); another one fails with 403
    /// as in production.
    #[arg(long)]
    aud: Option<String>,
    /// Expired an hour ago (beyond Envoy's 60 s clock skew): the gateway answers 401 `Jwt is expired`.
    #[arg(long)]
    expired: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = token(&args)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// The rendered config of `env` (in `region`, or its first region) as the gateway reads it.
pub(crate) fn load_config(
    env: &str,
    region: Option<&str>,
) -> anyhow::Result<(Environment, String, std::path::PathBuf, Spec)> {
    let root = util::project_root();
    let environment = Environment::load(&root.join(format!("deploy/environments/{env}.toml")))
        .with_context(|| format!("environment {env}"))?;
    let region = match region {
        Some(r) => r.to_owned(),
        None => environment
            .regions
            .first()
            .map(|r| r.name.clone())
            .with_context(|| format!("environment {env} has no region"))?,
    };
    let file = items_local_gateway::config_file(&root, env, &region);
    let bytes = std::fs::read(&file)
        .with_context(|| format!("reading {} (cargo xtask render writes it)", file.display()))?;
    let spec = Spec::parse(&bytes).with_context(|| format!("loading {}", file.display()))?;
    Ok((environment, region, file, spec))
}

/// A token for the first JWT provider of `env`'s first region's config (what `cargo xtask token
/// --env <env>` prints).
pub fn first_provider_token(env: &str) -> anyhow::Result<String> {
    token(&Args {
        env: env.to_owned(),
        region: None,
        provider: None,
        sub: "local-user".into(),
        aud: None,
        expired: false,
    })
}

fn token(args: &Args) -> anyhow::Result<String> {
    let (_, _, file, spec) = load_config(&args.env, args.region.as_deref())?;
    let provider = spec.provider(args.provider.as_deref()).with_context(|| {
        let known: Vec<_> = spec.providers.keys().cloned().collect();
        format!(
            "{} has no JWT provider {} (providers: {})",
            file.display(),
            args.provider.as_deref().unwrap_or("at all"),
            known.join(", ")
        )
    })?;
    let audience = match &args.aud {
        Some(a) => a.clone(),
        None => provider
            .audiences
            .as_ref()
            .and_then(|a| a.first().cloned())
            .or_else(|| spec.host.as_ref().map(|h| format!("https://{h}")))
            .with_context(|| {
                format!(
                    "provider {} has no x-google-audiences and the config no host: pass --aud",
                    provider.name
                )
            })?,
    };
    user_token(&TokenRequest {
        issuer: provider.issuer.clone(),
        audience,
        subject: args.sub.clone(),
        lifetime_secs: if args.expired { -3600 } else { 3600 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: impl FnOnce(&mut Args)) -> Args {
        let mut a = Args {
            env: "dev".into(),
            region: None,
            provider: None,
            sub: "alice".into(),
            aud: None,
            expired: false,
        };
        extra(&mut a);
        a
    }

    fn payload(token: &str) -> serde_json::Value {
        use base64::Engine as _;
        let p = token.split('.').nth(1).expect("payload");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .expect("b64"),
        )
        .expect("json")
    }

    #[test]
    fn tokens_carry_the_configs_issuer_and_audience() {
        let t = token(&args(|_| {})).expect("token");
        let p = payload(&t);
        let (_, _, _, spec) = load_config("dev", None).expect("config");
        let provider = spec.provider(None).expect("provider");
        assert_eq!(p["iss"], provider.issuer.as_str());
        assert_eq!(
            p["aud"],
            provider.audiences.as_ref().expect("audiences")[0].as_str()
        );
        assert_eq!(p["sub"], "alice");
        assert!(p["exp"].as_i64() > p["iat"].as_i64());
    }

    #[test]
    fn expired_and_other_audience_tokens() {
        let t = token(&args(|a| {
            a.expired = true;
            a.aud = Some("elsewhere".into());
        }))
        .expect("token");
        let p = payload(&t);
        assert_eq!(p["aud"], "elsewhere");
        let now = items_local_gateway::keys::now_secs() as i64;
        assert!(p["exp"].as_i64().expect("exp") < now - 60);
        let e = token(&args(|a| a.provider = Some("nope".into()))).unwrap_err();
        assert!(e.to_string().contains("no JWT provider nope"), "{e}");
    }
}
