//! Reading a plan: TOML → [`raw`] tables (each on its own, so every mistake is found) →
//! the [`model`], with every cross-reference checked. Problems are collected, never thrown:
//! the caller gets all of them at once, each at its position.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use drp_backup::{SourceOrigin, SourceSpec};
use drp_provision::{HostKeyChecking, SshTarget};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::model::*;
use super::problem::{LineIndex, Location, Problem, ProblemKind};
use super::raw::{self, Text, secret_keys};
use crate::executor::graph::{DependencyGraph, GraphError};

mod files;

type Value<'t> = Spanned<DeValue<'t>>;

/// Defaults of `[recovery]`.
const DEFAULT_PARALLELISM: usize = 4;
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(120);
const DEFAULT_HEALTHY_WITHIN: Duration = Duration::from_secs(10 * 60);
/// Default of scenarios' `steady_state_within`.
const DEFAULT_STEADY_STATE_WITHIN: Duration = Duration::from_secs(60);
/// Default of provisioners' `timeout`.
const DEFAULT_PROVISIONER_TIMEOUT: Duration = Duration::from_secs(600);
/// Placeholders that probe fields may use.
const PLACEHOLDERS: &[&str] = &["host", "stack"];

/// Reads a plan from `text`. `file` names it in problems; relative paths in it are resolved
/// against `dir`. Returns the plan when there is no error (warnings may come with it).
pub(crate) fn load(
    text: &str,
    file: &Path,
    dir: &Path,
    check_files: bool,
) -> (Option<Plan>, Vec<Problem>) {
    let mut loader = Loader {
        file,
        dir,
        text,
        lines: LineIndex::new(text),
        problems: Vec::new(),
        references: Vec::new(),
        dependencies: Vec::new(),
        roles: Vec::new(),
        env_vars: Vec::new(),
        declared: BTreeSet::new(),
    };
    let plan = loader.plan(check_files);
    let mut problems = loader.problems;
    super::problem::sort(&mut problems);
    let plan = plan.filter(|_| !problems.iter().any(Problem::is_error));
    (plan, problems)
}

struct Loader<'t> {
    file: &'t Path,
    dir: &'t Path,
    text: &'t str,
    lines: LineIndex<'t>,
    problems: Vec<Problem>,
    /// Names that must exist, checked once everything is read.
    references: Vec<Reference>,
    /// (stack, dependency, offset of the `depends_on` entry).
    dependencies: Vec<(String, String, usize)>,
    /// (stack, role, offset of `role`).
    roles: Vec<(String, String, usize)>,
    /// (variable, offset, what it is for) of every `*_env` reference.
    env_vars: Vec<(String, usize, String)>,
    /// (section, name) of everything defined, also what failed to parse: a reference to a
    /// broken definition is not reported as undefined on top of the breakage.
    declared: BTreeSet<(String, String)>,
}

/// The tables as parsed, before they are checked against each other.
#[derive(Default)]
struct Tables {
    name: Option<String>,
    storage: Option<raw::RawStorage>,
    customers: Vec<(Text, raw::RawCustomer)>,
    datacenters: Vec<(Text, raw::RawDatacenter)>,
    provisioners: Vec<(Text, raw::RawProvisioner)>,
    hosts: Vec<(Range<usize>, raw::RawHost)>,
    stacks: Vec<StackTables>,
    notifiers: Vec<Notifier>,
    recovery: Option<raw::RawRecovery>,
    scenarios: Vec<(Text, raw::RawScenario, Vec<Probe>)>,
}

struct StackTables {
    name: Text,
    stack: raw::RawStack,
    sources: Vec<(Range<usize>, SourceEntry)>,
    probes: Vec<Probe>,
}

enum SourceEntry {
    Short(SourceSpec),
    Table(raw::RawSource),
}

impl<'t> Loader<'t> {
    fn at(&self, offset: usize) -> Location {
        self.lines.location(offset)
    }

    fn error(&mut self, kind: ProblemKind, offset: Option<usize>, message: impl Into<String>) {
        let location = offset.map(|o| self.at(o));
        self.problems
            .push(Problem::error(self.file, kind, location, message));
    }

    fn error_at(&mut self, kind: ProblemKind, location: Location, message: impl Into<String>) {
        self.problems
            .push(Problem::error(self.file, kind, Some(location), message));
    }

    /// Reports a serde error of the table `context`, classified by what it says.
    fn serde_error(&mut self, context: &str, error: &toml::de::Error) {
        let message = error.message().trim_end();
        let (kind, message) = if let Some(rest) = message.strip_prefix("unknown field") {
            (ProblemKind::UnknownKey, format!("unknown key{rest}"))
        } else if let Some(rest) = message.strip_prefix("missing field") {
            (ProblemKind::MissingKey, format!("missing key{rest}"))
        } else {
            (ProblemKind::InvalidValue, without_raw_names(message))
        };
        self.error(
            kind,
            Some(error.span().map_or(0, |s| s.start)),
            format!("{context}: {message}"),
        );
    }

