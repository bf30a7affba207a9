//! The example handlers built from `plugins/examples`, embedded so that `jobhost serve
//! --examples` can deploy them into the default tenant.

/// (job type, component bytes) of each example.
pub const EXAMPLES: [(&str, &[u8]); 3] = [
    (
        "echo",
        include_bytes!(concat!(env!("JOBHOST_PLUGINS_DIR"), "/echo.wasm")),
    ),
    (
        "flaky",
        include_bytes!(concat!(env!("JOBHOST_PLUGINS_DIR"), "/flaky.wasm")),
    ),
    (
        "fanout",
        include_bytes!(concat!(env!("JOBHOST_PLUGINS_DIR"), "/fanout.wasm")),
    ),
];
