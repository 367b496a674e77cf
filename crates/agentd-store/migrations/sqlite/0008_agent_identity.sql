-- Agent identities and agent keys. Each agent has an Ed25519 key pair: the public key in clear (base64)
-- and the PKCS#8 private key sealed with the master key (ChaCha20-Poly1305, bound to `agent:<id>`), so
-- the database alone never holds a usable private key. Agents made before this migration have neither
-- until one is first needed (the identity service fills both with a compare-and-set on NULL).
ALTER TABLE agents ADD COLUMN public_key TEXT;
ALTER TABLE agents ADD COLUMN sealed_private_key TEXT;
CREATE INDEX agents_by_public_key ON agents (tenant_id, public_key);

-- An agent key is an API key bound to one agent; it goes when the agent row goes.
ALTER TABLE api_keys ADD COLUMN agent_id TEXT REFERENCES agents (id) ON DELETE CASCADE;
CREATE INDEX api_keys_by_agent ON api_keys (tenant_id, agent_id, id);
