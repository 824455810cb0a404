//! The table of entries that the Denylist and Allowlist pages share: one
//! page of the draft at a time (the daemon pages, filters and sorts it,
//! so 1M entries cost no more than 50), the add form, the row actions
//! (remove, allow instead) and bulk removal. Bulk add is in `bulk.rs`.

use std::net::IpAddr;

use askama::Template;
use axum::{
    Extension, Router,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{bulk, is_page};
use crate::{
    model::{List, Target, is_admin_source, parse_duration},
    web::{
        app::App,
        auth::Ctx,
        form::Fields,
        render::{Layout, failure, render},
        view,
    },
    wire::{
        AddRequest, ApiError, Class, EntryPage, PageEntry, Pending, RemoveRequest, StageItem,
        StageResponse,
    },
};

/// One of the two lists, as a page.
pub struct ListPage {
    pub list: List,
    pub path: &'static str,
    pub title: &'static str,
}

impl ListPage {
    /// Deny entries have a mode and an "Allow instead"; allow entries not.
    pub fn is_deny(&self) -> bool {
        self.list == List::Deny
    }
}

/// The filters and position of a page, from its query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filters {
    /// An address: entries whose target contains it.
    pub search: Option<String>,
    pub source: Option<String>,
    /// `enforce` or `monitor`.
    pub mode: Option<String>,
    /// `yes` or `no`.
    pub expiring: Option<String>,
    pub reason: Option<String>,
    /// `target`, `expires_at` or `added_at`.
    pub sort: Option<String>,
    pub desc: Option<String>,
    pub cursor: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Filters {
    /// The daemon's query for these filters, or what is wrong with them.
    fn query(&self, list: List, limit: u32) -> Result<String, String> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("list", list.as_str());
        q.append_pair("limit", &limit.to_string());
        if let Some(s) = given(&self.search) {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| format!("Search takes an IP address; {s:?} is not one."))?;
            q.append_pair("contains", &ip.to_string());
        }
        if let Some(s) = given(&self.source) {
            q.append_pair("source", s);
        }
        match given(&self.mode) {
            Some(m @ ("enforce" | "monitor")) => {
                q.append_pair("mode", m);
            }
            Some(m) => return Err(format!("Unknown mode {m:?}.")),
            None => {}
        }
        match given(&self.expiring) {
            Some("yes") => {
                q.append_pair("expiring", "true");
            }
            Some("no") => {
                q.append_pair("expiring", "false");
            }
            Some(e) => return Err(format!("Unknown expiry filter {e:?}.")),
            None => {}
        }
        if let Some(r) = given(&self.reason) {
            q.append_pair("reason", r);
        }
        match given(&self.sort) {
            Some(s @ ("target" | "expires_at" | "added_at")) => {
                q.append_pair("sort", s);
            }
            Some(s) => return Err(format!("Unknown sort {s:?}.")),
            None => {}
        }
        if given(&self.desc).is_some() {
            q.append_pair("desc", "true");
        }
        if let Some(c) = given(&self.cursor) {
            q.append_pair("cursor", c);
        }
        Ok(q.finish())
    }

    /// A link to `path` with these filters, `change` applied (`None`
    /// drops a filter) and no cursor: back to the first page.
    fn href(&self, path: &str, change: &[(&str, Option<&str>)]) -> String {
        let mut pairs: Vec<(&str, String)> = [
            ("search", &self.search),
            ("source", &self.source),
            ("mode", &self.mode),
            ("expiring", &self.expiring),
            ("reason", &self.reason),
            ("sort", &self.sort),
            ("desc", &self.desc),
        ]
        .into_iter()
        .filter_map(|(k, v)| given(v).map(|v| (k, v.to_string())))
        .collect();
        for (key, value) in change {
            pairs.retain(|(k, _)| k != key);
            if let Some(v) = value {
                pairs.push((key, v.to_string()));
            }
        }
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        let q = q.finish();
        if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{q}")
        }
    }

    fn is(&self, field: &Option<String>, value: &str) -> bool {
        given(field) == Some(value)
    }
}

/// A link to filter by.
pub struct Link {
    pub text: String,
    pub href: String,
}

