//! The Denylist page, the console's home: the deny entries of the draft,
//! the add form, and the row actions, "Allow instead" among them.

use axum::{Extension, Router, body::Bytes, extract::State, response::Response, routing::post};

use super::{
    PageDef,
    entries::{self, ListPage},
};
use crate::{
    model::List,
    web::{app::App, auth::Ctx, form::Fields},
};

static DENY: ListPage = ListPage {
    list: List::Deny,
    path: "/denylist",
    title: "Denylist",
};

pub const PAGE: PageDef = PageDef {
    path: "/denylist",
    title: "Denylist",
    routes,
};

fn routes() -> Router<App> {
    entries::routes(&DENY).route("/denylist/allow-instead", post(allow_instead))
}

async fn allow_instead(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    body: Bytes,
) -> Response {
    entries::allow_instead(&app, &ctx, &Fields::parse(&body), DENY.path).await
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::web::testing::{Browser, FakeDaemon};

    #[tokio::test]
    async fn the_denylist_shows_rows_escaped_with_their_actions() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/denylist").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        // The reason is text, never markup.
        assert!(
            html.contains("&#60;img src=x onerror=alert(1)&#62;")
                || html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(!html.contains("<img src=x"), "{html}");
        for name in [
            "Address",
            "Reason",
            "TTL",
            "Monitor only",
            ">Add<",
            "Search",
            "Sign out",
        ] {
            assert!(html.contains(name), "{name} missing");
        }
        assert!(
            html.contains(r#"aria-label="Remove 198.51.100.7""#),
            "{html}"
        );
        assert!(html.contains("1 pending change"), "{html}");
        assert!(html.contains("Save and Deploy"));
        // The page asked the daemon for the draft's first page of deny entries.
        let asked = fake
            .requests()
            .into_iter()
            .find(|s| s.uri.starts_with("/v1/entries/page"))
            .unwrap();
        assert!(asked.uri.contains("list=deny"), "{}", asked.uri);
        assert!(asked.uri.contains("limit=50"), "{}", asked.uri);
    }

    #[tokio::test]
    async fn search_and_filters_reach_the_daemon_and_a_bad_search_is_inline() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, _) = b
            .get("/denylist?search=203.0.113.7&source=feed%3Aspamhaus&mode=monitor&expiring=yes&sort=expires_at&desc=on")
            .await;
        assert_eq!(status, StatusCode::OK);
        let asked = fake
            .requests()
            .into_iter()
            .rfind(|s| s.uri.starts_with("/v1/entries/page"))
            .unwrap();
        for part in [
            "contains=203.0.113.7",
            "source=feed%3Aspamhaus",
            "mode=monitor",
            "expiring=true",
            "sort=expires_at",
            "desc=true",
        ] {
            assert!(asked.uri.contains(part), "{part} not in {}", asked.uri);
        }
        let (status, html) = b.get("/denylist?search=not-an-ip").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("Search takes an IP address"), "{html}");
    }

    #[tokio::test]
    async fn add_stages_and_a_guardrail_refusal_offers_force() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, _) = b
            .post(
                "/denylist/add",
                &[
                    ("address", "192.0.2.7"),
                    ("reason", "scan"),
                    ("ttl", "24h"),
                    ("monitor", "on"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let sent = fake.posts().pop().unwrap();
        assert_eq!(sent.uri, "/v1/entries");
        assert_eq!(sent.body["entries"][0]["target"], "192.0.2.7");
        assert_eq!(sent.body["entries"][0]["monitor"], true);
        assert_eq!(sent.body["force"], false);

        // Invalid input never reaches the daemon, and shows by its field.
        let (status, html) = b.post("/denylist/add", &[("address", "192.0.2.300")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains(r#"id="add-error""#), "{html}");
        assert_eq!(fake.posts().len(), 1);

        fake.fail(
            Method::POST,
            "/v1/entries",
            422,
            "guarded",
            "192.0.2.0/24 covers your own address",
        );
        let (status, html) = b
            .post("/denylist/add", &[("address", "192.0.2.0/24")])
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("covers your own address"), "{html}");
        assert!(html.contains(">Force<"), "{html}");
    }

    #[tokio::test]
    async fn trash_bulk_remove_and_allow_instead_stage_what_they_say() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, _) = b
            .post("/denylist/remove", &[("target", "198.51.100.7")])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let sent = fake.posts().pop().unwrap();
        assert_eq!(sent.uri, "/v1/entries/remove");
        assert_eq!(sent.body["targets"], serde_json::json!(["198.51.100.7"]));
        assert!(sent.body.get("source").is_none());

        b.post(
            "/denylist/remove",
            &[
                ("target", "198.51.100.7"),
                ("target", "203.0.113.0/24 feed:spamhaus"),
            ],
        )
        .await;
        let posts = fake.posts();
        let last_two = &posts[posts.len() - 2..];
        assert_eq!(last_two[1].body["source"], "feed:spamhaus");

        let (status, _) = b
            .post(
                "/denylist/allow-instead",
                &[("target", "203.0.113.0/24"), ("source", "feed:spamhaus")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let posts = fake.posts();
        let (allow, remove) = (&posts[posts.len() - 2], &posts[posts.len() - 1]);
        assert_eq!(allow.body["entries"][0]["list"], "allow");
        assert_eq!(
            remove.body["targets"],
            serde_json::json!(["203.0.113.0/24"])
        );
        assert_eq!(remove.body["source"], "feed:spamhaus");
    }

    #[tokio::test]
    async fn bulk_add_previews_then_stages_only_what_passes() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        fake.set(
            Method::POST,
            "/v1/entries",
            200,
            serde_json::json!({"seq": null, "added": 1, "removed": 0, "changed": 0, "targets": [],
                "warnings": [], "refused": [{"target": "10.0.0.0/8", "reason": "too wide"}]}),
        );
        let lines = "192.0.2.1\nbogus\n10.0.0.0/8\n";
        let (status, html) = b.post("/denylist/bulk", &[("lines", lines)]).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("1 valid, 1 invalid, 1 refused"), "{html}");
        assert_eq!(fake.posts().pop().unwrap().body["dry_run"], true);

        b.post("/denylist/bulk", &[("lines", lines), ("stage", "on")])
            .await;
        let staged = fake.posts().pop().unwrap();
        assert_eq!(staged.body["dry_run"], false);
        assert_eq!(staged.body["entries"].as_array().unwrap().len(), 1);
        assert_eq!(staged.body["entries"][0]["target"], "192.0.2.1");
    }

    #[tokio::test]
    async fn a_viewer_sees_no_change_controls_and_the_daemon_refuses_their_post() {
        let fake = FakeDaemon::start().await;
        let b = Browser::viewer(&fake).await;
        let (status, html) = b.get("/denylist").await;
        assert_eq!(status, StatusCode::OK);
        for control in [
            "Save and Deploy",
            ">Discard<",
            ">Add<",
            "Remove 198.51.100.7",
            "Allow instead",
        ] {
            assert!(!html.contains(control), "{control} shown to a viewer");
        }
        assert!(html.contains(">Review<"));
        let (status, html) = b.post("/denylist/add", &[("address", "192.0.2.7")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        assert_eq!(fake.posts().pop().unwrap().role.as_deref(), Some("viewer"));
    }
}