    /// Deserializes one table (or value) of the plan; a problem is reported on failure.
    fn entity<T: Deserialize<'t>>(&mut self, context: &str, value: Value<'t>) -> Option<T> {
        match T::deserialize(value.into_deserializer()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.serde_error(context, &e);
                None
            }
        }
    }

    /// Takes the keys of `table` that would be literal secrets out, reporting each.
    fn take_literal_secrets(&mut self, context: &str, table: &mut DeTable<'t>, keys: &[&str]) {
        for key in keys {
            if let Some((k, _)) = table.remove_entry(*key) {
                self.error(
                    ProblemKind::LiteralSecret,
                    Some(k.span().start),
                    format!(
                        "{context}: `{key}` would put a secret in the plan; reference it with \
                         `{key}_env = \"VAR\"` or `{key}_file = \"PATH\"`"
                    ),
                );
            }
        }
    }

    /// The entries of a `[SECTION.NAME]` collection, checking each name.
    fn named_tables(&mut self, section: &str, value: Value<'t>) -> Vec<(Text, Value<'t>)> {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.error(
                ProblemKind::InvalidValue,
                Some(span.start),
                format!("`{section}` must be a table of named tables: [{section}.NAME]"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in table {
            let name = Spanned::new(key.span(), key.get_ref().to_string());
            if let Err(reason) = check_name(&name) {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(key.span().start),
                    format!("invalid name `{}` in [{section}]: {reason}", name.get_ref()),
                );
                continue;
            }
            if !value.get_ref().is_table() {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(value.span().start),
                    format!(
                        "{section}.{}: expected a table, found {}",
                        name.get_ref(),
                        value.get_ref().type_str()
                    ),
                );
                continue;
            }
            self.declared
                .insert((section.to_string(), name.get_ref().clone()));
            out.push((name, value));
        }
        out
    }

    fn plan(&mut self, check_files: bool) -> Option<Plan> {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim_end();
                // The parser says "duplicate key" without the key: name it.
                let (kind, message) = match self.text.get(span.clone()) {
                    Some(key) if message == "duplicate key" && !key.is_empty() => (
                        ProblemKind::Duplicate,
                        format!("duplicate key `{}`", key.trim_matches(['"', '\''])),
                    ),
                    _ => (ProblemKind::Syntax, message.to_string()),
                };
                self.error(kind, Some(span.start), message);
            }
            return None;
        }
        let tables = self.tables(root.into_inner())?;
        let plan = self.resolve(tables)?;
        self.check_references(&plan);
        if check_files {
            self.check_files(&plan);
        }
        self.check_environment();
        Some(plan)
    }

    /// Phase 1: every table deserialized on its own.
    fn tables(&mut self, mut root: DeTable<'t>) -> Option<Tables> {
        let mut tables = Tables::default();
        match root.remove_entry("format") {
            None => self.error(
                ProblemKind::MissingKey,
                Some(0),
                "missing key `format`: start the plan with `format = 1`",
            ),
            Some((_, value)) => {
                if value.get_ref().as_integer().map(|i| i.as_str()) != Some("1") {
                    self.error(
                        ProblemKind::InvalidValue,
                        Some(value.span().start),
                        "unsupported plan format (this drp reads `format = 1`)",
                    );
                }
            }
        }
        if let Some((_, value)) = root.remove_entry("name") {
            tables.name = self.entity("name", value);
        }
        for (key, _) in root.iter() {
            if !raw::SECTIONS.contains(&key.get_ref().as_ref()) {
                let message = format!(
                    "unknown key `{}` (a plan has: {})",
                    key.get_ref(),
                    raw::SECTIONS.join(", ")
                );
                self.error(ProblemKind::UnknownKey, Some(key.span().start), message);
            }
        }
        match root.remove("storage") {
            None => self.error(
                ProblemKind::MissingKey,
                Some(0),
                "missing table [storage] (where backups live)",
            ),
            Some(mut value) => {
                if let DeValue::Table(table) = value.get_mut() {
                    self.take_literal_secrets("storage", table, secret_keys::STORAGE);
                    if let Some(DeValue::Table(options)) =
                        table.get_mut("options").map(|v| v.get_mut())
                    {
                        for key in secret_keys::STORAGE_OPTIONS {
                            if let Some((k, _)) = options.remove_entry(*key) {
                                self.problems.push(Problem::error(
                                    self.file,
                                    ProblemKind::LiteralSecret,
                                    Some(self.at(k.span().start)),
                                    format!(
                                        "storage.options: `{key}` is a credential and stays out \
                                         of the plan; set {} in the environment of drp",
                                        key.to_ascii_uppercase()
                                    ),
                                ));
                            }
                        }
                    }
                }
                tables.storage = self.entity("storage", value);
            }
        }
        if let Some(value) = root.remove("customers") {
            for (name, mut value) in self.named_tables("customers", value) {
                let context = format!("customers.{}", name.get_ref());
                if let DeValue::Table(table) = value.get_mut() {
                    self.take_literal_secrets(&context, table, secret_keys::CUSTOMER);
                }
                if let Some(c) = self.entity(&context, value) {
                    tables.customers.push((name, c));
                }
            }
        }
        if let Some(value) = root.remove("datacenters") {
            for (name, mut value) in self.named_tables("datacenters", value) {
                let context = format!("datacenters.{}", name.get_ref());
                if let DeValue::Table(table) = value.get_mut() {
                    self.take_literal_secrets(&context, table, secret_keys::SSH);
                }
                if let Some(d) = self.entity(&context, value) {
                    tables.datacenters.push((name, d));
                }
            }
        }
        if let Some(value) = root.remove("provisioners") {
            for (name, value) in self.named_tables("provisioners", value) {
                let context = format!("provisioners.{}", name.get_ref());
                if let Some(p) = self.entity(&context, value) {
                    tables.provisioners.push((name, p));
                }
            }
        }
        if let Some(value) = root.remove("hosts") {
            for (i, mut value) in self.array("hosts", value).into_iter().enumerate() {
                let context = format!("hosts[{i}]");
                let span = value.span();
                if let DeValue::Table(table) = value.get_mut() {
                    self.take_literal_secrets(&context, table, secret_keys::SSH);
                    if let Some(name) = table.get("name").and_then(|n| n.get_ref().as_str()) {
                        self.declared.insert(("hosts".into(), name.to_string()));
                    }
                }
                if let Some(h) = self.entity(&context, value) {
                    tables.hosts.push((span, h));
                }
            }
        }
        if let Some(value) = root.remove("stacks") {
            for (name, value) in self.named_tables("stacks", value) {
                if let Some(stack) = self.stack_tables(name, value) {
                    tables.stacks.push(stack);
                }
            }
        }
        if let Some(value) = root.remove("notifiers") {
            let mut names: HashMap<String, usize> = HashMap::new();
            for (i, value) in self.array("notifiers", value).into_iter().enumerate() {
                if let Some(notifier) = self.notifier(i, value, &mut names) {
                    tables.notifiers.push(notifier);
                }
            }
        }
        if let Some(value) = root.remove("scenarios") {
            for (name, mut value) in self.named_tables("scenarios", value) {
                let context = format!("scenarios.{}", name.get_ref());
                let mut probes = Vec::new();
                if let DeValue::Table(table) = value.get_mut()
                    && let Some(list) = table.remove(raw::SCENARIO_LISTS[0])
                {
                    let section = format!("{context}.abort_probes");
                    for (probe_name, value) in self.named_tables(&section, list) {
                        if let Some(probe) = self.probe(&section, probe_name, value) {
                            probes.push(probe);
                        }
                    }
                }
                if let Some(scenario) = self.entity(&context, value) {
                    tables.scenarios.push((name, scenario, probes));
                }
            }
        }
        match root.remove("recovery") {
            None => self.error(
                ProblemKind::MissingKey,
                Some(0),
                "missing table [recovery] (at least `target_datacenter`)",
            ),
            Some(value) => tables.recovery = self.entity("recovery", value),
        }
        Some(tables)
    }

    /// The elements of an array (of tables).
    fn array(&mut self, context: &str, value: Value<'t>) -> Vec<Value<'t>> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(items) => items.into_iter().collect(),
            other => {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(span.start),
                    format!("{context}: expected an array, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    /// Checks the keys of a table whose meaning depends on its `kind`. Keys of another kind,
    /// and unknown keys, are reported (with the keys this kind takes) and taken out. Returns
    /// false when the kind itself is missing or unknown.
    fn check_kind_keys(
        &mut self,
        context: &str,
        what: &str,
        table: &mut DeTable<'t>,
        common: &[&str],
        kinds: &[(&str, &[&str])],
    ) -> bool {
        let Some(kind_value) = table.get("kind") else {
            // serde reports the missing `kind`.
            return true;
        };
        let Some(kind) = kind_value.get_ref().as_str().map(str::to_string) else {
            return true;
        };
        let Some((_, own)) = kinds.iter().find(|(k, _)| *k == kind.as_str()) else {
            let known: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
            let offset = kind_value.span().start;
            self.error(
                ProblemKind::InvalidValue,
                Some(offset),
                format!(
                    "{context}: unknown {what} kind `{kind}` (expected {})",
                    known.join(", ")
                ),
            );
            return false;
        };
        let foreign: Vec<(String, usize)> = table
            .keys()
            .filter(|k| {
                !common.contains(&k.get_ref().as_ref()) && !own.contains(&k.get_ref().as_ref())
            })
            .map(|k| (k.get_ref().to_string(), k.span().start))
            .collect();
        for (key, offset) in foreign {
            table.remove(key.as_str());
            let takes: Vec<&str> = own.iter().chain(common).copied().collect();
            self.error(
                ProblemKind::UnknownKey,
                Some(offset),
                format!(
                    "{context}: unknown key `{key}` for a {kind} {what} (it takes: {})",
                    takes.join(", ")
                ),
            );
        }
        true
    }

    fn stack_tables(&mut self, name: Text, mut value: Value<'t>) -> Option<StackTables> {
        let context = format!("stacks.{}", name.get_ref());
        let mut lists: BTreeMap<&str, Value<'t>> = BTreeMap::new();
        if let DeValue::Table(table) = value.get_mut() {
            for key in raw::STACK_LISTS {
                if let Some(v) = table.remove(*key) {
                    lists.insert(key, v);
                }
            }
        }
        let stack: Option<raw::RawStack> = self.entity(&context, value);
        let mut sources = Vec::new();
        if let Some(list) = lists.remove("sources") {
            for (i, item) in self
                .array(&format!("{context}.sources"), list)
                .into_iter()
                .enumerate()
            {
                let span = item.span();
                let item_context = format!("{context}.sources[{i}]");
                if let Some(text) = item.get_ref().as_str() {
                    match text.parse::<SourceSpec>() {
                        Ok(spec) => sources.push((span, SourceEntry::Short(spec))),
                        Err(e) => self.error(
                            ProblemKind::InvalidValue,
                            Some(span.start),
                            format!("{item_context}: {e}"),
                        ),
                    }
                } else if !item.get_ref().is_table() {
                    self.error(
                        ProblemKind::InvalidValue,
                        Some(span.start),
                        format!(
                            "{item_context}: expected \"NAME=PATH\", \"NAME=cmd:COMMAND\" or a \
                             table, found {}",
                            item.get_ref().type_str()
                        ),
                    );
                } else if let Some(source) = self.entity::<raw::RawSource>(&item_context, item) {
                    sources.push((span, SourceEntry::Table(source)));
                }
            }
        }
        let mut probes = Vec::new();
        if let Some(table) = lists.remove("probes") {
            let section = format!("{context}.probes");
            for (probe_name, value) in self.named_tables(&section, table) {
                if let Some(probe) = self.probe(&section, probe_name, value) {
                    probes.push(probe);
                }
            }
        }
        Some(StackTables {
            name,
            stack: stack?,
            sources,
            probes,
        })
    }

    // --- Phase 2: the model, with references checked -------------------------------------

    fn file_ref(&self, text: &Text) -> FileRef {
        FileRef::new(text.get_ref().clone(), self.dir, self.at(text.span().start))
    }

    /// `KEY_env` / `KEY_file` → a [`SecretRef`]; both at once is a problem.
    fn secret_ref(
        &mut self,
        context: &str,
        key: &str,
        env: Option<&Text>,
        file: Option<&Text>,
    ) -> Option<SecretRef> {
        match (env, file) {
            (Some(env), Some(_)) => {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(env.span().start),
                    format!("{context}: give either `{key}_env` or `{key}_file`, not both"),
                );
                None
            }
            (Some(env), None) => {
                if !valid_env_name(env.get_ref()) {
                    self.error(
                        ProblemKind::InvalidValue,
                        Some(env.span().start),
                        format!(
                            "{context}: `{key}_env` must name an environment variable \
                             (letters, digits, '_'), not hold the secret itself"
                        ),
                    );
                }
                self.env_vars.push((
                    env.get_ref().clone(),
                    env.span().start,
                    format!("{context}: {key}"),
                ));
                Some(SecretRef::Env(env.get_ref().clone()))
            }
            (None, Some(file)) => Some(SecretRef::File(self.file_ref(file))),
            (None, None) => None,
        }
    }

    fn ssh_settings(&mut self, context: &str, raw: raw::SshFields<'_>) -> SshSettings {
        let key_passphrase = self.secret_ref(
            context,
            "ssh_passphrase",
            raw.passphrase_env,
            raw.passphrase_file,
        );
        let host_key_checking =
            raw.checking
                .and_then(|c| match c.get_ref().parse::<HostKeyChecking>() {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.error(
                            ProblemKind::InvalidValue,
                            Some(c.span().start),
                            format!("{context}: {e}"),
                        );
                        None
                    }
                });
        SshSettings {
            key: raw.key.map(|k| self.file_ref(k)),
            key_passphrase,
            known_hosts: raw.known_hosts.map(|k| self.file_ref(k)),
            host_key_checking,
            connect_timeout: raw.timeout,
        }
    }

    /// E-mail addresses, each checked; bad and repeated ones are reported and dropped.
    fn email_list(&mut self, context: &str, what: &str, list: &[Text]) -> Vec<String> {
        let mut addresses: Vec<String> = Vec::new();
        for address in list {
            if !looks_like_email(address.get_ref()) {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(address.span().start),
                    format!(
                        "{context}: `{}` is not an e-mail address ({what})",
                        address.get_ref()
                    ),
                );
            } else if addresses.contains(address.get_ref()) {
                self.error(
                    ProblemKind::Duplicate,
                    Some(address.span().start),
                    format!("{context}: duplicate {what} `{}`", address.get_ref()),
                );
            } else {
                addresses.push(address.get_ref().clone());
            }
        }
        addresses
    }

    fn duplicate(&mut self, what: &str, name: &str, offset: usize, first: usize) {
        let first = self.at(first);
        self.error(
            ProblemKind::Duplicate,
            Some(offset),
            format!(
                "duplicate {what} `{name}` (first defined at line {})",
                first.line
            ),
        );
    }

    /// Builds the model from whatever tables parsed, so that references are checked even
    /// when another table is broken; the plan is usable only if nothing was reported.
    fn resolve(&mut self, tables: Tables) -> Option<Plan> {
        let storage_raw = tables.storage.unwrap_or_else(|| raw::RawStorage {
            url: Spanned::new(0..0, "memory://".to_string()),
            options: BTreeMap::new(),
            signing_key: None,
            signing_passphrase_env: None,
            signing_passphrase_file: None,
            trust: Vec::new(),
            escrow: Vec::new(),
        });
        let recovery_raw = tables.recovery;
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(self.text.as_bytes()))
        };
        let name = tables.name.unwrap_or_else(|| {
            self.file
                .file_stem()
                .map_or_else(|| "plan".to_string(), |s| s.to_string_lossy().into_owned())
        });

        let signing_passphrase = self.secret_ref(
            "storage",
            "signing_passphrase",
            storage_raw.signing_passphrase_env.as_ref(),
            storage_raw.signing_passphrase_file.as_ref(),
        );
        if signing_passphrase.is_some() && storage_raw.signing_key.is_none() {
            self.error(
                ProblemKind::InvalidValue,
                storage_raw
                    .signing_passphrase_env
                    .as_ref()
                    .or(storage_raw.signing_passphrase_file.as_ref())
                    .map(|t| t.span().start),
                "storage: a signing passphrase without `signing_key`",
            );
        }
        if let Err(e) = url_scheme_ok(storage_raw.url.get_ref()) {
            self.error(
                ProblemKind::InvalidValue,
                Some(storage_raw.url.span().start),
                format!("storage: {e}"),
            );
        }
        let storage = Storage {
            url: storage_raw.url.get_ref().clone(),
            url_at: self.at(storage_raw.url.span().start),
            options: storage_raw.options,
            signing_key: storage_raw.signing_key.as_ref().map(|k| self.file_ref(k)),
            signing_passphrase,
            trust: storage_raw.trust.iter().map(|k| self.file_ref(k)).collect(),
            escrow: storage_raw
                .escrow
                .iter()
                .map(|k| self.file_ref(k))
                .collect(),
        };

        let mut customers = BTreeMap::new();
        for (name, c) in tables.customers {
            let context = format!("customers.{}", name.get_ref());
            if c.certificates.get_ref().is_empty() {
                self.error(
                    ProblemKind::MissingKey,
                    Some(c.certificates.span().start),
                    format!("{context}: `certificates` is empty: name at least the customer's certificate"),
                );
            }
            let passphrase = self.secret_ref(
                &context,
                "passphrase",
                c.passphrase_env.as_ref(),
                c.passphrase_file.as_ref(),
            );
            let contacts = Contacts {
                customer: self.email_list(&context, "customer contact", &c.contacts.customer),
                partner: self.email_list(&context, "partner contact", &c.contacts.partner),
            };
            let customer = Customer {
                name: name.get_ref().clone(),
                display_name: c.name,
                contacts,
                certificates: c
                    .certificates
                    .get_ref()
                    .iter()
                    .map(|k| self.file_ref(k))
                    .collect(),
                secret_key: c.secret_key.as_ref().map(|k| self.file_ref(k)),
                passphrase,
                at: self.at(name.span().start),
            };
            customers.insert(customer.name.clone(), customer);
        }

        let mut datacenters = BTreeMap::new();
        for (name, d) in tables.datacenters {
            let context = format!("datacenters.{}", name.get_ref());
            let ssh = self.ssh_settings(&context, d.ssh_fields());
            if let Some(p) = &d.provisioner {
                self.references
                    .push(Reference::new("provisioner", p, &context));
            }
            let datacenter = Datacenter {
                name: name.get_ref().clone(),
                description: d.description,
                ssh,
                provisioner: d.provisioner.map(|p| p.into_inner()),
                at: self.at(name.span().start),
            };
            datacenters.insert(datacenter.name.clone(), datacenter);
        }

        let mut provisioners = BTreeMap::new();
        for (name, p) in tables.provisioners {
            let context = format!("provisioners.{}", name.get_ref());
            if p.kind.get_ref() != "script" {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(p.kind.span().start),
                    format!(
                        "{context}: unknown provisioner kind `{}` (expected script)",
                        p.kind.get_ref()
                    ),
                );
                continue;
            }
            let Some(acquire) = p.acquire.filter(|a| !a.trim().is_empty()) else {
                self.error(
                    ProblemKind::MissingKey,
                    Some(name.span().start),
                    format!("{context}: a script provisioner needs `acquire` (the command that creates a host)"),
                );
                continue;
            };
            let provisioner = Provisioner {
                name: name.get_ref().clone(),
                kind: ProvisionerKind::Script {
                    acquire,
                    release: p.release,
                    timeout: p.timeout.map_or(DEFAULT_PROVISIONER_TIMEOUT, |t| t.0),
                    env: p.env,
                },
                at: self.at(name.span().start),
            };
            provisioners.insert(provisioner.name.clone(), provisioner);
        }

        let mut hosts = Vec::new();
        let mut host_names: HashMap<String, usize> = HashMap::new();
        for (span, h) in tables.hosts {
            let context = format!("hosts.{}", h.name.get_ref());
            if let Err(reason) = check_name(&h.name) {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(h.name.span().start),
                    format!("invalid host name `{}`: {reason}", h.name.get_ref()),
                );
                continue;
            }
            if let Some(&first) = host_names.get(h.name.get_ref()) {
                self.duplicate("host", h.name.get_ref(), h.name.span().start, first);
                continue;
            }
            host_names.insert(h.name.get_ref().clone(), h.name.span().start);
            let address = match h.address.get_ref().parse::<SshTarget>() {
                Ok(a) => a,
                Err(e) => {
                    self.error(
                        ProblemKind::InvalidValue,
                        Some(h.address.span().start),
                        format!("{context}: {e}"),
                    );
                    continue;
                }
            };
            self.references
                .push(Reference::new("datacenter", &h.datacenter, &context));
            let own = self.ssh_settings(&context, h.ssh_fields());
            let defaults = datacenters
                .get(h.datacenter.get_ref())
                .map(|d: &Datacenter| d.ssh.clone())
                .unwrap_or_default();
            let reach = match h.transport.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("ssh") => {
                    if let Some(dir) = &h.dir {
                        self.error(
                            ProblemKind::InvalidValue,
                            Some(dir.span().start),
                            format!("{context}: `dir` is for hosts with transport = \"local\""),
                        );
                    }
                    Reach::Ssh
                }
                Some("local") => Reach::Local {
                    dir: h.dir.as_ref().map(|d| self.file_ref(d)),
                },
                Some(other) => {
                    self.error(
                        ProblemKind::InvalidValue,
                        h.transport.as_ref().map(|t| t.span().start),
                        format!("{context}: unknown transport `{other}` (ssh or local)"),
                    );
                    continue;
                }
            };
            hosts.push(Host {
                name: h.name.get_ref().clone(),
                datacenter: h.datacenter.get_ref().clone(),
                address,
                roles: h.roles,
                spare: h.spare,
                ssh: own.or(&defaults),
                vars: h.vars,
                reach,
                at: self.at(span.start),
            });
        }

        let recovery = match recovery_raw {
            Some(r) => self.recovery(r),
            None => Recovery {
                target_datacenter: String::new(),
                parallelism: DEFAULT_PARALLELISM,
                step_timeout: DEFAULT_STEP_TIMEOUT,
                retries: DEFAULT_RETRIES,
                backoff: DEFAULT_BACKOFF,
                max_backoff: DEFAULT_MAX_BACKOFF,
                fail_fast: false,
                notify: Vec::new(),
                approve_before_start: false,
                healthy_within: DEFAULT_HEALTHY_WITHIN,
            },
        };

        let mut stacks = BTreeMap::new();
        for tables in tables.stacks {
            if let Some(stack) = self.stack(tables, &recovery) {
                stacks.insert(stack.name.clone(), stack);
            }
        }

        let notifiers: BTreeMap<String, Notifier> = tables
            .notifiers
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();

        let mut scenarios = BTreeMap::new();
        for (name, raw, abort_probes) in tables.scenarios {
            if let Some(scenario) = self.scenario(name, raw, abort_probes) {
                scenarios.insert(scenario.name.clone(), scenario);
            }
        }

        Some(Plan {
            file: self.file.to_path_buf(),
            dir: self.dir.to_path_buf(),
            name,
            digest,
            storage,
            customers,
            datacenters,
            provisioners,
            hosts,
            stacks,
            notifiers,
            recovery,
            scenarios,
        })
    }

    /// `[scenarios.NAME]`: references are checked later with the others.
    fn scenario(
        &mut self,
        name: Text,
        raw: raw::RawScenario,
        abort_probes: Vec<Probe>,
    ) -> Option<Scenario> {
        let context = format!("scenarios.{}", name.get_ref());
        // Every field is checked before giving up, so that all problems show at once.
        let mode = match raw.mode.get_ref().as_str() {
            "automatic" => Some(DrillMode::Automatic),
            "surprise" => Some(DrillMode::Surprise),
            other => {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(raw.mode.span().start),
                    format!("{context}: unknown mode `{other}` (automatic or surprise)"),
                );
                None
            }
        };
        let targets_at = raw.targets.span().start;
        let t = raw.targets.into_inner();
        let targets = match (t.datacenter, t.role, t.hosts) {
            (Some(dc), None, None) => {
                self.references
                    .push(Reference::new("datacenter", &dc, &context));
                Targets::Datacenter(dc.into_inner())
            }
            (None, Some(role), None) => Targets::Role(role.into_inner()),
            (None, None, Some(hosts)) if !hosts.is_empty() => {
                for host in &hosts {
                    self.references.push(Reference::new("host", host, &context));
                }
                Targets::Hosts(hosts.into_iter().map(Spanned::into_inner).collect())
            }
            _ => {
                self.error(
                    ProblemKind::InvalidValue,
                    Some(targets_at),
                    format!(
                        "{context}: `targets` names exactly one of `datacenter`, `role` or a \
                         non-empty `hosts` list"
                    ),
                );
                return None;
            }
        };
        let blast_radius = match raw.blast_radius {
            None => BlastRadius::All,
            Some(b) => {
                let at = b.span().start;
                let parsed = match b.into_inner() {
                    raw::RawBlastRadius::Count(n) if n >= 1 => {
                        Some(BlastRadius::Count(usize::try_from(n).unwrap_or(usize::MAX)))
                    }
                    raw::RawBlastRadius::Text(text) if text == "all" => Some(BlastRadius::All),
                    raw::RawBlastRadius::Text(text) => text
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse::<u8>().ok())
                        .filter(|p| (1..=100).contains(p))
                        .map(BlastRadius::Percent),
                    raw::RawBlastRadius::Count(_) => None,
                };
                match parsed {
                    Some(b) => b,
                    None => {
                        self.error(
                            ProblemKind::InvalidValue,
                            Some(at),
                            format!(
                                "{context}: `blast_radius` is \"all\", a number of hosts (1 or \
                                 more) or a percentage such as \"50%\""
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        for stack in &raw.stacks {
            self.references
                .push(Reference::new("stack", stack, &context));
        }
        if let Some(route) = &raw.test_route {
            self.references
                .push(Reference::new("notifier", route, &context));
        }
        let alert_receiver = match &raw.alert_receiver {
            None => None,
            Some(text) => match text.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(
                        ProblemKind::InvalidValue,
                        Some(text.span().start),
                        format!(
                            "{context}: `alert_receiver` is an address to listen on, such as \
                             \"127.0.0.1:9099\""
                        ),
                    );
                    None
                }
            },
        };
        let duration = raw.duration.get_ref().0;
        if duration.is_zero() {
            self.error(
                ProblemKind::InvalidValue,
                Some(raw.duration.span().start),
                format!("{context}: `duration` must be longer than 0s"),
            );
        }
        Some(Scenario {
            name: name.get_ref().clone(),
            description: raw.description,
            mode: mode?,
            targets,
            blast_radius,
            fault: raw.fault.into_inner(),
            duration,
            stacks: raw.stacks.into_iter().map(Spanned::into_inner).collect(),
            detect_within: raw.detect_within.map(|d| d.0),
            recover_within: raw.recover_within.map(|d| d.0),
            steady_state: raw.steady_state.unwrap_or(true),
            steady_state_within: raw
                .steady_state_within
                .map_or(DEFAULT_STEADY_STATE_WITHIN, |d| d.0),
            abort_probes,
            notify_customers: raw.notify_customers,
            test_route: raw.test_route.map(Spanned::into_inner),
            alert_receiver,
            at: self.at(name.span().start),
        })
    }

    fn recovery(&mut self, r: raw::RawRecovery) -> Recovery {
        let parallelism = match &r.parallelism {
            None => DEFAULT_PARALLELISM,
            Some(p) => match usize::try_from(*p.get_ref()) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.error(
                        ProblemKind::InvalidValue,
                        Some(p.span().start),
                        "recovery: `parallelism` must be at least 1",
                    );
                    1
                }
            },
        };
        self.references.push(Reference::new(
            "datacenter",
            &r.target_datacenter,
            "recovery",
        ));
        for n in &r.notify {
            self.references
                .push(Reference::new("notifier", n, "recovery"));
        }
        let backoff = r.backoff.map_or(DEFAULT_BACKOFF, |d| d.0);
        Recovery {
            target_datacenter: r.target_datacenter.get_ref().clone(),
            parallelism,
            step_timeout: r.step_timeout.map_or(DEFAULT_STEP_TIMEOUT, |d| d.0),
            retries: r.retries.unwrap_or(DEFAULT_RETRIES),
            backoff,
            max_backoff: r
                .max_backoff
                .map_or(DEFAULT_MAX_BACKOFF.max(backoff), |d| d.0),
            fail_fast: r.fail_fast,
            notify: r.notify.iter().map(|n| n.get_ref().clone()).collect(),
            approve_before_start: r.approve_before_start,
            healthy_within: r.healthy_within.map_or(DEFAULT_HEALTHY_WITHIN, |d| d.0),
        }
    }

    fn stack(&mut self, tables: StackTables, recovery: &Recovery) -> Option<Stack> {
        let StackTables {
            name,
            stack: s,
            sources: raw_sources,
            probes: raw_probes,
        } = tables;
        let context = format!("stacks.{}", name.get_ref());
        self.references
            .push(Reference::new("customer", &s.customer, &context));
        if let Some(host) = &s.host {
            self.references.push(Reference::new("host", host, &context));
        }
        let mut seen_deps: HashMap<&str, usize> = HashMap::new();
        for dep in &s.depends_on {
            if let Some(&first) = seen_deps.get(dep.get_ref().as_str()) {
                self.duplicate("dependency", dep.get_ref(), dep.span().start, first);
            } else {
                seen_deps.insert(dep.get_ref(), dep.span().start);
                self.dependencies.push((
                    name.get_ref().clone(),
                    dep.get_ref().clone(),
                    dep.span().start,
                ));
            }
        }
        let notify = match &s.notify {
            Some(list) => {
                for n in list {
                    self.references
                        .push(Reference::new("notifier", n, &context));
                }
                list.iter().map(|n| n.get_ref().clone()).collect()
            }
            None => recovery.notify.clone(),
        };
        self.roles.push((
            name.get_ref().clone(),
            s.role.get_ref().clone(),
            s.role.span().start,
        ));

        let mut sources = Vec::new();
        let mut source_names: HashMap<String, usize> = HashMap::new();
        for (span, entry) in raw_sources {
            let (spec, restore, name_offset) = match entry {
                SourceEntry::Short(spec) => (spec, None, span.start),
                SourceEntry::Table(t) => {
                    let origin = match (t.path, t.command) {
                        (Some(path), None) if !path.is_empty() => SourceOrigin::Path(path.into()),
                        (None, Some(command)) if !command.trim().is_empty() => {
                            SourceOrigin::Command(command)
                        }
                        (Some(_), Some(_)) => {
                            self.error(
                                ProblemKind::InvalidValue,
                                Some(span.start),
                                format!(
                                    "{context}: source `{}` has both `path` and `command`",
                                    t.name.get_ref()
                                ),
                            );
                            continue;
                        }
                        _ => {
                            self.error(
                                ProblemKind::MissingKey,
                                Some(span.start),
                                format!(
                                    "{context}: source `{}` needs a non-empty `path` or `command`",
                                    t.name.get_ref()
                                ),
                            );
                            continue;
                        }
                    };
                    if let Err(e) = drp_backup::manifest::validate_name("source", t.name.get_ref())
                    {
                        self.error(
                            ProblemKind::InvalidValue,
                            Some(t.name.span().start),
                            format!("{context}: {e}"),
                        );
                        continue;
                    }
                    let restore = match (t.restore_to, t.pipe_to) {
                        (Some(_), Some(_)) => {
                            self.error(
                                ProblemKind::InvalidValue,
                                Some(span.start),
                                format!(
                                    "{context}: source `{}` has both `restore_to` and `pipe_to`",
                                    t.name.get_ref()
                                ),
                            );
                            continue;
                        }
                        (Some(dir), None) => Some(RestoreTarget::Directory(dir)),
                        (None, Some(command)) => Some(RestoreTarget::PipeTo(command)),
                        (None, None) => None,
                    };
                    let spec = SourceSpec {
                        name: t.name.get_ref().clone(),
                        origin,
                    };
                    (spec, restore, t.name.span().start)
                }
            };
            if let Some(&first) = source_names.get(&spec.name) {
                self.duplicate("source", &spec.name, name_offset, first);
                continue;
            }
            source_names.insert(spec.name.clone(), name_offset);
            let Some(restore) =
                restore.or_else(|| s.restore_to.clone().map(RestoreTarget::Directory))
            else {
                self.error(
                    ProblemKind::MissingKey,
                    Some(span.start),
                    format!(
                        "{context}: source `{}` has no restore destination: give the source \
                         `restore_to` or `pipe_to`, or the stack `restore_to`",
                        spec.name
                    ),
                );
                continue;
            };
            sources.push(Source {
                spec,
                restore,
                at: self.at(span.start),
            });
        }

        Some(Stack {
            name: name.get_ref().clone(),
            customer: s.customer.get_ref().clone(),
            description: s.description,
            host: s.host.map(Spanned::into_inner),
            role: s.role.get_ref().clone(),
            depends_on: s
                .depends_on
                .iter()
                .map(|d| d.get_ref().clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            rto: s.rto.map(|d| d.0),
            rpo: s.rpo.map(|d| d.0),
            playbook: s.playbook.as_ref().map(|p| self.file_ref(p)),
            sources,
            restore_commands: s.restore_commands,
            start_commands: s.start_commands,
            probes: raw_probes,
            notify,
            approve_before_start: s
                .approve_before_start
                .unwrap_or(recovery.approve_before_start),
            step_timeout: s.step_timeout.map_or(recovery.step_timeout, |d| d.0),
            healthy_within: s.healthy_within.map_or(recovery.healthy_within, |d| d.0),
            at: self.at(name.span().start),
        })
    }

    /// `[STACK.probes.NAME]`: drp-monitor's probe spec, plus `on` for commands. Conditions
    /// are parsed here, so a bad one is reported at its own column in the file.
    fn probe(&mut self, section: &str, name: Text, mut value: Value<'t>) -> Option<Probe> {
        let context = format!("{section}.{}", name.get_ref());
        let at = self.at(name.span().start);
        let DeValue::Table(table) = value.get_mut() else {
            return None;
        };
        if !self.check_kind_keys(
            &context,
            "probe",
            table,
            raw::PROBE_COMMON_KEYS,
            raw::PROBE_KEYS,
        ) {
            return None;
        }
        let on = match table.remove("on") {
            None => RunOn::Host,
            Some(v) => match v.get_ref().as_str() {
                Some("host") => RunOn::Host,
                Some("local") => RunOn::Local,
                _ => {
                    self.error(
                        ProblemKind::InvalidValue,
                        Some(v.span().start),
                        format!("{context}: `on` is \"host\" or \"local\""),
                    );
                    return None;
                }
            },
        };
        let conditions = string_items(table.get("conditions"));
        let texts: Vec<Text> = ["url", "host", "command", "name"]
            .iter()
            .filter_map(|k| string_value(table.get(*k)))
            .collect();
        let spec: drp_monitor::ProbeSpec = self.entity(&context, value)?;
        let kind = spec.kind();
        for condition in &conditions {
            self.check_condition(&context, kind, condition);
        }
        for text in &texts {
            self.check_placeholders(&context, text);
        }
        Some(Probe {
            name: name.get_ref().clone(),
            spec,
            on,
            at,
        })
    }

    /// A condition parses (drp-monitor's parser) and reads what the probe observes.
    fn check_condition(&mut self, context: &str, kind: drp_monitor::ProbeKind, text: &Text) {
        match drp_monitor::Condition::parse(text.get_ref()) {
            Err(e) => {
                let offset = self.offset_in_string(text, e.byte_offset());
                self.error(
                    ProblemKind::Condition,
                    Some(offset),
                    format!(
                        "{context}: condition `{}`: {}: {}",
                        text.get_ref(),
                        e.problem(),
                        e.expected()
                    ),
                );
            }
            Ok(condition) if !kind.placeholders().contains(&condition.placeholder()) => {
                let observes: Vec<&str> = kind.placeholders().iter().map(|p| p.as_str()).collect();
                self.error(
                    ProblemKind::Condition,
                    Some(text.span().start),
                    format!(
                        "{context}: condition `{}`: a {kind} probe does not observe {} (it \
                         observes {})",
                        text.get_ref(),
                        condition.placeholder().as_str(),
                        observes.join(", ")
                    ),
                );
            }
            Ok(_) => {}
        }
    }

    /// `{host}` and `{stack}` are the only placeholders; the position of a bad one is its own
    /// when the string is written without escapes.
    fn check_placeholders(&mut self, context: &str, text: &Text) {
        let value = text.get_ref();
        let mut rest = value.as_str();
        let mut consumed = 0;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            if !PLACEHOLDERS.contains(&name) {
                let offset = self.offset_in_string(text, consumed + open);
                self.error(
                    ProblemKind::InvalidValue,
                    Some(offset),
                    format!(
                        "{context}: unknown placeholder `{{{name}}}` (use {{host}} or {{stack}})"
                    ),
                );
            }
            consumed += open + close + 1;
            rest = &rest[open + close + 1..];
        }
    }

    /// The byte offset in the file of byte `index` of a string value: exact when the string
    /// is written literally (no escapes), else the string's start.
    fn offset_in_string(&self, text: &Text, index: usize) -> usize {
        let span = text.span();
        let written = &self.text[span.clone()];
        let quote = if written.starts_with("\"\"\"") || written.starts_with("'''") {
            3
        } else {
            1
        };
        let inner = written.get(quote..written.len().saturating_sub(quote));
        if inner == Some(text.get_ref().as_str()) {
            span.start + quote + index
        } else {
            span.start
        }
    }

    /// `[[notifiers]]`: drp-monitor's notifier spec (the same tables as `drp notify test
    /// --config` files), with its references and secrets checked.
    fn notifier(
        &mut self,
        index: usize,
        mut value: Value<'t>,
        names: &mut HashMap<String, usize>,
    ) -> Option<Notifier> {
        let span = value.span();
        let DeValue::Table(table) = value.get_mut() else {
            self.error(
                ProblemKind::InvalidValue,
                Some(span.start),
                format!("notifiers[{index}]: expected a table ([[notifiers]])"),
            );
            return None;
        };
        let Some(name) = string_value(table.get("name")) else {
            self.error(
                ProblemKind::MissingKey,
                Some(span.start),
                format!("notifiers[{index}]: missing key `name`"),
            );
            return None;
        };
        let context = format!("notifiers.{}", name.get_ref());
        if let Err(reason) = check_name(&name) {
            self.error(
                ProblemKind::InvalidValue,
                Some(name.span().start),
                format!("invalid notifier name `{}`: {reason}", name.get_ref()),
            );
            return None;
        }
        if let Some(&first) = names.get(name.get_ref()) {
            self.duplicate("notifier", name.get_ref(), name.span().start, first);
            return None;
        }
        names.insert(name.get_ref().clone(), name.span().start);
        self.declared
            .insert(("notifiers".into(), name.get_ref().clone()));
        self.take_literal_secrets(&context, table, secret_keys::NOTIFIER);
        if !self.check_kind_keys(
            &context,
            "notifier",
            table,
            raw::NOTIFIER_COMMON_KEYS,
            raw::NOTIFIER_KEYS,
        ) {
            return None;
        }
        // References to customers: e-mail contacts, and channels' customer filters.
        if let Some(DeValue::Table(contacts)) = table.get("contacts").map(|v| v.get_ref()) {
            for key in contacts.keys() {
                let customer = Spanned::new(key.span(), key.get_ref().to_string());
                self.references
                    .push(Reference::new("customer", &customer, &context));
            }
        }
        for customer in string_items(table.get("customers")) {
            self.references
                .push(Reference::new("customer", &customer, &context));
        }
        let secret = self.secret_ref(
            &context,
            if table.contains_key("password_env") || table.contains_key("password_file") {
                "password"
            } else {
                "url"
            },
            string_value(table.get("url_env").or(table.get("password_env"))).as_ref(),
            string_value(table.get("url_file").or(table.get("password_file"))).as_ref(),
        );
        let spec: drp_monitor::NotifierSpec = self.entity(&context, value)?;
        if let Err(e) = drp_monitor::notify::Templates::with_overrides(templates_of(&spec)) {
            self.error(
                ProblemKind::InvalidValue,
                Some(name.span().start),
                format!("{context}: templates: {e}"),
            );
        }
        if matches!(
            spec,
            drp_monitor::NotifierSpec::Slack(_) | drp_monitor::NotifierSpec::Webhook(_)
        ) && secret.is_none()
        {
            self.error(
                ProblemKind::MissingKey,
                Some(name.span().start),
                format!("{context}: needs `url_env` or `url_file` (the URL is a secret)"),
            );
        }
        Some(Notifier {
            name: name.get_ref().clone(),
            spec,
            secret,
            at: self.at(name.span().start),
        })
    }
}