/// One row as the table shows it.
pub struct Row {
    pub target: String,
    pub mode: &'static str,
    pub expires: String,
    pub sources: Vec<Link>,
    pub reason: Option<Link>,
    pub added_by: String,
    pub added_at: String,
    pub hits: String,
    pub last_hit: String,
    /// `add`, `remove` or `change`: the row's class and its label.
    pub pending: Option<&'static str>,
    /// What removing the row sends: `TARGET` or `TARGET SOURCE`.
    pub remove: String,
    /// The listing's source a removal takes, for "Allow instead".
    pub source: String,
}

/// The source whose listing a row's removal takes: the admins' own
/// listings when there are any (the daemon removes `manual` and
/// `import:*` together), else the first listing's.
fn removal_source(e: &PageEntry) -> Option<String> {
    let sources = &e.entry.sources;
    if sources.is_empty() || sources.iter().any(|s| is_admin_source(s)) {
        None
    } else {
        Some(sources[0].clone())
    }
}

pub fn row(e: &PageEntry, path: &str, filters: &Filters) -> Row {
    let en = &e.entry;
    let mode = match (en.list, en.monitor) {
        (List::Allow, _) => "allow",
        (List::Deny, true) => "monitor",
        (List::Deny, false) => "enforce",
    };
    let expires = match (en.expires_at, en.ttl) {
        (Some(at), _) => view::time(at),
        (None, Some(ttl)) => format!("{} after deploy", view::duration(ttl)),
        (None, None) => "never".to_string(),
    };
    let source = removal_source(e);
    let target = en.target.to_string();
    Row {
        sources: en
            .sources
            .iter()
            .map(|s| Link {
                text: s.clone(),
                href: filters.href(path, &[("source", Some(s))]),
            })
            .collect(),
        reason: en.reason.as_ref().map(|r| Link {
            text: r.clone(),
            href: filters.href(path, &[("reason", Some(r))]),
        }),
        added_by: en.added_by.clone(),
        added_at: view::time(en.added_at),
        hits: e
            .hits
            .map(|h| h.packets.to_string())
            .unwrap_or_else(|| "-".to_string()),
        last_hit: e
            .hits
            .and_then(|h| h.last_hit)
            .map(view::time)
            .unwrap_or_else(|| "-".to_string()),
        pending: e.pending.map(|p| match p {
            Pending::Add => "add",
            Pending::Remove => "remove",
            Pending::Change => "change",
        }),
        remove: match &source {
            Some(s) => format!("{target} {s}"),
            None => target.clone(),
        },
        source: source.unwrap_or_default(),
        target,
        mode,
        expires,
    }
}

/// What the add form shows back: the values typed, and why they were not
/// staged.
#[derive(Default)]
pub struct AddForm {
    pub address: String,
    pub reason: String,
    pub ttl: String,
    pub monitor: bool,
    pub error: Option<String>,
    /// A guardrail's refusal: admins may confirm with Force.
    pub guarded: Option<String>,
}

#[derive(Template)]
#[template(path = "entries.html")]
struct EntriesPage {
    layout: Layout,
    page: &'static ListPage,
    filters: Filters,
    filter_error: Option<String>,
    rows: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
    add: AddForm,
    sort_options: [(&'static str, &'static str); 3],
}

impl EntriesPage {
    fn selected(&self, field: &Option<String>, value: &str) -> bool {
        self.filters.is(field, value)
    }
}

pub fn routes(page: &'static ListPage) -> Router<App> {
    let add_path = format!("{}/add", page.path);
    let remove_path = format!("{}/remove", page.path);
    let bulk_path = format!("{}/bulk", page.path);
    Router::new()
        .route(
            page.path,
            get(
                move |State(app): State<App>,
                      Extension(ctx): Extension<Ctx>,
                      Query(filters): Query<Filters>| async move {
                    show(&app, &ctx, page, filters, AddForm::default(), StatusCode::OK).await
                },
            ),
        )
        .route(
            &add_path,
            post(
                move |State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes| async move {
                    add(&app, &ctx, page, &Fields::parse(&body)).await
                },
            ),
        )
        .route(
            &remove_path,
            post(
                move |State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes| async move {
                    remove(&app, &ctx, page, &Fields::parse(&body)).await
                },
            ),
        )
        .route(
            &bulk_path,
            post(
                move |State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes| async move {
                    bulk::bulk(&app, &ctx, page, &Fields::parse(&body)).await
                },
            ),
        )
}

/// The rows per page.
const PAGE_ROWS: u32 = 50;

