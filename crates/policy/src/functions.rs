//! The built-in list of dangerous PostgreSQL functions.

/// Dangerous functions (unqualified, lower case) and why each is flagged.
///
/// A call is flagged whatever schema qualifies it, so `pg_catalog.pg_read_file` and a
/// user function that shadows the name are both flagged.
pub const DANGEROUS_FUNCTIONS: &[(&str, &str)] = &[
    ("pg_read_file", "reads a file on the database server"),
    ("pg_read_binary_file", "reads a file on the database server"),
    ("pg_ls_dir", "lists a directory on the database server"),
    ("pg_ls_logdir", "lists a directory on the database server"),
    ("pg_ls_waldir", "lists a directory on the database server"),
    ("pg_ls_tmpdir", "lists a directory on the database server"),
    (
        "pg_ls_archive_statusdir",
        "lists a directory on the database server",
    ),
    ("pg_stat_file", "inspects a file on the database server"),
    ("pg_file_write", "writes a file on the database server"),
    ("pg_file_rename", "renames a file on the database server"),
    ("pg_file_unlink", "deletes a file on the database server"),
    ("lo_import", "reads a server file into a large object"),
    ("lo_export", "writes a large object to a server file"),
    ("lo_from_bytea", "creates a large object"),
    ("lo_put", "writes into a large object"),
    ("lo_create", "creates a large object"),
    ("lo_unlink", "deletes a large object"),
    ("dblink", "queries another database server"),
    ("dblink_exec", "runs a command on another database server"),
    (
        "dblink_connect",
        "opens a connection to another database server",
    ),
    (
        "dblink_connect_u",
        "opens a connection to another database server",
    ),
    ("dblink_send_query", "queries another database server"),
    ("dblink_open", "queries another database server"),
    ("pg_terminate_backend", "terminates another session"),
    ("pg_cancel_backend", "cancels another session's query"),
    ("pg_reload_conf", "reloads the server configuration"),
    ("pg_rotate_logfile", "rotates the server log"),
    ("pg_promote", "promotes a standby server"),
    ("pg_switch_wal", "forces a WAL switch"),
    ("pg_create_restore_point", "creates a WAL restore point"),
    ("pg_backup_start", "starts a base backup"),
    ("pg_backup_stop", "stops a base backup"),
    ("pg_start_backup", "starts a base backup"),
    ("pg_stop_backup", "stops a base backup"),
    (
        "pg_create_logical_replication_slot",
        "creates a replication slot",
    ),
    (
        "pg_create_physical_replication_slot",
        "creates a replication slot",
    ),
    ("pg_drop_replication_slot", "drops a replication slot"),
    ("pg_logical_emit_message", "writes a message into the WAL"),
    (
        "set_config",
        "changes a setting, possibly the role or search path",
    ),
    ("query_to_xml", "runs a query given as text"),
    ("query_to_xml_and_xmlschema", "runs a query given as text"),
    ("query_to_xmlschema", "runs a query given as text"),
    ("cursor_to_xml", "reads from a cursor given by name"),
    ("table_to_xml", "reads a table given as text"),
    ("table_to_xml_and_xmlschema", "reads a table given as text"),
    ("schema_to_xml", "reads a whole schema"),
    ("database_to_xml", "reads the whole database"),
    (
        "pg_advisory_lock",
        "takes a session-level lock that outlives the statement",
    ),
    ("pg_sleep", "slow: sleeps"),
    ("pg_sleep_for", "slow: sleeps"),
    ("pg_sleep_until", "slow: sleeps"),
];

/// Why the function named `name` (unqualified, normalized) is dangerous, if it is.
pub fn danger_of(name: &str) -> Option<&'static str> {
    if let Some((_, why)) = DANGEROUS_FUNCTIONS.iter().find(|(n, _)| *n == name) {
        return Some(why);
    }
    // Any other dblink entry point.
    if name.starts_with("dblink") {
        return Some("talks to another database server");
    }
    None
}
