//! The Create a New IP Pool wizard, in SES's steps and words: Pool name → Add Dedicated IPs →
//! Assign to a configuration set → Review → Create. Every step is a form that carries what the
//! earlier ones said in hidden fields, so Previous and Next lose nothing and no script is
//! needed. Creating is one change (`admin::pools::create_and_assign`); a refusal is shown on the
//! step where the refused value was typed.

use std::net::IpAddr;

use maud::{Markup, html};

use super::pages::layout;
use super::session::Session;
use crate::admin::pools::{Assignment, NewPool, NewPoolPart, check_new_pool_name};
use crate::registry::{DEFAULT_POOL, Registry};

/// The wizard's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Name = 1,
    Ips = 2,
    Assign = 3,
    Review = 4,
}

impl Step {
    fn from_field(text: &str) -> Self {
        match text {
            "2" => Step::Ips,
            "3" => Step::Assign,
            "4" => Step::Review,
            _ => Step::Name,
        }
    }

    fn next(self) -> Self {
        match self {
            Step::Name => Step::Ips,
            Step::Ips => Step::Assign,
            Step::Assign | Step::Review => Step::Review,
        }
    }

    fn previous(self) -> Self {
        match self {
            Step::Name | Step::Ips => Step::Name,
            Step::Assign => Step::Ips,
            Step::Review => Step::Assign,
        }
    }
}

/// What the wizard's forms have said so far.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    pub name: String,
    pub ips: Vec<String>,
    /// "existing" or "new".
    pub assign: String,
    pub existing_set: String,
    pub new_set: String,
}

impl Answers {
    pub fn from_form(form: &[(String, String)]) -> Self {
        let field = |key: &str| {
            form.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            name: field("name"),
            ips: form
                .iter()
                .filter(|(k, _)| k == "ip")
                .map(|(_, v)| v.clone())
                .collect(),
            assign: field("assign"),
            existing_set: field("existing_set"),
            new_set: field("new_set"),
        }
    }

