//! A real headless browser for the web-page tests: Debian's `chromium` (installed by
//! `scripts/ensure-chromium`, which the test command runs), or the binary `SMPX_CHROMIUM`
//! names.
//!
//! Each call runs one Chromium process with its own throw-away profile, so tests in parallel
//! do not share state, and waits for it under a deadline. [`Browser::dom`] is the document
//! after the browser parsed and laid it out (`--dump-dom`); [`Browser::screenshot`] saves a
//! PNG at a phone's viewport. Pages are loaded from loopback only.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long one page load may take before the test fails (a cold Chromium start on a loaded
/// 2-core machine takes a few seconds).
const DEADLINE: Duration = Duration::from_secs(90);

/// A phone's viewport in CSS pixels (a common 6.1" phone).
pub const PHONE: (u32, u32) = (390, 844);

/// The browser binary.
pub struct Browser {
    binary: PathBuf,
}

impl Browser {
    /// Finds Chromium, or fails saying how to install it.
    pub fn find() -> Result<Browser> {
        if let Ok(path) = std::env::var("SMPX_CHROMIUM") {
            return Ok(Browser {
                binary: PathBuf::from(path),
            });
        }
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            for name in ["chromium", "chromium-browser", "google-chrome"] {
                let p = Path::new(dir).join(name);
                if p.is_file() {
                    return Ok(Browser { binary: p });
                }
            }
        }
        bail!("no Chromium on this machine: run scripts/ensure-chromium (the test command does)")
    }

    async fn run(&self, url: &str, extra: &[String]) -> Result<std::process::Output> {
        if !(url.starts_with("http://127.0.0.1:") || url.starts_with("http://[::1]:")) {
            bail!("the test browser loads loopback pages only, not {url}");
        }
        let profile = tempfile::tempdir()?;
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("--headless")
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg("--disable-background-networking")
            .arg("--disable-component-update")
            .arg("--disable-sync")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(DEADLINE, cmd.output())
            .await
            .with_context(|| format!("chromium did not finish loading {url} in {DEADLINE:?}"))?
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "chromium failed on {url} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// The page's DOM after Chromium loaded it, as HTML.
    pub async fn dom(&self, url: &str) -> Result<String> {
        let out = self
            .run(url, &["--dump-dom".to_string(), window(PHONE)])
            .await?;
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Saves a PNG of the page at `viewport` to `path`, and checks it is a PNG.
    pub async fn screenshot(&self, url: &str, path: &Path, viewport: (u32, u32)) -> Result<()> {
        self.run(
            url,
            &[
                format!("--screenshot={}", path.display()),
                window(viewport),
                "--hide-scrollbars".to_string(),
            ],
        )
        .await?;
        let bytes = std::fs::read(path)
            .with_context(|| format!("chromium wrote no screenshot at {}", path.display()))?;
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            bail!("{} is not a PNG", path.display());
        }
        Ok(())
    }
}

fn window((w, h): (u32, u32)) -> String {
    format!("--window-size={w},{h}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_browser_renders_a_loopback_page_and_refuses_others() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                axum::response::Html("<!doctype html><p id=\"x\">hello</p><script>document.getElementById('x').textContent='from script'</script>")
            }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let b = Browser::find().unwrap();
        let url = format!("http://{addr}/");
        // The DOM is the browser's (the script ran), not the bytes served.
        assert!(b.dom(&url).await.unwrap().contains("from script"));
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("page.png");
        b.screenshot(&url, &png, PHONE).await.unwrap();
        assert!(b.dom("http://example.com/").await.is_err());
        server.abort();
    }
}
