//! Integration tests: the real `sup daemon`, real children, observed effects. Modules are
//! named after the behaviour they hold the project to (the README describes each).

mod sandbox;

mod cgroups;
mod closed_output_files;
mod container;
pub mod control_socket;
mod dashboard;
mod demo;
mod each_child;
mod escapees_and_faults;
mod event_listeners;
mod groups;
mod health_and_order;
mod hostile_clients;
mod hostile_files;
mod http;
mod http_api;
mod https;
mod logs_and_notifications;
mod migrating_from_process_compose;
mod migrating_from_supervisord;
mod operator_verbs;
mod packaging;
mod reaping;
mod reload;
mod scheduled_jobs;
mod shell_and_top;
mod states;
mod subcommands;
mod systemd;
mod when_the_daemon_dies;
