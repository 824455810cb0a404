//! The console's pages. This list is the navigation and the router: a new
//! page is a module here with its route(s), one template and its test, and
//! one line in [`PAGES`].

use axum::Router;

use super::app::App;

mod allowlist;
mod audit;
mod auto;
mod bulk;
mod check;
mod denylist;
mod entries;
mod feeds;
mod history;
mod nodes;
mod reports;
mod status;
mod top;

/// A page of the navigation.
pub struct PageDef {
    /// Where it is, and the prefix of its actions.
    pub path: &'static str,
    /// Its link text and heading.
    pub title: &'static str,
    /// Its routes.
    pub routes: fn() -> Router<App>,
}

/// Every page, in navigation order; the first is the home page.
pub const PAGES: &[PageDef] = &[
    denylist::PAGE,
    allowlist::PAGE,
    check::PAGE,
    history::PAGE,
    audit::PAGE,
    feeds::PAGE,
    reports::PAGE,
    top::PAGE,
    auto::PAGE,
    nodes::PAGE,
    status::PAGE,
];

pub fn routes() -> Router<App> {
    PAGES
        .iter()
        .fold(Router::new(), |r, page| r.merge((page.routes)()))
}

/// Whether `path` is one of the pages: a form's "come back here" field is
/// followed only then, so it cannot send the browser elsewhere.
pub fn is_page(path: &str) -> bool {
    PAGES.iter().any(|p| p.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_its_own_path_and_title() {
        let mut paths: Vec<_> = PAGES.iter().map(|p| p.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), PAGES.len());
        assert!(
            PAGES
                .iter()
                .all(|p| p.path.starts_with('/') && !p.title.is_empty())
        );
        assert!(is_page("/denylist"));
        assert!(!is_page("https://evil.example/"));
    }
}
