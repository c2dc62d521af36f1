//! The page and its assets, embedded in the binary. Asset URLs carry a hash of their
//! content (`/dashboard/assets/<hash>/<name>`), so they can be cached for a year and a
//! new build is never served an old file; the page itself is never cached.

use std::sync::LazyLock;

use md5::{Digest, Md5};

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// Hex MD5 of `bytes`: the URL's version and the `ETag`.
    pub hash: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        Self {
            name,
            content_type,
            bytes,
            hash: format!("{:x}", Md5::digest(bytes)),
        }
    }

    /// Its versioned URL.
    pub fn url(&self) -> String {
        format!("/dashboard/assets/{}/{}", &self.hash[..12], self.name)
    }
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every asset the page loads (uPlot vendored from its npm package, with its licence).
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new(
            "uPlot.iife.min.js",
            JS,
            include_bytes!("../../assets/dashboard/vendor/uPlot.iife.min.js"),
        ),
        Asset::new(
            "uPlot.min.css",
            CSS,
            include_bytes!("../../assets/dashboard/vendor/uPlot.min.css"),
        ),
        Asset::new(
            "uPlot.LICENSE.txt",
            "text/plain; charset=utf-8",
            include_bytes!("../../assets/dashboard/vendor/uPlot.LICENSE"),
        ),
        Asset::new(
            "dashboard.js",
            JS,
            include_bytes!("../../assets/dashboard/dashboard.js"),
        ),
        Asset::new(
            "dashboard.css",
            CSS,
            include_bytes!("../../assets/dashboard/dashboard.css"),
        ),
        Asset::new(
            "favicon.svg",
            "image/svg+xml",
            include_bytes!("../../assets/dashboard/favicon.svg"),
        ),
    ]
});

/// The asset `name` if `version` is its current one.
pub fn find(version: &str, name: &str) -> Option<&'static Asset> {
    ASSETS
        .iter()
        .find(|a| a.name == name && a.hash.starts_with(version) && version.len() == 12)
}

/// The page, with its asset URLs filled in (`{{name}}` in the template).
pub static PAGE: LazyLock<String> = LazyLock::new(|| {
    ASSETS.iter().fold(
        include_str!("../../assets/dashboard/index.html").to_owned(),
        |page, a| page.replace(&format!("{{{{{}}}}}", a.name), &a.url()),
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Every asset the page names is filled in and found at its URL.
    #[test]
    fn the_page_links_every_asset_by_version() {
        assert!(!PAGE.contains("{{"), "a placeholder is left");
        for asset in ASSETS.iter() {
            let url = asset.url();
            assert!(PAGE.contains(&url), "{url} not on the page");
            let (version, name) = url
                .trim_start_matches("/dashboard/assets/")
                .split_once('/')
                .unwrap();
            assert!(find(version, name).is_some());
            assert!(find("000000000000", name).is_none());
        }
    }
}
