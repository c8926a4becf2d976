"""Schema migrations, applied in order; `PRAGMA user_version` records how many have run."""

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        bridge TEXT NOT NULL UNIQUE,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        ip_range TEXT,
        aux_addresses TEXT NOT NULL,
        internal INTEGER NOT NULL,
        mtu INTEGER NOT NULL,
        icc INTEGER NOT NULL,
        masquerade INTEGER NOT NULL,
        labels TEXT NOT NULL,
        options TEXT NOT NULL,
        ipam_options TEXT,
        created TEXT NOT NULL,
        last_ip INTEGER
    );
    CREATE TABLE workloads (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,
        runtime TEXT NOT NULL,
        state TEXT NOT NULL,
        command TEXT NOT NULL,
        env TEXT NOT NULL,
        hostname TEXT NOT NULL,
        labels TEXT NOT NULL,
        created TEXT NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,
        workload_id TEXT NOT NULL REFERENCES workloads(id) ON DELETE CASCADE,
        network_id TEXT NOT NULL REFERENCES networks(id),
        ip INTEGER NOT NULL,
        mac TEXT NOT NULL,
        host_ifname TEXT NOT NULL UNIQUE,
        position INTEGER NOT NULL,
        aliases TEXT NOT NULL,
        static_ip INTEGER NOT NULL,
        UNIQUE (network_id, ip),
        UNIQUE (workload_id, network_id)
    );
    CREATE TABLE port_mappings (
        workload_id TEXT NOT NULL REFERENCES workloads(id) ON DELETE CASCADE,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        guest_port INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        UNIQUE (host_ip, host_port, protocol)
    );
    """,
    """
    ALTER TABLE workloads ADD COLUMN auto_remove INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workloads ADD COLUMN restart TEXT NOT NULL DEFAULT 'no';
    ALTER TABLE workloads ADD COLUMN pid INTEGER;
    ALTER TABLE workloads ADD COLUMN pid_start INTEGER;
    ALTER TABLE workloads ADD COLUMN main_pid INTEGER;
    ALTER TABLE workloads ADD COLUMN exit_code INTEGER;
    ALTER TABLE workloads ADD COLUMN started_at TEXT NOT NULL DEFAULT '';
    ALTER TABLE workloads ADD COLUMN finished_at TEXT NOT NULL DEFAULT ''
    """,
    """
    ALTER TABLE workloads ADD COLUMN cpus REAL NOT NULL DEFAULT 1.0;
    ALTER TABLE workloads ADD COLUMN memory_mb INTEGER NOT NULL DEFAULT 256
    """,
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        size INTEGER NOT NULL,
        created TEXT NOT NULL,
        pulled TEXT NOT NULL
    );
    CREATE TABLE image_tags (
        ref TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tagged TEXT NOT NULL
    );
    CREATE TABLE image_digests (
        ref TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        layout_tag TEXT NOT NULL
    );
    ALTER TABLE workloads ADD COLUMN image_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE workloads ADD COLUMN user TEXT NOT NULL DEFAULT '';
    ALTER TABLE workloads ADD COLUMN workdir TEXT NOT NULL DEFAULT '';
    ALTER TABLE workloads ADD COLUMN stop_signal TEXT NOT NULL DEFAULT '';
    ALTER TABLE workloads ADD COLUMN entrypoint TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE workloads ADD COLUMN exposed_ports TEXT NOT NULL DEFAULT '[]'
    """,
    """
    ALTER TABLE endpoints ADD COLUMN gw_priority INTEGER NOT NULL DEFAULT 0
    """,
    """
    ALTER TABLE workloads ADD COLUMN resolver TEXT NOT NULL DEFAULT '{}'
    """,
    """
    ALTER TABLE workloads ADD COLUMN confinement TEXT NOT NULL DEFAULT '{}'
    """,
    """
    ALTER TABLE workloads ADD COLUMN network_mode TEXT NOT NULL DEFAULT '';
    ALTER TABLE workloads ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workloads ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE endpoints ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE networks ADD COLUMN attachable INTEGER NOT NULL DEFAULT 0
    """,
    # IPv6 (dual-stack networks). Addresses are stored as text: SQLite integers are 64-bit. `last_ip6` is the
    # allocation cursor (next-after-last); the unique index keeps one owner per address (NULLs never clash).
    """
    ALTER TABLE networks ADD COLUMN subnet6 TEXT;
    ALTER TABLE networks ADD COLUMN gateway6 TEXT;
    ALTER TABLE networks ADD COLUMN ip_range6 TEXT;
    ALTER TABLE networks ADD COLUMN routed6 INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE networks ADD COLUMN last_ip6 TEXT;
    ALTER TABLE endpoints ADD COLUMN ip6 TEXT;
    ALTER TABLE endpoints ADD COLUMN static_ip6 INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX endpoints_ip6 ON endpoints (network_id, ip6)
    """,
    """
    ALTER TABLE workloads ADD COLUMN stdio TEXT NOT NULL DEFAULT '{}'
    """,
    # IPv6-only networks: the IPv4 subnet, gateway and endpoint address become optional. SQLite cannot drop NOT
    # NULL, so both tables are rebuilt (in the migration's one transaction, every row kept). The endpoints go to a
    # plain copy first: while they exist, dropping `networks` would break their foreign key.
    """
    CREATE TABLE networks_new (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        bridge TEXT NOT NULL UNIQUE,
        subnet TEXT,
        gateway TEXT,
        ip_range TEXT,
        aux_addresses TEXT NOT NULL,
        internal INTEGER NOT NULL,
        mtu INTEGER NOT NULL,
        icc INTEGER NOT NULL,
        masquerade INTEGER NOT NULL,
        labels TEXT NOT NULL,
        options TEXT NOT NULL,
        ipam_options TEXT,
        created TEXT NOT NULL,
        last_ip INTEGER,
        attachable INTEGER NOT NULL DEFAULT 0,
        subnet6 TEXT,
        gateway6 TEXT,
        ip_range6 TEXT,
        routed6 INTEGER NOT NULL DEFAULT 0,
        last_ip6 TEXT
    );
    INSERT INTO networks_new (id, name, driver, bridge, subnet, gateway, ip_range, aux_addresses, internal, mtu, icc,
        masquerade, labels, options, ipam_options, created, last_ip, attachable, subnet6, gateway6, ip_range6,
        routed6, last_ip6)
        SELECT id, name, driver, bridge, subnet, gateway, ip_range, aux_addresses, internal, mtu, icc, masquerade,
        labels, options, ipam_options, created, last_ip, attachable, subnet6, gateway6, ip_range6, routed6, last_ip6
        FROM networks;
    CREATE TABLE endpoints_old AS SELECT * FROM endpoints;
    DROP TABLE endpoints;
    DROP TABLE networks;
    ALTER TABLE networks_new RENAME TO networks;
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,
        workload_id TEXT NOT NULL REFERENCES workloads(id) ON DELETE CASCADE,
        network_id TEXT NOT NULL REFERENCES networks(id),
        ip INTEGER,
        mac TEXT NOT NULL,
        host_ifname TEXT NOT NULL UNIQUE,
        position INTEGER NOT NULL,
        aliases TEXT NOT NULL,
        static_ip INTEGER NOT NULL,
        gw_priority INTEGER NOT NULL DEFAULT 0,
        settings TEXT NOT NULL DEFAULT '{}',
        ip6 TEXT,
        static_ip6 INTEGER NOT NULL DEFAULT 0,
        UNIQUE (network_id, ip),
        UNIQUE (workload_id, network_id)
    );
    INSERT INTO endpoints (id, workload_id, network_id, ip, mac, host_ifname, position, aliases, static_ip,
        gw_priority, settings, ip6, static_ip6)
        SELECT id, workload_id, network_id, ip, mac, host_ifname, position, aliases, static_ip, gw_priority,
        settings, ip6, static_ip6 FROM endpoints_old;
    DROP TABLE endpoints_old;
    CREATE UNIQUE INDEX endpoints_ip6 ON endpoints (network_id, ip6)
    """,
    # The host port as asked (Docker's HostConfig.PortBindings): "" for any free one, "8000-8010" for the first
    # free one of a range; NULL for rows made before it was kept (shown as the port chosen).
    """
    ALTER TABLE port_mappings ADD COLUMN requested TEXT
    """,
    # Docker's RestartPolicy.MaximumRetryCount (0: no limit) and RestartCount (restarts since the last start asked for).
    """
    ALTER TABLE workloads ADD COLUMN restart_max INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE workloads ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0
    """,
    # Docker's HasBeenManuallyStopped: stopped (or killed) by the user, set until the next start; the restart
    # policies applied when hyprd starts read it (unless-stopped and on-failure leave such a workload stopped).
    """
    ALTER TABLE workloads ADD COLUMN stopped_by_user INTEGER NOT NULL DEFAULT 0
    """,
)
