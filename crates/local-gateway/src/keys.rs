//! The local signing keys and the tokens they sign.
//!
//! Two fixed RSA keys live in `keys/` beside this crate. They are public and trusted nowhere but by
//! the local gateway:
//! - the **local issuer** stands in for every JWT provider of a config (`x-google-issuer`): its
//!   JWKS is what the gateway gets for the config's `x-google-jwks_uri`, and `cargo xtask token`
//!   signs with it, so a token from one process verifies in another;
//! - the **local "Google"** key signs the ID tokens the gateway sends to the backend
//!   (`iss: https://accounts.google.com`), as API Gateway does with its service account.
//!
//! jsonwebtoken does the JWT/JWK work; its cryptography runs on `ring` (already in the build
//! through rustls) through [`RING_PROVIDER`].

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
    RSAKeyParameters, RSAKeyType,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, signature};
use ring::signature::{self as sig, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};

const LOCAL_ISSUER_PEM: &str = include_str!("../keys/local-issuer.pem");
const LOCAL_GOOGLE_PEM: &str = include_str!("../keys/local-google.pem");

/// The issuer of the ID tokens API Gateway sends to its backends.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// An RSA signing key with its key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    der: Vec<u8>,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key `cargo xtask token` signs with and whose JWKS the gateway trusts for every
    /// `x-google-jwks_uri` of a config.
    pub fn local_issuer() -> Self {
        Self::from_pkcs1_pem("local-issuer-1", LOCAL_ISSUER_PEM)
            .expect("the committed local issuer key is valid")
    }

    /// The key of the ID tokens the gateway sends to backends.
    pub fn local_google() -> Self {
        Self::from_pkcs1_pem("local-google-1", LOCAL_GOOGLE_PEM)
            .expect("the committed local Google key is valid")
    }

    /// Reads a PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM key.
    pub fn from_pkcs1_pem(kid: &str, pem: &str) -> anyhow::Result<Self> {
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let der = STANDARD.decode(body.trim())?;
        let pair = RsaKeyPair::from_der(&der).map_err(|e| anyhow::anyhow!("RSA key: {e}"))?;
        let public = pair.public_key();
        let components: sig::RsaPublicKeyComponents<Vec<u8>> = public.into();
        Ok(Self {
            kid: kid.to_owned(),
            der,
            n: components.n,
            e: components.e,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (RS256, `use: sig`).
    pub fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::RS256),
                key_id: Some(self.kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: URL_SAFE_NO_PAD.encode(&self.n),
                e: URL_SAFE_NO_PAD.encode(&self.e),
            }),
        }
    }

    /// The JWKS document with this key alone.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk()],
        }
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        install_crypto_provider();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_rsa_der(&self.der),
        )?)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// What `cargo xtask token` asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    /// Lifetime in seconds from now; negative: expired that long ago (beyond the 60 s skew).
    pub lifetime_secs: i64,
}

/// A JWT for `request`, signed by the local issuer key.
pub fn user_token(request: &TokenRequest) -> anyhow::Result<String> {
    let now = now_secs() as i64;
    let (iat, exp) = if request.lifetime_secs >= 0 {
        (now, now + request.lifetime_secs)
    } else {
        (
            now - 3600 + request.lifetime_secs,
            now + request.lifetime_secs,
        )
    };
    SigningKey::local_issuer().sign(&json!({
        "iss": request.issuer,
        "aud": request.audience,
        "sub": request.subject,
        "user_id": request.subject,
        "email": format!("{}@example.com", request.subject),
        "iat": iat,
        "exp": exp,
        "auth_time": iat,
    }))
}

/// The Google-signed ID token API Gateway sends to a backend (claims as observed on a real
/// API Gateway → Cloud Run call in salrashid123/api_gateway_auth; esp-v2
/// `http/backend_auth/filter.cc`): `aud`, `azp`, `email` (the gateway's service
/// account), `email_verified`, `exp`, `iat`, `iss`, `sub`.
pub fn backend_id_token(
    key: &SigningKey,
    audience: &str,
    service_account: &str,
    now: u64,
) -> anyhow::Result<String> {
    let sub = numeric_id(service_account);
    key.sign(&json!({
        "aud": audience,
        "azp": sub,
        "email": service_account,
        "email_verified": true,
        "exp": now + 3600,
        "iat": now,
        "iss": GOOGLE_ISSUER,
        "sub": sub,
    }))
}