/// The templates of any notifier.
fn templates_of(spec: &drp_monitor::NotifierSpec) -> &drp_monitor::notify::TemplateSpecs {
    use drp_monitor::NotifierSpec;
    static NONE: std::sync::OnceLock<drp_monitor::notify::TemplateSpecs> =
        std::sync::OnceLock::new();
    match spec {
        NotifierSpec::Slack(s) => &s.templates,
        NotifierSpec::Webhook(s) => &s.templates,
        NotifierSpec::Email(s) => &s.templates,
        NotifierSpec::Log(s) => &s.templates,
        _ => NONE.get_or_init(Default::default),
    }
}

/// A string value with its span.
fn string_value(value: Option<&Value<'_>>) -> Option<Text> {
    let value = value?;
    value
        .get_ref()
        .as_str()
        .map(|s| Spanned::new(value.span(), s.to_string()))
}

/// The strings of an array value, with their spans (other items are left to serde).
fn string_items(value: Option<&Value<'_>>) -> Vec<Text> {
    let Some(DeValue::Array(items)) = value.map(|v| v.get_ref()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| string_value(Some(item)))
        .collect()
}

/// A name of the plan that must exist.
struct Reference {
    what: &'static str,
    name: String,
    offset: usize,
    context: String,
}

impl Reference {
    fn new(what: &'static str, name: &Text, context: &str) -> Reference {
        Reference {
            what,
            name: name.get_ref().clone(),
            offset: name.span().start,
            context: context.to_string(),
        }
    }
}

