//! Integration tests: the real `sup daemon`, real children, observed effects. Modules are
//! named after the sections of INTERFACE.md they hold the project to.

mod sandbox;

mod each_child;
mod logs_and_notifications;
mod states;
mod subcommands;
mod when_the_daemon_dies;
