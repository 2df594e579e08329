//! How an alert's handling ends — escalated, suppressed or fixed — and what each
//! ending tells people.

use super::Disposition;
use super::remediate::{Ctx, Remediator};
use super::step::short;
use crate::domain::alert::AlertState;
use crate::domain::ids::now_ms;
use crate::events::{AlertSuppressed, Ending, RemediationFinished};
use crate::notify::{Kind, Message};
use crate::store::{AttemptStatus, EscalationCooldown, RemediationFilter, RemediationRow};

/// " on <instance>", or nothing.
fn on_instance(ctx: &Ctx<'_>) -> String {
    ctx.event
        .instance
        .as_deref()
        .map(|i| format!(" on {i}"))
        .unwrap_or_default()
}

fn commands_of(a: &RemediationRow) -> Vec<String> {
    serde_json::from_str(&a.commands_executed).unwrap_or_default()
}

impl Remediator {
    /// This event's attempts, oldest first (for the texts people get).
    async fn attempts_of(&self, ctx: &Ctx<'_>) -> Vec<RemediationRow> {
        let filter = RemediationFilter {
            limit: 20,
            alert_event_id: Some(ctx.event.id.clone()),
            ..Default::default()
        };
        let mut rows = self
            .store
            .list_remediations(&filter)
            .await
            .unwrap_or_default();
        rows.reverse();
        rows
    }

    /// One field per attempt for the escalation message.
    fn attempts_summary(attempts: &[RemediationRow]) -> Vec<(String, String)> {
        attempts
            .iter()
            .filter(|a| a.status != AttemptStatus::Diagnostic || !a.output.is_empty())
            .take(10)
            .map(|a| {
                let why = if a.error_message.is_empty() {
                    &a.verification_message
                } else {
                    &a.error_message
                };
                (
                    format!(
                        "{} on {}: {}",
                        a.source,
                        a.host,
                        short(&commands_of(a).join("; "), 200)
                    ),
                    short(&format!("{} {why}\n{}", a.status, a.output), 1000),
                )
            })
            .collect()
    }

    pub(super) async fn escalate(
        &self,
        ctx: &Ctx<'_>,
        state: AlertState,
        reason: String,
    ) -> Disposition {
        let now = now_ms();
        let hours = i64::from(self.config.remediation.escalation_cooldown_hours);
        let cooldown = EscalationCooldown {
            fingerprint: ctx.event.fingerprint.clone(),
            alert_name: ctx.event.alertname.clone(),
            at: now,
            until: now + hours * 3_600_000,
            reason: reason.clone(),
        };
        let (kind, title) = if state == AlertState::Failed {
            (Kind::Failed, "Failed")
        } else {
            (Kind::Escalated, "Escalated")
        };
        let mut m = Message::new(
            kind,
            format!("{title}: {}{}", ctx.event.alertname, on_instance(ctx)),
            reason.clone(),
        )
        .url(
            self.notify
                .link(&format!("/remediations?alert_name={}", ctx.event.alertname)),
        );
        for (k, v) in Self::attempts_summary(&self.attempts_of(ctx).await) {
            m = m.field(k, v);
        }
        let note = self.notify.outbox(&m, Some(&ctx.event.id));
        RemediationFinished {
            alert: &ctx.event.alertname,
            fingerprint: &ctx.event.fingerprint,
            ending: Ending::Escalated,
            reason: &reason,
        }
        .emit(&self.metrics);
        // A review for the person, in the background (the planner may call an LLM).
        let (planner, id, name, why) = (
            self.planner.clone(),
            ctx.event.id.clone(),
            ctx.event.alertname.clone(),
            reason.clone(),
        );
        self.background
            .spawn(async move { planner.after_escalation(&id, &name, &why).await });
        let mut d = Disposition::done(state, reason).note(note);
        d.cooldown = Some(cooldown);
        d
    }

    pub(super) fn suppressed(&self, ctx: &Ctx<'_>, reason: String) -> Disposition {
        AlertSuppressed {
            alert: &ctx.event.alertname,
            reason: &reason,
        }
        .emit(&self.metrics);
        let host = ctx.host.as_deref();
        let root = match reason.as_str() {
            "host_offline" => format!("host {} offline", host.unwrap_or("?")),
            "maintenance" => format!(
                "maintenance{}",
                host.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            r => r.to_owned(),
        };
        if reason != "escalation_cooldown" {
            self.notify.suppressed(&root, &ctx.event.alertname);
        }
        Disposition::done(AlertState::Suppressed, reason)
    }

    pub(super) async fn fixed(
        &self,
        ctx: &Ctx<'_>,
        verified: bool,
        message: String,
    ) -> Disposition {
        let _ = self
            .store
            .close_incidents(&ctx.event.fingerprint, now_ms())
            .await;
        RemediationFinished {
            alert: &ctx.event.alertname,
            fingerprint: &ctx.event.fingerprint,
            ending: Ending::Fixed,
            reason: &message,
        }
        .emit(&self.metrics);
        let attempts = self.attempts_of(ctx).await;
        let last = attempts.last();
        let title = if verified {
            "Fixed and verified"
        } else {
            "Fixed (not verified)"
        };
        let m = Message::new(
            Kind::Fixed,
            format!("{title}: {}{}", ctx.event.alertname, on_instance(ctx)),
            message.clone(),
        )
        .field(
            "Commands",
            short(&last.map(commands_of).unwrap_or_default().join("\n"), 1000),
        )
        .field("Host", last.map(|a| a.host.clone()).unwrap_or_default())
        .field(
            "Source",
            last.map(|a| a.source.to_string()).unwrap_or_default(),
        );
        let note = self.notify.outbox(&m, Some(&ctx.event.id));
        Disposition::done(
            AlertState::Resolved,
            if verified {
                format!("fixed: {message}")
            } else {
                format!("fixed ({message})")
            },
        )
        .note(note)
    }
}
