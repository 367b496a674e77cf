//! Agent identities: every agent has an Ed25519 key pair. The private key is made here, sealed with
//! the master key (bound to the context `agent:<id>`) before it reaches the store, and opened only to
//! sign; it never leaves this module. The public key is on the agent (`Agent::public_key`).
//!
//! Agents made before identities existed get theirs lazily, the first time one is needed: when the
//! agent signs, or when a verification names it. Nodes racing to do that agree through a
//! compare-and-set in the store, so an agent never has two identities.
//!
//! What is signed: a string payload is signed as its UTF-8 bytes, exactly as given; any other JSON
//! value as its canonical serialization ([`canonical_json`]).

use std::sync::Arc;

use agentd_core::agent::Agent;
use agentd_core::{AgentId, TenantId};
use agentd_store::{SealedIdentity, Store};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

use crate::registry::{load_agent, load_live_agent};
use crate::secrets::{verify_ed25519, MasterKey, SigningKey};
use crate::Error;

/// The signature algorithm of agent identities, as the faces name it.
pub const ALGORITHM: &str = "Ed25519";
/// Bytes of an Ed25519 public key.
const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;

/// An agent's signature of a payload.
#[derive(Clone, Debug)]
pub struct Signature {
    pub agent_id: AgentId,
    /// The signing agent's public key, base64.
    pub public_key: String,
    /// The 64-byte Ed25519 signature.
    pub signature: Vec<u8>,
}

/// What a verification is asked: the payload, the signature (base64) and who signed, by agent or by
/// public key (base64) or both.
#[derive(Clone, Debug)]
pub struct VerifyRequest {
    pub agent_id: Option<AgentId>,
    pub public_key: Option<String>,
    pub payload: Value,
    pub signature: String,
}

/// The outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Whether the signature is the key's signature of the payload (and, when both an agent and a
    /// public key were named, the key is that agent's).
    pub valid: bool,
    /// The agent named, or the tenant's agent holding the public key, if any.
    pub agent_id: Option<AgentId>,
    /// The public key checked against, base64.
    pub public_key: String,
}

/// Makes, keeps and uses agent identities.
pub struct IdentityService {
    store: Arc<dyn Store>,
    master_key: Arc<MasterKey>,
}

impl IdentityService {
    pub fn new(store: Arc<dyn Store>, master_key: Arc<MasterKey>) -> Self {
        Self { store, master_key }
    }

    /// A fresh identity for `agent`, its private key sealed for the store.
    pub fn mint(&self, agent: AgentId) -> Result<SealedIdentity, Error> {
        let key = SigningKey::generate()?;
        Ok(SealedIdentity {
            public_key: key.public_key_base64(),
            sealed_private_key: self.master_key.seal(&seal_context(agent), key.pkcs8())?,
        })
    }

    /// The agent's public key (base64), giving the agent an identity first if it has none.
    pub async fn public_key(&self, agent: &Agent) -> Result<String, Error> {
        match &agent.public_key {
            Some(public_key) => Ok(public_key.clone()),
            None => Ok(self.stored_or_new(agent).await?.public_key),
        }
    }

    /// Signs `payload` as the agent. A terminated agent signs nothing more.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant, agent.id = %agent_id))]
    pub async fn sign(
        &self,
        tenant: TenantId,
        agent_id: AgentId,
        payload: &Value,
    ) -> Result<Signature, Error> {
        let agent = load_live_agent(self.store.as_ref(), tenant, agent_id, "sign for").await?;
        let identity = match self.store.get_agent_identity(tenant, agent.id).await? {
            Some(identity) => identity,
            None => self.stored_or_new(&agent).await?,
        };
        let pkcs8 = self
            .master_key
            .open(&seal_context(agent.id), &identity.sealed_private_key)?;
        let key = SigningKey::from_pkcs8(&pkcs8)?;
        Ok(Signature {
            agent_id: agent.id,
            public_key: key.public_key_base64(),
            signature: key.sign(&payload_bytes(payload)),
        })
    }