/// `[A-Za-z0-9._-]`, not starting with '.' or '-' (names become object keys and file names).
fn check_name(name: &Text) -> Result<(), String> {
    drp_backup::manifest::validate_name("name", name.get_ref()).map_err(|e| match e {
        drp_backup::Error::InvalidName { reason, .. } => reason.to_string(),
        other => other.to_string(),
    })
}

/// serde names the Rust type it expected (`struct RawHost`); people expect "a table".
fn without_raw_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("struct Raw") {
        out.push_str(&rest[..i]);
        out.push_str("a table");
        rest = &rest[i + "struct Raw".len()..];
        rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    out
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn looks_like_email(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address
                    .chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

fn url_scheme_ok(url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("file" | "s3" | "memory", _)) => Ok(()),
        Some((scheme, _)) => Err(format!(
            "unsupported store scheme `{scheme}` (expected file, s3 or memory)"
        )),
        None => Err(format!(
            "`{url}` is not a store URL (expected file:///path, s3://bucket/prefix or memory://)"
        )),
    }
}

/// `a, b, c` — the names a reference could have meant.
fn known(names: impl IntoIterator<Item = String>) -> String {
    let names: Vec<String> = names.into_iter().collect();
    if names.is_empty() {
        "none is defined".to_string()
    } else {
        format!("defined: {}", names.join(", "))
    }
}