pub async fn show(
    app: &App,
    ctx: &Ctx,
    page: &'static ListPage,
    filters: Filters,
    add: AddForm,
    status: StatusCode,
) -> Response {
    let layout = Layout::new(app, ctx, page.path).await;
    let (rows, next, filter_error) = match filters.query(page.list, PAGE_ROWS) {
        Err(e) => (Vec::new(), None, Some(e)),
        Ok(q) => {
            match app
                .daemon
                .get::<EntryPage>(&ctx.actor(), &format!("/v1/entries/page?{q}"))
                .await
            {
                Ok(p) => (
                    p.entries
                        .iter()
                        .map(|e| row(e, page.path, &filters))
                        .collect(),
                    p.next,
                    None,
                ),
                Err(e) if e.class == Class::Invalid => (Vec::new(), None, Some(e.message)),
                Err(e) => return failure(layout, &e),
            }
        }
    };
    let next = next.map(|c| {
        let base = filters.href(page.path, &[]);
        let sep = if base.contains('?') { '&' } else { '?' };
        let cursor: String = form_urlencoded::byte_serialize(c.as_bytes()).collect();
        format!("{base}{sep}cursor={cursor}")
    });
    let first = given(&filters.cursor).map(|_| filters.href(page.path, &[]));
    let status = if filter_error.is_some() && status == StatusCode::OK {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    render(
        status,
        EntriesPage {
            layout,
            page,
            filters,
            filter_error,
            rows,
            next,
            first,
            add,
            sort_options: [
                ("target", "Target"),
                ("expires_at", "Expiry"),
                ("added_at", "Added at"),
            ],
        },
    )
}

/// Checks what the add form says before the daemon sees it, so a typo is
/// answered next to its field.
fn stage_item(page: &ListPage, f: &Fields, force: bool) -> Result<StageItem, String> {
    let address = f.text("address").ok_or("Address is required.")?;
    let parsed = if force {
        Target::parse_forced(&address)
    } else {
        Target::parse(&address)
    };
    parsed.map_err(|e| e.to_string())?;
    let ttl = f.text("ttl");
    if let Some(t) = ttl.as_deref().filter(|t| *t != "never") {
        parse_duration(t).map_err(|e| e.to_string())?;
    }
    Ok(StageItem {
        target: address,
        list: page.list,
        reason: f.text("reason"),
        ttl,
        monitor: (page.list == List::Deny).then(|| f.checked("monitor")),
    })
}

async fn add(app: &App, ctx: &Ctx, page: &'static ListPage, f: &Fields) -> Response {
    let force = f.checked("force");
    let mut form = AddForm {
        address: f.get("address").unwrap_or_default().to_string(),
        reason: f.get("reason").unwrap_or_default().to_string(),
        ttl: f.get("ttl").unwrap_or_default().to_string(),
        monitor: f.checked("monitor"),
        ..AddForm::default()
    };
    let item = match stage_item(page, f, force) {
        Ok(item) => item,
        Err(e) => {
            form.error = Some(e);
            return show(
                app,
                ctx,
                page,
                Filters::default(),
                form,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let target = item.target.clone();
    let req = AddRequest {
        entries: vec![item],
        force,
        ..AddRequest::default()
    };
    let staged = app
        .daemon
        .post::<_, StageResponse>(&ctx.actor(), "/v1/entries", &req)
        .await;
    match staged {
        Ok(r) => {
            let mut msg = format!("Staged {target}: deploy to put it into effect.");
            for w in r.warnings {
                msg.push(' ');
                msg.push_str(&w);
            }
            app.sessions.flash(&ctx.session.id, msg);
            Redirect::to(page.path).into_response()
        }
        Err(e) if e.class == Class::Guarded => {
            form.guarded = Some(e.message);
            show(
                app,
                ctx,
                page,
                Filters::default(),
                form,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) if e.class == Class::Invalid => {
            form.error = Some(e.message);
            show(
                app,
                ctx,
                page,
                Filters::default(),
                form,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => failure(Layout::new(app, ctx, page.path).await, &e),
    }
}

/// Parses `TARGET` or `TARGET SOURCE` as a row's removal sends it.
fn removal(value: &str) -> Result<(Target, Option<String>), ApiError> {
    let (target, source) = match value.split_once(' ') {
        Some((t, s)) => (t, Some(s.to_string())),
        None => (value, None),
    };
    let target = Target::parse(target).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((target, source))
}

/// Stages the removal of the rows sent (one for the trash icon, the
/// selected ones for a bulk removal): one request per source.
async fn remove(app: &App, ctx: &Ctx, page: &'static ListPage, f: &Fields) -> Response {
    let values = f.all("target");
    let mut by_source: Vec<(Option<String>, Vec<Target>)> = Vec::new();
    for v in &values {
        let (target, source) = match removal(v) {
            Ok(r) => r,
            Err(e) => return failure(Layout::new(app, ctx, page.path).await, &e),
        };
        match by_source.iter_mut().find(|(s, _)| *s == source) {
            Some((_, targets)) => targets.push(target),
            None => by_source.push((source, vec![target])),
        }
    }
    if by_source.is_empty() {
        app.sessions
            .flash(&ctx.session.id, "Select the rows to remove first.".into());
        return Redirect::to(page.path).into_response();
    }
    let mut removed = 0;
    for (source, targets) in by_source {
        let req = RemoveRequest {
            targets,
            list: page.list,
            deploy: false,
            message: None,
            source,
        };
        match app
            .daemon
            .post::<_, StageResponse>(&ctx.actor(), "/v1/entries/remove", &req)
            .await
        {
            Ok(r) => removed += r.counts.removed + r.counts.changed,
            Err(e) => return failure(Layout::new(app, ctx, page.path).await, &e),
        }
    }
    app.sessions.flash(
        &ctx.session.id,
        format!("Staged the removal of {removed} listing(s): deploy to put it into effect."),
    );
    Redirect::to(page.path).into_response()
}

/// "Allow instead" and "Unblock and allow": an allow entry for the target,
/// then the removal of the row's deny listing, both staged for review.
/// The allow goes first, so a failure between the two leaves the address
/// protected rather than neither.
/// A table of one source's listings, each with "Unblock and allow"
/// posting to `{page}/unblock` (templates/listings.html).
pub struct Listings {
    pub source: &'static str,
    pub page: &'static str,
    /// What the table says when there is none.
    pub empty: &'static str,
}

/// The latest `LATEST` deny entries `source` lists, newest first, as rows:
/// what the Reports and Auto-blocking pages show under their policy.
pub async fn latest_from(app: &App, ctx: &Ctx, source: &str) -> Result<Vec<Row>, ApiError> {
    const LATEST: u32 = 100;
    let source: String = form_urlencoded::byte_serialize(source.as_bytes()).collect();
    let page = app
        .daemon
        .get::<EntryPage>(
            &ctx.actor(),
            &format!(
                "/v1/entries/page?list=deny&source={source}&sort=added_at&desc=true&limit={LATEST}"
            ),
        )
        .await?;
    let filters = Filters::default();
    Ok(page
        .entries
        .iter()
        .map(|e| row(e, "/denylist", &filters))
        .collect())
}

pub async fn allow_instead(app: &App, ctx: &Ctx, f: &Fields, from: &'static str) -> Response {
    let back = f
        .get("back")
        .filter(|b| is_page(b))
        .unwrap_or(from)
        .to_string();
    let fail = |e: ApiError| async move { failure(Layout::new(app, ctx, from).await, &e) };
    let target = match f.text("target").map(|t| Target::parse(&t)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return fail(ApiError::invalid(e.to_string())).await,
        None => return fail(ApiError::invalid("no target given")).await,
    };
    let source = f.text("source");
    let allow = AddRequest {
        entries: vec![StageItem {
            target: target.to_string(),
            list: List::Allow,
            reason: Some(format!(
                "allowed instead of {}",
                source.as_deref().unwrap_or("blocked")
            )),
            ttl: Some("never".to_string()),
            monitor: None,
        }],
        ..AddRequest::default()
    };
    if let Err(e) = app
        .daemon
        .post::<_, StageResponse>(&ctx.actor(), "/v1/entries", &allow)
        .await
    {
        return fail(e).await;
    }
    let remove = RemoveRequest {
        targets: vec![target],
        list: List::Deny,
        deploy: false,
        message: None,
        source,
    };
    if let Err(e) = app
        .daemon
        .post::<_, StageResponse>(&ctx.actor(), "/v1/entries/remove", &remove)
        .await
    {
        return fail(e).await;
    }
    app.sessions.flash(
        &ctx.session.id,
        format!("Staged: {target} allowed instead of blocked. Deploy to put it into effect."),
    );
    Redirect::to(&back).into_response()
}