    /// Checks a signature against an agent of the tenant (an unknown one is `NotFound`) or a public
    /// key. A malformed public key or signature is an input error naming the field; a well-formed
    /// signature that does not match is `valid: false`.
    pub async fn verify(
        &self,
        tenant: TenantId,
        request: VerifyRequest,
    ) -> Result<Verification, Error> {
        let signature = decode_base64("signature", &request.signature, SIGNATURE_LEN)?;
        let claimed = request
            .public_key
            .as_deref()
            .map(|text| decode_base64("public_key", text, PUBLIC_KEY_LEN))
            .transpose()?;
        let (agent_id, public_key) = match (request.agent_id, claimed) {
            (Some(agent_id), claimed) => {
                let agent = load_agent(self.store.as_ref(), tenant, agent_id).await?;
                let stored = decode_base64("public_key", &self.public_key(&agent).await?, 0)?;
                // A public key named beside the agent must be the agent's.
                let matches = claimed.as_ref().is_none_or(|claimed| *claimed == stored);
                if !matches {
                    return Ok(Verification {
                        valid: false,
                        agent_id: Some(agent_id),
                        public_key: STANDARD.encode(&stored),
                    });
                }
                (Some(agent_id), stored)
            }
            (None, Some(claimed)) => {
                let agent_id = self
                    .store
                    .find_agent_by_public_key(tenant, &STANDARD.encode(&claimed))
                    .await?;
                (agent_id, claimed)
            }
            (None, None) => {
                return Err(Error::invalid(
                    "agent_id",
                    "name the signer: give `agent_id` or `public_key`",
                ))
            }
        };
        let valid = verify_ed25519(&public_key, &payload_bytes(&request.payload), &signature);
        Ok(Verification {
            valid,
            agent_id,
            public_key: STANDARD.encode(&public_key),
        })
    }

    /// The agent's stored identity, or a new one stored now. When another request stores one first,
    /// that one is returned.
    async fn stored_or_new(&self, agent: &Agent) -> Result<SealedIdentity, Error> {
        let minted = self.mint(agent.id)?;
        if self
            .store
            .set_agent_identity(agent.tenant_id, agent.id, &minted)
            .await?
        {
            tracing::info!(agent.id = %agent.id, "agent identity created (first use)");
            return Ok(minted);
        }
        self.store
            .get_agent_identity(agent.tenant_id, agent.id)
            .await?
            .ok_or(Error::NotFound("agent"))
    }
}

/// The context an agent's private key is sealed under, so a sealed key cannot be moved to another
/// agent's row.
fn seal_context(agent: AgentId) -> String {
    format!("agent:{agent}")
}

/// The bytes signed for a payload: a string's UTF-8 bytes as given; any other JSON value's
/// [`canonical_json`].
pub fn payload_bytes(payload: &Value) -> Vec<u8> {
    match payload {
        Value::String(text) => text.as_bytes().to_vec(),
        other => canonical_json(other).into_bytes(),
    }
}

/// A JSON value's canonical text: object members sorted by key (by UTF-16 code units, as RFC 8785
/// does), no whitespace, strings escaped as RFC 8785 escapes them. Numbers are written as serde_json
/// writes them, which matches RFC 8785 for integers and for most decimals (`1.0` stays `1.0`).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut members: Vec<(&String, &Value)> = members.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (index, (key, member)) in members.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Decodes base64 (standard or URL-safe, padded or not; an `ed25519:` prefix is allowed on keys) of
/// `length` bytes (any length when 0); anything else is an input error naming `field`.
fn decode_base64(field: &str, text: &str, length: usize) -> Result<Vec<u8>, Error> {
    let text = text.trim();
    let text = text.strip_prefix("ed25519:").unwrap_or(text);
    let bytes = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| Error::invalid(field, "must be base64"))?;
    if length != 0 && bytes.len() != length {
        return Err(Error::invalid(
            field,
            format!(
                "must be {length} bytes (an Ed25519 {}), not {}",
                if length == SIGNATURE_LEN {
                    "signature"
                } else {
                    "public key"
                },
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_members_and_drops_whitespace() {
        let value = json!({"b": [1, {"z": null, "a": true}], "a": "x\ny", "é": 1, "\u{1F600}": 2});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":"x\ny","b":[1,{"a":true,"z":null}],"é":1,"😀":2}"#
        );
        // The same value written in another order signs the same bytes.
        let reordered =
            json!({"é": 1, "a": "x\ny", "\u{1F600}": 2, "b": [1, {"a": true, "z": null}]});
        assert_eq!(payload_bytes(&value), payload_bytes(&reordered));
    }

    #[test]
    fn a_string_payload_is_signed_as_given() {
        assert_eq!(payload_bytes(&json!(" {\"b\":1} ")), b" {\"b\":1} ");
    }

    #[test]
    fn malformed_base64_names_its_field() {
        let error = decode_base64("signature", "not base64!", 64).unwrap_err();
        assert_eq!(error.field(), Some("signature"));
        let error = decode_base64("public_key", &STANDARD.encode([1u8; 31]), 32).unwrap_err();
        assert!(error.to_string().contains("32 bytes"), "{error}");
        let key = [7u8; 32];
        for text in [
            STANDARD.encode(key),
            URL_SAFE_NO_PAD.encode(key),
            format!("ed25519:{}", STANDARD.encode(key)),
        ] {
            assert_eq!(decode_base64("public_key", &text, 32).unwrap(), key);
        }
    }
}
