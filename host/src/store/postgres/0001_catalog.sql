-- The catalog (API keys, handlers and their components, secrets, the audit trail) and
-- tenants' key-value buckets. Names and keys compare byte by byte, as in the embedded store.
CREATE TABLE jobhost_api_keys (
    id TEXT PRIMARY KEY,
    record JSONB NOT NULL
);

CREATE TABLE jobhost_handlers (
    id TEXT PRIMARY KEY,
    record JSONB NOT NULL
);

-- Component bytes by their SHA-256: written once, shared by every version that has them.
CREATE TABLE jobhost_components (
    sha256 BYTEA PRIMARY KEY,
    bytes BYTEA NOT NULL
);

-- Only sealed values (see the server's secret key).
CREATE TABLE jobhost_secrets (
    tenant TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    sealed BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- The entry's id is the row's; the stored entry's own id is ignored.
CREATE TABLE jobhost_audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry JSONB NOT NULL
);

CREATE TABLE jobhost_kv (
    tenant TEXT COLLATE "C" NOT NULL,
    bucket TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tenant, bucket, key)
);

-- What each tenant's buckets hold together; its row is locked by every write of the tenant,
-- so quotas hold under concurrent writers on every node.
CREATE TABLE jobhost_kv_usage (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
