//! Integration tests: the real `sup daemon`, real children, observed effects. Modules are
//! named after the sections of INTERFACE.md they hold the project to.

mod sandbox;

mod control_socket;
mod each_child;
mod health_and_order;
mod hostile_files;
mod logs_and_notifications;
mod reload;
mod scheduled_jobs;
mod shell_and_top;
mod states;
mod subcommands;
mod when_the_daemon_dies;
