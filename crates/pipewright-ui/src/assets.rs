//! The UI's files, embedded in the binary: no build step and no request leaves the server.

/// An embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its bytes.
    pub body: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "pipeline.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/pipeline.js"),
    ),
    (
        "job.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/job.js"),
    ),
    (
        "build.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/build.js"),
    ),
    (
        "stats.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/stats.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

/// The file named `name` (`index.html`, `app.js`…), if the UI has one.
pub fn asset(name: &str) -> Option<Asset> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, content_type, body)| Asset { body, content_type })
}

/// Every file's name, for tests and page-weight figures.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(n, _, _)| *n)
}
