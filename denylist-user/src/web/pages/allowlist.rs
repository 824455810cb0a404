//! The Allowlist page: the allow entries of the draft, with the same
//! table, filters and forms as the Denylist.

use axum::Router;

use super::{
    PageDef,
    entries::{self, ListPage},
};
use crate::{model::List, web::app::App};

static ALLOW: ListPage = ListPage {
    list: List::Allow,
    path: "/allowlist",
    title: "Allowlist",
};

pub const PAGE: PageDef = PageDef {
    path: "/allowlist",
    title: "Allowlist",
    routes,
};

fn routes() -> Router<App> {
    entries::routes(&ALLOW)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use crate::web::testing::{Browser, FakeDaemon};

    #[tokio::test]
    async fn the_allowlist_asks_for_allow_entries_and_adds_to_them() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/allowlist").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(!html.contains("Monitor only"), "allow entries have no mode");
        assert!(!html.contains("Allow instead"));
        let asked = fake
            .requests()
            .into_iter()
            .find(|s| s.uri.starts_with("/v1/entries/page"))
            .unwrap();
        assert!(asked.uri.contains("list=allow"), "{}", asked.uri);
        b.post(
            "/allowlist/add",
            &[("address", "192.0.2.10"), ("reason", "monitoring")],
        )
        .await;
        let sent = fake.posts().pop().unwrap();
        assert_eq!(sent.body["entries"][0]["list"], "allow");
        assert!(sent.body["entries"][0].get("monitor").is_none());
    }
}