    /// The plan these answers make, or the step and reason they cannot.
    pub fn plan(&self) -> Result<NewPool, (Step, String)> {
        let ips = self
            .ips
            .iter()
            .map(|ip| {
                ip.parse::<IpAddr>()
                    .map_err(|_| (Step::Ips, format!("{ip:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let assignment = match self.assign.as_str() {
            "existing" if !self.existing_set.is_empty() => {
                Assignment::ExistingSet(self.existing_set.clone())
            }
            "new" if !self.new_set.is_empty() => Assignment::NewSet(self.new_set.clone()),
            "new" => return Err((Step::Assign, "Type a Configuration set name".into())),
            _ => {
                return Err((
                    Step::Assign,
                    "Choose an existing configuration set or create a new one".into(),
                ));
            }
        };
        Ok(NewPool {
            name: self.name.clone(),
            ips,
            assignment,
        })
    }
}

/// Checks the answers of `step` before moving past it.
pub fn check(step: Step, answers: &Answers, registry: &Registry) -> Result<(), String> {
    match step {
        Step::Name => check_new_pool_name(registry, &answers.name),
        Step::Ips => answers.plan().map(|_| ()).or_else(|(at, error)| match at {
            Step::Ips => Err(error),
            _ => Ok(()),
        }),
        Step::Assign => {
            let plan = answers.plan().map_err(|(_, error)| error)?;
            match plan.assignment {
                Assignment::ExistingSet(set) if registry.configuration_set(&set).is_none() => {
                    Err(format!("Configuration set {set} does not exist"))
                }
                Assignment::NewSet(set)
                    if registry.configuration_set(&set).is_some()
                        || !crate::registry::is_valid_configuration_set_name(&set) =>
                {
                    Err(format!(
                        "{set:?} is taken or not a configuration set name (1-64 of A-Z, a-z, 0-9, '_', '-')"
                    ))
                }
                _ => Ok(()),
            }
        }
        Step::Review => Ok(()),
    }
}

/// The step a refusal from `create_and_assign` belongs on.
pub fn step_of(part: NewPoolPart) -> Step {
    match part {
        NewPoolPart::Name => Step::Name,
        NewPoolPart::Ips => Step::Ips,
        NewPoolPart::Assignment => Step::Assign,
    }
}

/// Which step a posted form was on, and whether it asked to go back, on, or create.
pub fn posted_step(form: &[(String, String)]) -> (Step, &str) {
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    (
        Step::from_field(field("step").unwrap_or("1")),
        field("action").unwrap_or("next"),
    )
}

pub fn moved(step: Step, action: &str) -> Step {
    match action {
        "previous" => step.previous(),
        _ => step.next(),
    }
}

/// One step of the wizard, with `error` shown on it.
pub fn render(
    session: &Session,
    step: Step,
    answers: &Answers,
    registry: &Registry,
    error: Option<&str>,
) -> Markup {
    let titles = [
        "Pool name",
        "Add Dedicated IPs",
        "Assign to a configuration set",
        "Review",
    ];
    let body = html! {
        ol.steps {
            @for (index, title) in titles.iter().enumerate() {
                li class=[(index + 1 == step as usize).then_some("current")] { (title) }
            }
        }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form method="post" action="/console/pools/new" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="step" value=(step as u8);
            (hidden_answers(step, answers))
            @match step {
                Step::Name => (name_step(answers)),
                Step::Ips => (ips_step(answers, registry)),
                Step::Assign => (assign_step(answers, registry)),
                Step::Review => (review_step(answers, registry)),
            }
            div.buttons {
                @if step != Step::Name {
                    button type="submit" name="action" value="previous" formnovalidate { "Previous" }
                }
                @if step == Step::Review {
                    button type="submit" name="action" value="create" { "Create" }
                } @else {
                    button type="submit" name="action" value="next" { "Next" }
                }
            }
        }
    };
    layout("Create a New IP Pool", Some(session), body)
}

/// Everything answered on other steps than `step`, as hidden fields.
fn hidden_answers(step: Step, answers: &Answers) -> Markup {
    html! {
        @if step != Step::Name { input type="hidden" name="name" value=(answers.name); }
        @if step != Step::Ips {
            @for ip in &answers.ips { input type="hidden" name="ip" value=(ip); }
        }
        @if step != Step::Assign {
            input type="hidden" name="assign" value=(answers.assign);
            input type="hidden" name="existing_set" value=(answers.existing_set);
            input type="hidden" name="new_set" value=(answers.new_set);
        }
    }
}

fn name_step(answers: &Answers) -> Markup {
    html! {
        label for="name" { "Pool name" }
        input id="name" name="name" type="text" value=(answers.name) required maxlength="64";
        p.hint { "1-64 characters: a-z, 0-9, '_' and '-'." }
    }
}

fn ips_step(answers: &Answers, registry: &Registry) -> Markup {
    html! {
        fieldset {
            legend { "Add Dedicated IPs" }
            @for ip in registry.ips() {
                @let address = ip.address.to_string();
                @let current = ip.pool.as_deref().unwrap_or(DEFAULT_POOL);
                label.ip {
                    input type="checkbox" name="ip" value=(address) checked[answers.ips.contains(&address)];
                    " " (address) " "
                    span.pool { "(in " (current) "; choosing it moves it to " (answers.name) ")" }
                }
            }
        }
    }
}

fn assign_step(answers: &Answers, registry: &Registry) -> Markup {
    let existing = answers.assign != "new";
    html! {
        fieldset {
            legend { "Assign to a configuration set" }
            label {
                input type="radio" name="assign" value="existing" checked[existing];
                " Add this pool to an existing configuration set"
            }
            label for="existing_set" { "Existing configuration sets" }
            select id="existing_set" name="existing_set" {
                @for set in registry.configuration_sets() {
                    option value=(set.name) selected[set.name == answers.existing_set] { (set.name) }
                }
            }
            label {
                input type="radio" name="assign" value="new" checked[!existing];
                " Create a new configuration set"
            }
            label for="new_set" { "Configuration set name" }
            input id="new_set" name="new_set" type="text" value=(answers.new_set) maxlength="64";
        }
    }
}

fn review_step(answers: &Answers, registry: &Registry) -> Markup {
    let set = match answers.assign.as_str() {
        "new" => format!("a new configuration set, {}", answers.new_set),
        _ => format!("the existing configuration set {}", answers.existing_set),
    };
    html! {
        dl {
            dt { "Pool name" } dd { (answers.name) }
            dt { "Dedicated IPs" }
            dd {
                @if answers.ips.is_empty() { "none" }
                ul {
                    @for ip in &answers.ips {
                        @let from = registry.ips().iter().find(|known| known.address.to_string() == *ip)
                            .map(|known| known.pool.clone().unwrap_or_else(|| DEFAULT_POOL.to_string()))
                            .unwrap_or_default();
                        li { (ip) " moves from " (from) }
                    }
                }
            }
            dt { "Configuration set" } dd { (set) }
        }
    }
}
