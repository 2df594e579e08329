//! One integration-test binary (each extra one relinks the whole graph).

mod support;

mod prometheus;
mod real_alertmanager;

mod agent;
mod approvals;
mod chaos;
mod claims;
mod cli;
mod drills;
mod durability;
mod homeassistant;
mod n8n;
mod outbox;
mod parking;
mod ssh;
mod store;
mod webhook;