/// A stable 21-digit numeric id for a service account, as Google's `sub` claims look.
fn numeric_id(name: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut n: u128 = 0;
    for b in &digest.as_ref()[..16] {
        n = (n << 8) | u128::from(*b);
    }
    format!("1{:020}", n % 100_000_000_000_000_000_000)
}

// ---------------------------------------------------------------------------------------------
// jsonwebtoken's cryptography on ring.

/// Installs [`RING_PROVIDER`] as jsonwebtoken's process default (a no-op when one is installed).
pub fn install_crypto_provider() {
    let _ = RING_PROVIDER.install_default();
}

/// jsonwebtoken's `CryptoProvider` on `ring`: RS256/384/512, PS256/384/512 and ES256/384, the
/// asymmetric algorithms Envoy's jwt_authn accepts that ring implements (no HS*, EdDSA, ES512).
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

struct RingSigner {
    algorithm: Algorithm,
    key: EncodingKey,
}

impl signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let encoding: &'static dyn sig::RsaEncoding = match self.algorithm {
            Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
            Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
            Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
            _ => return Err(signature::Error::new()),
        };
        let pair =
            RsaKeyPair::from_der(self.key.as_bytes()).map_err(|_| signature::Error::new())?;
        let mut out = vec![0; pair.public().modulus_len()];
        pair.sign(encoding, &ring::rand::SystemRandom::new(), msg, &mut out)
            .map_err(|_| signature::Error::new())?;
        Ok(out)
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_signer(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    match algorithm {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Ok(Box::new(RingSigner {
            algorithm: *algorithm,
            key: key.clone(),
        })),
        _ => Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
    }
}

struct RingVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        use jsonwebtoken::DecodingKeyKind;
        let rsa: Option<&'static sig::RsaParameters> = match self.algorithm {
            Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        let ok = match (rsa, self.key.kind()) {
            (Some(params), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, signature)
                    .is_ok()
            }
            (Some(params), DecodingKeyKind::SecretOrDer(der)) => {
                sig::UnparsedPublicKey::new(params, der)
                    .verify(msg, signature)
                    .is_ok()
            }
            (None, DecodingKeyKind::SecretOrDer(point)) => {
                let params: &'static sig::EcdsaVerificationAlgorithm = match self.algorithm {
                    Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                    _ => return Err(signature::Error::new()),
                };
                sig::UnparsedPublicKey::new(params, point)
                    .verify(msg, signature)
                    .is_ok()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_verifier(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 | Algorithm::EdDSA => {
            Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into())
        }
        _ => Ok(Box::new(RingVerifier {
            algorithm: *algorithm,
            key: key.clone(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_jwks_and_not_with_the_other_key() {
        let issuer = SigningKey::local_issuer();
        let token = issuer.sign(&json!({"sub": "a"})).expect("sign");
        let (message, signature) = token.rsplit_once('.').expect("three parts");
        let good = DecodingKey::from_jwk(&issuer.jwk()).expect("jwk");
        assert!(
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &good, Algorithm::RS256)
                .expect("verify")
        );
        let other = DecodingKey::from_jwk(&SigningKey::local_google().jwk()).expect("jwk");
        assert!(
            !jsonwebtoken::crypto::verify(signature, message.as_bytes(), &other, Algorithm::RS256)
                .expect("verify")
        );
    }

    #[test]
    fn service_account_ids_are_stable_21_digit_numbers() {
        let id = numeric_id("items-gateway@items-dev-4821.iam.gserviceaccount.com");
        assert_eq!(id.len(), 21);
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            id,
            numeric_id("items-gateway@items-dev-4821.iam.gserviceaccount.com")
        );
    }
}