impl Loader<'_> {
    /// The names defined in `section` (also those whose definition is broken).
    fn declared_names(&self, section: &str) -> Vec<String> {
        self.declared
            .iter()
            .filter(|(s, _)| s == section)
            .map(|(_, name)| name.clone())
            .collect()
    }

    fn check_references(&mut self, plan: &Plan) {
        // References, collected while resolving.
        let references = std::mem::take(&mut self.references);
        for r in references {
            let section = format!("{}s", r.what);
            if self.declared.contains(&(section.clone(), r.name.clone())) {
                continue;
            }
            let names = self.declared_names(&section);
            self.error(
                ProblemKind::UndefinedReference,
                Some(r.offset),
                format!(
                    "{}: unknown {} `{}` ({})",
                    r.context,
                    r.what,
                    r.name,
                    known(names)
                ),
            );
        }

        // Dependencies: unknown stacks and cycles, at the `depends_on` entry.
        let dependencies = std::mem::take(&mut self.dependencies);
        let offsets: HashMap<(&str, &str), usize> = dependencies
            .iter()
            .map(|(s, d, o)| ((s.as_str(), d.as_str()), *o))
            .collect();
        let graph = DependencyGraph::new(plan.stacks.values().map(|s| {
            (
                s.name.as_str(),
                s.depends_on.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        }));
        if let Err(errors) = graph {
            for e in errors {
                match &e {
                    GraphError::UnknownDependency { dependency, .. }
                        if self
                            .declared
                            .contains(&("stacks".to_string(), dependency.clone())) => {}
                    GraphError::UnknownDependency { stack, dependency } => {
                        let offset = offsets.get(&(stack.as_str(), dependency.as_str())).copied();
                        self.error(
                            ProblemKind::UndefinedReference,
                            offset,
                            format!(
                                "stacks.{stack}: depends on unknown stack `{dependency}` ({})",
                                known(self.declared_names("stacks"))
                            ),
                        );
                    }
                    GraphError::Cycle(cycle) => {
                        let offset = offsets
                            .get(&(cycle[0].as_str(), cycle[1].as_str()))
                            .copied();
                        self.error(ProblemKind::DependencyCycle, offset, e.to_string());
                    }
                    GraphError::Duplicate(_) => {}
                }
            }
        }

        // Every scenario hits at least one host, never a spare.
        for scenario in plan.scenarios.values() {
            let mut spares = 0;
            if let Targets::Hosts(names) = &scenario.targets {
                for spare in names
                    .iter()
                    .filter_map(|n| plan.host(n))
                    .filter(|h| h.spare)
                {
                    spares += 1;
                    self.error_at(
                        ProblemKind::InvalidValue,
                        scenario.at,
                        format!(
                            "scenarios.{}: host {} is a spare: drills hit hosts that run stacks",
                            scenario.name, spare.name
                        ),
                    );
                }
            }
            if spares == 0 && scenario.targets.hosts(plan).is_empty() {
                self.error_at(
                    ProblemKind::UndefinedReference,
                    scenario.at,
                    format!(
                        "scenarios.{}: the targets ({}) match no host that runs stacks",
                        scenario.name, scenario.targets
                    ),
                );
            }
        }

        // Every stack can get a host in the target datacenter.
        let target = &plan.recovery.target_datacenter;
        if let Some(dc) = plan.datacenters.get(target) {
            for (stack, role, offset) in std::mem::take(&mut self.roles) {
                if dc.provisioner.is_none() && plan.spares_for(target, &role).next().is_none() {
                    self.error(
                        ProblemKind::UndefinedReference,
                        Some(offset),
                        format!(
                            "stacks.{stack}: no spare host in {target} has role `{role}`, and \
                             {target} has no provisioner: the stack could not be recovered there"
                        ),
                    );
                }
            }
        }
    }
}
