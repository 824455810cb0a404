//! Bulk add: up to 10,000 pasted lines, previewed as valid, invalid and
//! guarded (the daemon's dry run says which the guardrails refuse), then
//! the valid lines the guardrails let through staged in one request.

use askama::Template;
use axum::{
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};

use super::entries::ListPage;
use crate::{
    model::Target,
    web::{
        app::App,
        auth::Ctx,
        form::Fields,
        render::{Layout, failure, render},
    },
    wire::{AddRequest, ApiError, StageItem, StageResponse},
};

/// The most lines a paste may hold.
pub const MAX_LINES: usize = 10_000;

/// The lines of a paste, sorted out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub valid: Vec<Target>,
    /// Each invalid line with why.
    pub invalid: Vec<(String, String)>,
}

/// Blank lines and `#` comments are skipped; a line's first word is its
/// target, so `203.0.113.7  # scanner` works too.
pub fn parse_lines(text: &str) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.len() > MAX_LINES {
        return Err(format!(
            "{} lines: paste at most {MAX_LINES} at a time.",
            lines.len()
        ));
    }
    for line in lines {
        let word = line.split_whitespace().next().unwrap_or(line);
        match Target::parse(word) {
            Ok(t) if !parsed.valid.contains(&t) => parsed.valid.push(t),
            Ok(_) => {}
            Err(e) => parsed.invalid.push((line.to_string(), e.to_string())),
        }
    }
    Ok(parsed)
}

#[derive(Template)]
#[template(path = "bulk.html")]
struct Preview {
    layout: Layout,
    page: &'static ListPage,
    lines: String,
    reason: String,
    ttl: String,
    valid: Vec<String>,
    invalid: Vec<(String, String)>,
    guarded: Vec<(String, String)>,
    error: Option<String>,
}

fn request(page: &ListPage, targets: &[Target], f: &Fields, dry_run: bool) -> AddRequest {
    AddRequest {
        entries: targets
            .iter()
            .map(|t| StageItem {
                target: t.to_string(),
                list: page.list,
                reason: f.text("bulk_reason"),
                ttl: f.text("bulk_ttl"),
                monitor: None,
            })
            .collect(),
        dry_run,
        ..AddRequest::default()
    }
}

/// The preview, or with `stage` set (the preview's button), the staging.
pub async fn bulk(app: &App, ctx: &Ctx, page: &'static ListPage, f: &Fields) -> Response {
    let lines = f.get("lines").unwrap_or_default().to_string();
    let layout = Layout::new(app, ctx, page.path).await;
    let mut preview = Preview {
        layout,
        page,
        lines: lines.clone(),
        reason: f.get("bulk_reason").unwrap_or_default().to_string(),
        ttl: f.get("bulk_ttl").unwrap_or_default().to_string(),
        valid: Vec::new(),
        invalid: Vec::new(),
        guarded: Vec::new(),
        error: None,
    };
    let parsed = match parse_lines(&lines) {
        Ok(p) => p,
        Err(e) => {
            preview.error = Some(e);
            return render(StatusCode::BAD_REQUEST, preview);
        }
    };
    let dry = match app
        .daemon
        .post::<_, StageResponse>(
            &ctx.actor(),
            "/v1/entries",
            &request(page, &parsed.valid, f, true),
        )
        .await
    {
        Ok(r) => r,
        Err(e) if parsed.valid.is_empty() => StageResponse {
            seq: None,
            counts: Default::default(),
            targets: Vec::new(),
            warnings: vec![e.message],
            refused: Vec::new(),
            deployed: None,
        },
        Err(e) => return failure(preview.layout, &e),
    };
    let passing: Vec<Target> = parsed
        .valid
        .iter()
        .filter(|t| !dry.refused.iter().any(|r| r.target == **t))
        .copied()
        .collect();
    if f.checked("stage") {
        if passing.is_empty() {
            let e = ApiError::invalid("no valid line passes the guardrails: nothing to stage");
            return failure(preview.layout, &e);
        }
        return match app
            .daemon
            .post::<_, StageResponse>(
                &ctx.actor(),
                "/v1/entries",
                &request(page, &passing, f, false),
            )
            .await
        {
            Ok(r) => {
                app.sessions.flash(
                    &ctx.session.id,
                    format!(
                        "Staged {} added and {} changed entries: deploy to put them into effect.",
                        r.counts.added, r.counts.changed
                    ),
                );
                Redirect::to(page.path).into_response()
            }
            Err(e) => failure(preview.layout, &e),
        };
    }
    preview.valid = passing.iter().map(Target::to_string).collect();
    preview.invalid = parsed.invalid;
    preview.guarded = dry
        .refused
        .into_iter()
        .map(|r| (r.target.to_string(), r.reason))
        .collect();
    render(StatusCode::OK, preview)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_sort_into_valid_and_invalid() {
        let p = parse_lines(
            "# list\n192.0.2.1\n\n192.0.2.0/24 scanner\nnonsense\n192.0.2.1\n10.0.0.1/8\n",
        )
        .unwrap();
        assert_eq!(
            p.valid,
            vec![
                Target::parse("192.0.2.1").unwrap(),
                Target::parse("192.0.2.0/24").unwrap()
            ]
        );
        assert_eq!(p.invalid.len(), 2, "{:?}", p.invalid);
        assert_eq!(p.invalid[0].0, "nonsense");
        let many = "192.0.2.1\n".repeat(MAX_LINES + 1);
        assert!(parse_lines(&many).is_err());
    }
}
